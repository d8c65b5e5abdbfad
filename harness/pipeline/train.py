"""mmengine wiring: the model wrappers, the harness hooks and one Runner per training stage."""
from __future__ import annotations

import copy
import logging
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.model import BaseDataPreprocessor, BaseModel, is_model_wrapper
from mmengine.runner import Runner
from torch import nn

from harness.eval.metrics import MetricAccumulator, compute_metrics
from harness.pipeline import checkpoint, distributed
from harness.pipeline.determinism import EpochSeedHook, set_deterministic
from harness.errors import HarnessError
from harness.pipeline.loss_guard import TERM_PREFIX, LossGuard
from harness.pipeline.schedule import ContinueScheduleHook, StagePlan, fill_schedulers
from harness.pipeline.watch import Watch, stage_hooks
from harness.types import LossDict, Stage, StepContext


# --------------------------------------------------------------------------------------------
# Model wrappers: what the Runner trains.
# --------------------------------------------------------------------------------------------


class DevicePreprocessor(BaseDataPreprocessor):
    """Moves a batch to the model's device with non-blocking copies (from pinned loader memory)
    and, with ``channels_last``, gives 4-D float tensors the channels-last layout (CUDA convs)."""

    def __init__(self, channels_last: bool = False):
        super().__init__(non_blocking=True)
        self.channels_last = channels_last

    def cast_data(self, data):
        data = super().cast_data(data)
        if self.channels_last and torch.is_tensor(data) and data.dim() == 4 and data.is_floating_point():
            return data.contiguous(memory_format=torch.channels_last)
        return data


class _LossModel(BaseModel):
    """Common parts: loss parsing that sums only ``loss`` and logs named terms."""

    #: set by :func:`run_stage`; stops training at the first NaN/Inf term (see harness/pipeline/loss_guard.py)
    loss_guard: LossGuard | None = None

    def __init__(self):
        super().__init__(data_preprocessor=DevicePreprocessor())

    def use_channels_last(self) -> None:
        """Channels-last weights and inputs (a speed-up for convolutions on CUDA)."""
        self.to(memory_format=torch.channels_last)
        self.data_preprocessor.channels_last = True

    def parse_losses(self, losses: dict[str, torch.Tensor]):
        total = losses["loss"]
        if self.loss_guard is not None:
            self.loss_guard.check(losses)
        log_vars = {k: v.detach().float().mean() for k, v in losses.items()}
        return total, log_vars


class DistillModel(_LossModel):
    """Student + teacher + strategy; ``forward(mode="loss")`` returns the strategy's terms."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, strategy, stage: Stage, ctx: StepContext):
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.strategy = strategy
        self.stage = stage
        self.ctx = ctx
        self._set_trainable()

    def _set_trainable(self) -> None:
        trains = self.stage.train
        self.student.requires_grad_("student" in trains)
        self.strategy.requires_grad_("strategy" in trains)
        if self.teacher is not None:
            self.teacher.requires_grad_("teacher" in trains and self.strategy.teacher_mode == "online")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None and "teacher" not in self.stage.train:
            self.teacher.eval()  # frozen teachers stay in eval mode (BN statistics, dropout)
        return self

    def forward(self, mode: str = "loss", **batch: Any):
        if mode == "loss":
            s_out = self.strategy.student_forward(self.student, batch)
            t_out = self.strategy.teacher_forward(self.teacher, batch, s_out)
            loss = self.strategy.compute_loss(batch, s_out, t_out, self.ctx)
            if not isinstance(loss, LossDict):
                raise HarnessError(f"method {type(self.strategy).__name__}.compute_loss returned a "
                                   f"{type(loss).__name__}, not a harness.LossDict (return self.weighted(terms))")
            out = {"loss": loss.total}
            out.update({TERM_PREFIX + k: v for k, v in loss.terms.items()})
            return out
        if mode == "predict":
            depth = self.strategy.predict(self.student, batch["image"])
            return _pack_predictions(depth, batch)
        return self.student(batch["image"])


class TeacherTrainModel(_LossModel):
    """Trains a teacher on its own ``self_loss`` (the teacher stage before any student);
    ``loss`` (``teacher_train.loss``) selects one of the teacher's ``train_losses``."""

    def __init__(self, teacher: nn.Module, loss: str | None = None):
        super().__init__()
        self.teacher = teacher
        self.loss_kwargs = {} if loss is None else {"loss": loss}

    def forward(self, mode: str = "loss", **batch: Any):
        out = self.teacher(batch)
        if mode == "loss":
            terms = self.teacher.self_loss(batch, out, **self.loss_kwargs)
            total = torch.stack([v.reshape(()) for v in terms.values()]).sum()
            res = {"loss": total}
            res.update({TERM_PREFIX + k: v.detach() for k, v in terms.items()})
            return res
        return _pack_predictions(out.depth[0], batch)


def _pack_predictions(depth: torch.Tensor, batch: dict) -> list[dict]:
    return [
        {"pred": depth[i].detach(), "gt": batch["depth_gt"][i]}
        for i in range(depth.shape[0])
    ]


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------


class StrategyHook(Hook):
    """Drives the strategy's schedule events and keeps the step context and term averages."""

    priority = "NORMAL"

    def __init__(self, strategy, ctx: StepContext, stage: Stage):
        self.strategy = strategy
        self.ctx = ctx
        self.stage = stage
        self.epoch_terms: dict[str, list[float]] = defaultdict(list)
        self.last_epoch_terms: dict[str, float] = {}

    def before_train(self, runner) -> None:
        self.ctx.max_epochs = runner.max_epochs
        self.ctx.total_steps = runner.max_iters
        self.ctx.stage = self.stage.name

    def before_train_epoch(self, runner) -> None:
        self.ctx.epoch = runner.epoch
        if self.strategy is not None:
            self.strategy.on_epoch_start(runner.epoch)
        self.epoch_terms.clear()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.ctx.step = runner.iter + 1
        for k, v in (outputs or {}).items():
            self.epoch_terms[k].append(float(v))
        if self.strategy is not None:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self.strategy.on_step_end(runner.iter, model.student, model.teacher)

    def after_train_epoch(self, runner) -> None:
        self.last_epoch_terms = {k: sum(v) / len(v) for k, v in self.epoch_terms.items() if v}


class DepthValMetric(BaseMetric):
    """Validation abs_rel / a1 on the network-resolution GT, logged every ``val_interval``."""

    default_prefix = "val"
    KEYS = ("abs_rel", "rmse", "a1")

    def __init__(self, protocol):
        # "gpu" collects with all_gather_object (gloo on CPU too): no shared temp dir needed
        super().__init__(collect_device="gpu")
        self.protocol = protocol

    def process(self, data_batch, data_samples) -> None:
        pred = torch.stack([d["pred"] for d in data_samples]).float().cpu()
        gt = torch.stack([d["gt"] for d in data_samples]).float().cpu()
        m = compute_metrics(pred, gt, self.protocol)
        # one entry per sample ({} without valid GT; not None, which mmengine's collect drops):
        # the collect interleaves the ranks' entries back into dataset order and cuts the
        # sampler's padding at the dataset size
        for i in range(pred.shape[0]):
            valid = bool(m["valid_px"][i] > 0)
            self.results.append({k: float(m[k][i]) for k in self.KEYS} if valid else {})

    def compute_metrics(self, results) -> dict[str, float]:
        acc = MetricAccumulator()  # the per-image mean of every evaluation
        for r in results:
            if r:
                acc.update(r)
        summary = acc.summary()
        return {k: summary[k] if acc.num_images else 0.0 for k in self.KEYS}


# --------------------------------------------------------------------------------------------
# One stage = one Runner
# --------------------------------------------------------------------------------------------


def stage_epochs(stage: Stage, total_epochs: int) -> int:
    return stage.epochs_in(total_epochs)


def stage_iters_per_epoch(n_samples: int, batch_size: int) -> int:
    """Optimiser steps per epoch of one process (the sampler splits the set over the ranks)."""
    return max(1, math.ceil(n_samples / (batch_size * distributed.world_size())))


def run_stage(
    *,
    model: BaseModel,
    stage_label: str,
    work_dir: Path,
    train_set,
    val_set,
    val_protocol,
    schedule: dict,
    epochs: int,
    batch_size: int,
    lr: float,
    param_groups: list[dict] | None,
    seed: int,
    device: str,
    resume: bool,
    num_workers: int,
    extra_hooks: list[Hook] = (),
    progress: bool = True,
    log_interval: int = 10,
    deterministic: bool = False,
    launcher: str = "none",
    dist_cfg: dict | None = None,
    channels_last: bool = False,
    plan: StagePlan | None = None,
    previous_optimizer=None,
    watch: Watch | None = None,
) -> Runner:
    """Train ``model`` for one stage with mmengine's Runner and return the Runner.

    ``batch_size`` is per process: with ``launcher="pytorch"`` and N processes one optimiser
    step sees N x ``batch_size`` samples (gradients are averaged over the ranks by DDP).
    ``plan`` places the stage in its schedule chain (:mod:`harness.pipeline.schedule`; default:
    a chain of its own); a continuing stage starts from ``previous_optimizer``'s state.
    ``watch`` (:mod:`harness.pipeline.watch`) gives the visualizer (TensorBoard), checkpoint
    settings, the run config the Runner dumps and the run-wide clock.
    """
    watch = watch or Watch()
    checkpoint.install()
    checkpoint.trust_directory(work_dir)
    resume_from = checkpoint.resumable_checkpoint(work_dir) if resume else None
    model.loss_guard = guard = LossGuard(stage_label, work_dir)
    settings = distributed.runner_settings(launcher, device, dist_cfg)
    iters_per_epoch = stage_iters_per_epoch(len(train_set), batch_size)
    if channels_last and device.startswith("cuda"):
        model.use_channels_last()
    optim_wrapper = build_optim_wrapper(model, schedule, lr, param_groups, device)
    if plan is None:
        plan = StagePlan(stage_label, epochs, lr, span_epochs=epochs, span_iters=epochs * iters_per_epoch)
    schedule_hook = ContinueScheduleHook(previous_optimizer if plan.continues else None, plan)
    val_interval = int(schedule.get("val_interval", epochs)) or epochs
    loader = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device.startswith("cuda"),
        collate_fn=dict(type="default_collate"),
    )
    runner = HarnessRunner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=stage_label,
        train_dataloader=dict(loader, dataset=train_set, sampler=dict(type="DefaultSampler", shuffle=True)),
        # no validation for models without a depth output (e.g. a semantic teacher)
        val_dataloader=None if val_set is None else dict(
            loader, dataset=val_set, sampler=dict(type="DefaultSampler", shuffle=False)),
        val_evaluator=None if val_set is None else Evaluator(DepthValMetric(val_protocol)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=val_interval),
        val_cfg=None if val_set is None else dict(),
        optim_wrapper=optim_wrapper,
        param_scheduler=fill_schedulers(schedule.get("param_scheduler", []), plan),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=log_interval, log_metric_by_epoch=True),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=watch.checkpoint_cfg(),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=[schedule_hook, EpochSeedHook(seed, stage_label), guard, *extra_hooks,
                      *stage_hooks(watch, stage_label, val_set, progress),
                      checkpoint.RelativeMarkerHook()],
        visualizer=watch.visualizer_cfg(stage_label),
        randomness=dict(seed=seed, deterministic=deterministic, diff_rank_seed=False),
        env_cfg=settings["env_cfg"],
        launcher=settings["launcher"],
        log_level="INFO",
        resume=resume_from is not None,
        load_from=None if resume_from is None else str(resume_from),
        default_scope=None,
        cfg=watch.runner_cfg(stage_label, device, settings["cfg_extra"]),
    )
    set_deterministic(deterministic)  # also undoes a previous deterministic stage of this process
    runner.train()
    runner.schedule_hook = schedule_hook
    return runner


class HarnessRunner(Runner):
    """mmengine's Runner with a quiet console: its full INFO log goes to the work dir's log file,
    only errors reach the terminal (the harness prints its own progress and summary)."""

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        """Checkpoints are written to a temp file and renamed: never half-written (rank 0 only,
        like mmengine's own ``save_checkpoint``)."""
        if not distributed.is_main_process():
            return
        checkpoint.save_atomically(super().save_checkpoint, out_dir, filename, *args, **kwargs)

    def build_logger(self, log_level="INFO", log_file=None, **kwargs):
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
        return logger


def build_optim_wrapper(model: nn.Module, schedule: dict, lr: float, param_groups, device: str):
    """Build the optimiser here (not from a config dict) so strategy param groups are kept.

    ``param_groups`` of ``None`` trains every parameter of ``model`` that requires grad.
    Groups may carry their own ``lr``. ``schedule["amp"]`` (see :func:`amp_dtype`) trains with
    mmengine's ``AmpOptimWrapper`` (autocast + loss scaling); it needs a CUDA device.
    """
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmengine.registry import OPTIMIZERS

    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [dict(g, params=list(g["params"])) for g in param_groups]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise HarnessError("nothing to train in this stage: no parameter requires a gradient")
    spec = dict(copy.deepcopy(schedule["optimizer"]), lr=lr)
    optimizer = OPTIMIZERS.build(dict(spec, params=groups))
    clip = dict(schedule["clip_grad"]) if schedule.get("clip_grad") else None
    dtype = amp_dtype(schedule.get("amp"))
    if dtype is None:
        return OptimWrapper(optimizer=optimizer, clip_grad=clip)
    if not device.startswith("cuda"):
        raise HarnessError(f"config schedule.amp={schedule.get('amp')!r}: mixed precision needs --device cuda "
                           f"(this run uses {device}); set schedule.amp=False")
    return AmpOptimWrapper(optimizer=optimizer, clip_grad=clip, dtype=dtype)


AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def amp_dtype(value) -> str | None:
    """``schedule.amp``: False/None (fp32), True or ``"bf16"`` (bfloat16), ``"fp16"`` (float16)."""
    if value is None or value is False:
        return None
    if value is True:
        return AMP_DTYPES["bf16"]
    if isinstance(value, str) and value in AMP_DTYPES:
        return AMP_DTYPES[value]
    raise HarnessError(f"config schedule.amp={value!r}: must be False, True, 'bf16' or 'fp16'")


def progress_callback(label: str) -> Callable[[int, int], None]:
    """A progress callback for non-Runner work (data generation, evaluation): a counter on a
    terminal, a line at every quarter (and the end) off a terminal."""
    tty = sys.stderr.isatty()
    shown = set()

    def cb(done: int, total: int) -> None:
        if tty:
            sys.stderr.write(f"\r{label:>10} {done}/{total}")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
            return
        quarter = 4 * done // max(total, 1)
        if quarter not in shown and (done >= total or quarter > 0):
            shown.add(quarter)
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

    return cb
