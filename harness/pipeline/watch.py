"""Watching a run: progress with an ETA over all stages, validation scores printed, TensorBoard
scalars and depth grids, and the Runner's visualizer / checkpoint settings from the config.

Config keys (``harness/config/configs/_base_/default_runtime.py``):

* ``tensorboard`` (True; ``harness run --no-tensorboard`` sets False): add mmengine's
  ``TensorboardVisBackend`` to the visualizer. mmengine's ``LoggerHook`` then writes every logged
  value (``loss``, every named term ``term.<name>``, ``lr``, step times) every ``log_interval``
  steps and the validation metrics (``val/abs_rel``, ...) after every validation, and
  :class:`DepthGridHook` adds an ``input | GT | teacher | student`` picture per validation;
  event files land in ``<stage work dir>/<timestamp>/vis_data/`` (``tensorboard --logdir work_dirs``).
* ``visualizer``: the mmengine visualizer config (``type``, ``vis_backends``), as in any mm* config.
* ``vis_frames`` (3): validation frames in the depth grid; 0 turns the picture off.
* ``checkpoint``: mmengine ``CheckpointHook`` settings (``interval``, ``max_keep_ckpts``, ...);
  ``save_last`` must stay True (``--resume``, ``predict`` and ``export`` read the last epoch's).
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from harness.errors import HarnessError
from harness.pipeline import distributed

TENSORBOARD = "TensorboardVisBackend"
DEFAULT_VISUALIZER = {"type": "Visualizer", "vis_backends": [{"type": "LocalVisBackend"}]}
DEFAULT_CHECKPOINT = {"interval": 1, "max_keep_ckpts": 2, "save_last": True}


class RunClock:
    """Optimiser steps done and planned over every stage of a run (teacher included once it is
    known to train): the ETA of the whole run, not of the stage."""

    def __init__(self) -> None:
        self.planned = 0
        self.done = 0
        self.start: float | None = None

    def plan(self, steps: int) -> None:
        self.planned += int(steps)

    def step(self) -> None:
        if self.start is None:
            self.start = time.time()
        self.done += 1

    def eta(self) -> float | None:
        if not self.done or self.start is None:
            return None
        return (time.time() - self.start) / self.done * max(self.planned - self.done, 0)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@dataclass
class Watch:
    """The watching settings of one run, shared by its stages."""

    cfg: dict = field(default_factory=dict)  # the full run config, dumped by every stage's Runner
    tensorboard: bool = True
    visualizer: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_VISUALIZER))
    checkpoint: dict = field(default_factory=lambda: dict(DEFAULT_CHECKPOINT))
    vis_frames: int = 3
    clock: RunClock = field(default_factory=RunClock)

    @classmethod
    def from_config(cls, cfg) -> "Watch":
        plain = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        vis = plain.get("visualizer") or DEFAULT_VISUALIZER
        if not isinstance(vis, dict) or not isinstance(vis.get("vis_backends", []), (list, tuple)):
            raise HarnessError(f"config visualizer={vis!r}: must be a dict like "
                               "dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])")
        ckpt = dict(DEFAULT_CHECKPOINT, **(plain.get("checkpoint") or {}))
        if not ckpt.get("save_last", True):
            raise HarnessError("config checkpoint.save_last=False: the last epoch's checkpoint is what --resume, "
                               "predict and export read; keep it True")
        if int(ckpt.get("interval", 1)) < 1:
            raise HarnessError(f"config checkpoint.interval={ckpt.get('interval')!r}: must be >= 1")
        frames = plain.get("vis_frames", 3)
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
            raise HarnessError(f"config vis_frames={frames!r}: must be an integer >= 0")
        return cls(cfg=plain, tensorboard=bool(plain.get("tensorboard", True)), visualizer=copy.deepcopy(vis),
                   checkpoint=ckpt, vis_frames=frames)

    def visualizer_cfg(self, stage_label: str) -> dict:
        """The stage Runner's visualizer: the configured one, TensorBoard added or removed by the
        switch, under a name of its own (mmengine keeps visualizers by name, process-wide)."""
        vis = copy.deepcopy(self.visualizer)
        backends = [dict(b) for b in vis.get("vis_backends") or [] if b.get("type") != TENSORBOARD]
        if self.tensorboard:
            backends.append({"type": TENSORBOARD})
        vis["vis_backends"] = backends
        vis["name"] = f"{stage_label}-{time.time_ns()}"
        return vis

    def checkpoint_cfg(self) -> dict:
        return dict(self.checkpoint, type="CheckpointHook")

    def runner_cfg(self, stage_label: str, device: str, extra: dict) -> dict:
        """What the stage Runner dumps as its config: the whole run config plus the stage."""
        return dict(copy.deepcopy(self.cfg), stage=stage_label, device=device, **extra)


class ProgressHook(Hook):
    """A one-line progress bar on stderr on a terminal; off a terminal (a log file, a batch job)
    one line per epoch with the loss, the stage time and the ETA of the whole run."""

    priority = "LOW"

    def __init__(self, label: str, enabled: bool = True, clock: RunClock | None = None):
        self.label = label
        self.enabled = enabled and distributed.is_main_process()
        self.tty = sys.stderr.isatty()
        self.clock = clock or RunClock()
        self.start = 0.0
        self.losses: list[float] = []

    def before_train(self, runner) -> None:
        self.start = time.time()

    def before_train_epoch(self, runner) -> None:
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.clock.step()
        loss = float(outputs["loss"]) if outputs and "loss" in outputs else float("nan")
        self.losses.append(loss)
        if not (self.enabled and self.tty):
            return
        done, total = runner.iter + 1, runner.max_iters
        width = 24
        filled = int(width * done / max(total, 1))
        sys.stderr.write(
            f"\r{self.label:>10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"epoch {runner.epoch + 1}/{runner.max_epochs} loss {loss:.4f} eta {fmt_seconds(self.clock.eta())} (all stages)"
        )
        sys.stderr.flush()

    def after_train_epoch(self, runner) -> None:
        if self.enabled and not self.tty:
            loss = sum(self.losses) / max(len(self.losses), 1)
            print(f"{self.label}: epoch {runner.epoch + 1}/{runner.max_epochs} loss {loss:.4f} "
                  f"({time.time() - self.start:.0f}s; eta {fmt_seconds(self.clock.eta())} for all stages)",
                  file=sys.stderr, flush=True)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.enabled and metrics:
            scores = " ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in metrics.items())
            end = "\n" if self.tty else ""
            print(f"{end}{self.label}: val after epoch {runner.epoch}/{runner.max_epochs}: {scores}",
                  file=sys.stderr, flush=True)

    def after_train(self, runner) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


class DepthGridHook(Hook):
    """After every validation: ``input | GT | teacher | student`` of ``frames`` val frames (evenly
    spaced), inverse depth through magma on one scale per row from its GT, added to the Runner's
    visualizer (TensorBoard: image ``depth/<stage>``). The teacher column is left out when the
    run has no teacher with a depth output; the student's when the stage trains a teacher."""

    priority = "LOW"

    def __init__(self, val_set, frames: int, label: str):
        self.val_set = val_set
        self.label = label
        n = len(val_set)
        self.index = sorted({int(round(i)) for i in np.linspace(0, n - 1, num=min(frames, n))}) if n else []

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not self.index or not distributed.is_main_process():
            return
        grid = self.grid(runner.model.module if is_model_wrapper(runner.model) else runner.model)
        runner.visualizer.add_image(f"depth/{self.label}", grid, step=runner.epoch)

    @torch.no_grad()
    def grid(self, model) -> np.ndarray:
        from mmengine.dataset import default_collate

        from harness.report.colormap import colorize

        was_training = model.training
        model.eval()
        batch = model.data_preprocessor(default_collate([self.val_set[i] for i in self.index]), False)
        gt = batch["depth_gt"][:, 0].float().cpu().numpy()
        valid = batch["depth_gt_mask"][:, 0].cpu().numpy().astype(bool) & (gt > 0)
        columns = [np.where(valid, gt, 0.0)]
        teacher = getattr(model, "teacher", None)
        if teacher is not None:
            try:
                columns.append(_fit(teacher(batch).depth[0], gt.shape[-2:]))
            except Exception:  # no depth output (a semantic teacher) or keys the val batch lacks
                pass
        strategy, student = getattr(model, "strategy", None), getattr(model, "student", None)
        if strategy is not None and student is not None:
            columns.append(_fit(strategy.predict(student, batch["image"]), gt.shape[-2:]))
        model.train(was_training)
        images = (batch["image"].float().cpu().permute(0, 2, 3, 1).numpy().clip(0, 1) * 255).astype(np.uint8)
        rows = []
        for i in range(len(self.index)):
            g = gt[i][valid[i]]
            lo, hi = (float(np.percentile(g, 2)), float(np.percentile(g, 98))) if g.size else (1.0, 80.0)
            cells = [_fit_image(images[i], gt.shape[-2:])]
            cells += [colorize(c[i], vmin=lo, vmax=max(hi, lo * 1.01)) for c in columns]
            rows.append(np.concatenate(cells, axis=1))
        return np.concatenate(rows, axis=0)


def _fit(depth: torch.Tensor, size) -> np.ndarray:
    depth = depth.float()
    if depth.dim() == 3:
        depth = depth[:, None]
    if tuple(depth.shape[-2:]) != tuple(size):
        depth = torch.nn.functional.interpolate(depth, size=tuple(size), mode="nearest")
    return depth[:, 0].cpu().numpy()


def _fit_image(image: np.ndarray, size) -> np.ndarray:
    if image.shape[:2] == tuple(size):
        return image
    import cv2

    return cv2.resize(image, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)


def stage_hooks(watch: Watch | None, label: str, val_set, progress: bool) -> list[Hook]:
    """The watching hooks of one stage Runner."""
    watch = watch or Watch()
    hooks: list[Hook] = [ProgressHook(label, enabled=progress, clock=watch.clock)]
    if val_set is not None and watch.vis_frames > 0:
        hooks.append(DepthGridHook(val_set, watch.vis_frames, label))
    return hooks


def print_plan(lines: list[tuple[str, str]]) -> None:
    """The plan of a run, printed before anything trains (rank 0, stderr)."""
    if distributed.is_main_process():
        width = max(len(k) for k, _ in lines)
        print("\n".join(f"  {k:<{width}}  {v}" for k, v in lines), file=sys.stderr, flush=True)
