"""``harness run``: data -> teacher (cached) -> training stages -> evaluation -> result file."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config

from harness.pipeline import checkpoint, distributed, precompute, preflight, resources, resume as resuming, teacher_cache, teacher_outputs

from harness.report import cost, results

from harness.eval import robustness
from harness.config import schema
from harness.config.controls import declared_control
from harness.config.loader import section
from harness.pipeline.determinism import derived_seed, seed_everything
from harness.errors import EnvironmentFailure, HarnessError, RunFailure
from harness.eval import loop
from harness.eval.metrics import rounded
from harness.eval.protocol import Protocol
from harness.host.manager import Catalog, PluginHost
from harness.pipeline.train import (
    DistillModel,
    StrategyHook,
    TeacherTrainModel,
    amp_dtype,
    progress_callback,
    run_stage,
    stage_epochs,
    stage_iters_per_epoch,
)
from harness.pipeline.schedule import plan_stages, stage_record
from harness.pipeline.watch import Watch, print_plan
from harness.types import RunInfo, StepContext


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise EnvironmentFailure("option --device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return requested


class RunContext:
    """Everything one run builds, in the order the harness builds it."""

    def __init__(self, cfg: Config, host: PluginHost, *, work_dir: Path, resume: bool = False):
        self.cfg = cfg
        self.catalog: Catalog = host.catalog
        self.host = host
        self.work_dir = work_dir
        self.resume = resume
        self.device = resolve_device(cfg.device)
        self.launcher = str(cfg.get("launcher", "none"))
        if self.launcher == "pytorch" and self.device == "cuda":
            # one GPU per process; torchrun's LOCAL_RANK picks it (mmengine sets it as current)
            self.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        if amp_dtype(cfg.schedule.get("amp")) and not self.device.startswith("cuda"):
            raise HarnessError(f"config schedule.amp={cfg.schedule.get('amp')!r}: mixed precision needs "
                               f"--device cuda (this run uses {self.device})")
        self.cache_dir = teacher_cache.cache_root(cfg.get("cache_dir"))
        self.timings: dict[str, float] = {}
        self.progress = bool(cfg.get("progress", True))
        self.watch = Watch.from_config(cfg)
        self.extra_metrics = {
            e.name: e.obj for e in self.catalog.entries["metrics"].values() if not e.extra.get("builtin")
        }

    # -- data ------------------------------------------------------------------------------
    def stage_options(self) -> dict[str, Any]:
        """The device/parallelism options every ``run_stage`` of this run shares."""
        return dict(device=self.device, launcher=self.launcher, dist_cfg=section(self.cfg, "dist"),
                    channels_last=bool(self.cfg.get("channels_last", False)),
                    deterministic=bool(self.cfg.get("deterministic", False)), watch=self.watch)

    def prepare_data(self) -> None:
        with distributed.main_process_first():  # rank 0 generates into the shared cache
            self._prepare_data()

    def _prepare_data(self) -> None:
        t = time.time()
        data = section(self.cfg, "data")
        entry = self.catalog.get("datasets", data["dataset"])
        root = data.get("root")
        if root is None:
            prepare = entry.extra.get("prepare")
            if prepare is None:
                raise HarnessError(f"dataset {data['dataset']!r} needs --data-root (it cannot be generated)")
            root = prepare(data, self.cache_dir, progress_callback("data") if self.progress else None)
        if not Path(root).is_dir():
            raise HarnessError(f"option --data-root {root}: no such directory")
        self.data_root = Path(root)
        self.data_cfg = data
        self.timings["data_s"] = time.time() - t

    @property
    def supervision(self) -> str:
        """``data.supervision``: what GT the training split gives the GT-supervised losses."""
        return str(self.data_cfg.get("supervision", "dense"))

    def build_dataset(self, split_key: str, need: frozenset[str] | None = None, **overrides):
        """Build one split; the training split carries ``data.supervision`` when not dense."""
        data = self.data_cfg
        split_cfg = dict(data.get(split_key) or {}, **overrides)
        if split_key == "train" and self.supervision != "dense":
            split_cfg.setdefault("supervision", self.supervision)
        h, w = data["input_size"]
        if h % 32 or w % 32:
            raise HarnessError(f"config data.input_size={data['input_size']}: height and width must be multiples of 32")
        split_cfg.setdefault("split", split_key)
        return self.catalog.build(
            "datasets", data["dataset"], root=str(self.data_root), height=h, width=w, need=need,
            seed=int(self.cfg.seed), **split_cfg,
        )

    def protocol(self, dataset, scale: str | None, stereo_factor: float | None = None) -> Protocol:
        """The dataset's protocol for ``dataset``'s split; ``scale``/``stereo_factor`` (a
        method's eval policy) override the configured ones when not None."""
        p = dict(self.data_cfg.get("protocol") or {})
        p.update((self.data_cfg.get("split_protocols") or {}).get(dataset.split, {}))
        if scale is not None:
            p["scale"] = scale
        if stereo_factor is not None:
            p["stereo_factor"] = float(stereo_factor)
        return Protocol(
            name=f"{self.data_cfg['dataset']}-{dataset.split}",
            dataset=self.data_cfg["dataset"],
            split=dataset.split,
            split_hash=dataset.split_hash,
            gt_source=dataset.gt_source,
            resolution=tuple(self.data_cfg["input_size"]),
            **p,
        )

    # -- models ----------------------------------------------------------------------------
    def build_model(self, kind: str, key: str):
        spec = section(self.cfg, key)
        name = spec.pop("type", None)
        if name is None:
            raise HarnessError(f"config {key}.type is missing")
        # initial weights depend on (seed, key) only; the teacher's on its own seed, like its cache key
        seed = (self.cfg.get("teacher_train") or {}).get("seed", 0) if key == "teacher" else self.cfg.seed
        seed_everything(derived_seed(int(seed), key))
        return name, self.catalog.build(kind, name, **spec)

    def load_teacher(self, teacher) -> dict[str, Any]:
        """Fill a frozen teacher from the cache (training it first on a miss) and freeze it."""
        eval_need = frozenset({"image", "depth_gt", "depth_gt_mask", "meta"})
        keys = frozenset(teacher.input_keys) | eval_need
        # without training GT (data.supervision='none') the stereo teacher trains self-supervised
        train_keys = keys - {"depth_gt", "depth_gt_mask"} if self.supervision == "none" else keys
        flip = self.cfg.teacher_train.get("flip_mode", "swap")
        # mirrored-and-swapped pairs are valid stereo pairs; mirrored-only ones are not
        info = self.train_teacher(teacher, self.build_dataset("train", train_keys, flip_mode=flip),
                                  self.build_dataset("val", keys))
        teacher.eval().requires_grad_(False)
        return info

    def train_teacher(self, teacher, train_set, val_set) -> dict[str, Any]:
        tcfg = section(self.cfg, "teacher_train")
        files = teacher_cache.files_fingerprint(self.data_root)  # a modified copy of the data is other data
        key = teacher_cache.teacher_key(section(self.cfg, "teacher"), tcfg, train_set.fingerprint,
                                        self.data_cfg["input_size"], files=files)
        if not getattr(teacher, "trainable", True):
            return {"trained": False, "key": key}
        val_protocol = self.protocol(val_set, "none")
        choices = tuple(getattr(teacher, "train_losses", ()))
        loss = tcfg.get("loss")
        if loss is not None and loss not in choices:
            raise HarnessError(f"config teacher_train.loss={loss!r}: teacher {type(teacher).__name__} trains with "
                               f"{list(choices) or 'its fixed self_loss only'}")

        def train_fn(model, work):  # a cache miss: say so before the student's ETA is wrong
            epochs = int(tcfg["epochs"])
            self.watch.clock.plan(epochs * stage_iters_per_epoch(len(train_set), int(tcfg["batch_size"])))
            if self.progress:
                print_plan([("teacher", f"{section(self.cfg, 'teacher')['type']} not cached: training it first, "
                                        f"{epochs} epochs; log -> {work.with_suffix('')}/logs once cached")])
            runner = run_stage(
                model=TeacherTrainModel(model, loss), stage_label="teacher", work_dir=work, train_set=train_set,
                val_set=val_set if "depth" in _output_kinds(model) else None, val_protocol=val_protocol, schedule=tcfg, epochs=int(tcfg["epochs"]),
                batch_size=int(tcfg["batch_size"]), lr=float(tcfg["optimizer"]["lr"]), param_groups=None,
                seed=int(tcfg.get("seed", 0)), resume=work.is_dir(),
                num_workers=int(self.cfg.num_workers), progress=self.progress,
                log_interval=int(self.cfg.log_interval), **self.stage_options(),
            )
            model.to("cpu")
            return {"val": _val_metrics(runner)}

        describe = {"teacher": section(self.cfg, "teacher"), "train": tcfg, "data": train_set.fingerprint,
                    "data_files": files,
                    "input_size": list(self.data_cfg["input_size"])}
        info = teacher_cache.load_or_train(teacher, key=key, cache_dir=self.cache_dir, train_fn=train_fn, describe=describe)
        if choices:  # which supervised loss the teacher was trained with (the key covers it when set)
            info = dict(info, train_loss=loss or choices[0])
        return info


    def other_variants(self, strategy, teacher) -> list[tuple[str, Any, bool]]:
        """The datasets this run builds after training starts (the teacher's, the precompute
        pass's, the teacher's test set, the mean-depth set), for :mod:`harness.pipeline.preflight`."""
        mode = strategy.teacher_mode
        evaluate = self.cfg.get("evaluate") or {}
        reference = evaluate.get("teacher", True) and mode not in ("frozen", "online")
        if teacher is None and (reference or strategy.precompute):
            with torch.random.fork_rng(devices=[]):  # only its input keys are needed here
                spec = section(self.cfg, "teacher")
                teacher = self.catalog.build("teachers", spec.pop("type"), **spec)
        out: list[tuple[str, Any, bool]] = []
        keys = frozenset(getattr(teacher, "input_keys", ())) | preflight.EVAL_NEED
        if teacher is not None and (mode == "frozen" or strategy.precompute or reference):
            flip = self.cfg.teacher_train.get("flip_mode", "swap")
            out += [("teacher_train (data.train)", self.build_dataset("train", keys, flip_mode=flip), False),
                    ("teacher_train (data.val)", self.build_dataset("val", keys), True)]
        if teacher is not None and strategy.precompute:
            canonical = frozenset(teacher.input_keys) | {"meta"}
            out += [(f"precompute (data.{k})", self.build_dataset(k, canonical, flip_mode=None), False)
                    for k in ("train", "val")]
        if teacher is not None and evaluate.get("teacher", True):
            out.append(("evaluate.teacher (data.test)", self.build_dataset("test", keys), True))
        if evaluate.get("mean_depth", True):
            out.append(("evaluate.mean_depth (data.train)",
                        self.build_dataset("train", frozenset({"depth_gt", "depth_gt_mask"})), False))
        return out

    def with_precomputed(self, spec: dict[str, str], datasets: dict[str, Any]):
        """Run the configured teacher once per split, store its maps, wrap ``datasets``
        (split config key -> dataset)."""
        t = time.time()
        name, teacher = self.build_model("teachers", "teacher")
        info = self.load_teacher(teacher)
        first = next(iter(datasets.values()))
        root = precompute.store_root(self.data_root, self.cache_dir, first.fingerprint, f"{name}-{info['key']}")
        wrapped = []
        for split_key, ds in datasets.items():
            canonical = self.build_dataset(split_key, frozenset(teacher.input_keys) | {"meta"}, flip_mode=None)
            precompute.precompute_split(teacher, canonical, spec, root, device=self.device,
                                        progress=progress_callback("precompute") if self.progress else None)
            wrapped.append(precompute.WithPrecomputed(ds, {key: root for key in spec}))
        teacher.to("cpu")
        self.timings["precompute_s"] = time.time() - t
        return wrapped


def _val_metrics(runner) -> dict[str, float]:
    scalars = runner.message_hub.log_scalars
    return {k.split("/")[-1]: float(v.current()) for k, v in scalars.items() if k.startswith("val/val/")}


def run_info(cfg: Config, strategy) -> RunInfo:
    """The stages and epochs the harness will run for ``strategy`` (see :class:`harness.RunInfo`)."""
    stages = tuple(strategy.stages())
    total = int(cfg.schedule["epochs"])
    return RunInfo(stages=stages, stage_epochs=tuple(stage_epochs(s, total) for s in stages),
                   teacher=(cfg.get("teacher") or {}).get("type"), dataset=(cfg.get("data") or {}).get("dataset"))


def run(cfg: Config, host: PluginHost, *, work_dir: Path, results_dir: Path, resume: bool = False) -> tuple[dict, Path]:
    """Run one method end to end and write its result file; returns (result, path)."""
    started = time.time()
    commit = results.git_commit()  # the code that runs: read before training, not when the file is written
    host.configure_run(cfg)  # before anything reads the config
    schema.check_run_config(cfg)  # the harness's own sections, before anything reads them
    ctx = RunContext(cfg, host, work_dir=work_dir, resume=resume)
    schema.check_run_config(cfg, host.catalog)  # and the registered classes' sections, before anything is built
    if resume:
        finished = resuming.finished_result(resuming.check_same_config(work_dir, cfg), work_dir, cfg)
        if finished is not None:  # nothing left to do: the recorded result stays as it is
            return finished
    distributed.init(ctx.launcher, ctx.device)
    resources.reset_peaks(ctx.device)
    checkpoint.install()
    checkpoint.trust_directory(work_dir)
    method_cfg = section(cfg, "method")
    method = method_cfg.pop("type")
    method_entry = ctx.catalog.get("methods", method)
    seed_everything(derived_seed(int(cfg.seed), "method"))
    strategy = ctx.catalog.build("methods", method, **method_cfg)
    strategy.on_run_start(run_info(cfg, strategy))

    ctx.prepare_data()
    student_name, student = ctx.build_model("students", "student")
    teacher = None
    teacher_name = None
    if strategy.teacher_mode in ("frozen", "online"):
        teacher_name, teacher = ctx.build_model("teachers", "teacher")
    need = frozenset(strategy.required_batch_keys) | frozenset(getattr(teacher, "input_keys", ())) | {"meta"}
    train_set = ctx.build_dataset("train", need)
    missing = sorted(need - set(train_set.provides))
    if missing:
        raise HarnessError(f"method {method!r} needs batch key(s) {missing} that dataset "
                           f"{ctx.data_cfg['dataset']!r} does not provide")
    eval_need = frozenset({"image", "depth_gt", "depth_gt_mask", "meta"})
    val_set = ctx.build_dataset("val", eval_need | (need & set(train_set.provides)))
    test_set = ctx.build_dataset("test", eval_need)
    preflight.check_datasets([("data.train", train_set, False), ("data.val", val_set, True),
                              ("data.test", test_set, True), *ctx.other_variants(strategy, teacher)])
    preflight.check_models(strategy, student, teacher, preflight.one_batch(train_set), method)
    if strategy.precompute:
        train_set, val_set = ctx.with_precomputed(strategy.precompute, {"train": train_set, "val": val_set})

    schedule = section(cfg, "schedule")
    stages = strategy.stages()
    epochs = [stage_epochs(stage, int(schedule["epochs"])) for stage in stages]
    batch_sizes = [int(stage.batch_size or schedule["batch_size"]) for stage in stages]
    steps = [stage_iters_per_epoch(len(train_set), bs) for bs in batch_sizes]
    plans = plan_stages(stages, epochs, steps, [float(stage.lr or schedule["optimizer"]["lr"]) for stage in stages])
    ctx.watch.clock.plan(sum(p.epochs * n for p, n in zip(plans, steps)))
    if ctx.progress:  # progress=False: a quiet run (errors and warnings only)
        print_plan(run_plan(ctx, method, student_name, teacher_name, strategy, plans, steps, (train_set, val_set, test_set)))

    teacher_info = None
    t = time.time()
    if teacher is not None and strategy.teacher_mode == "frozen":
        teacher_info = ctx.load_teacher(teacher)
    ctx.timings["teacher_s"] = time.time() - t

    seed_everything(derived_seed(int(cfg.seed), "strategy"))  # same modules whether the teacher was cached or not
    strategy.build(student, teacher)
    cached_teacher = None
    if teacher_info is not None and bool((cfg.get("teacher_outputs") or {}).get("cache", False)):
        t = time.time()  # frozen teacher outputs computed once (harness/pipeline/teacher_outputs.py)
        cached_teacher = teacher_outputs.prepare(ctx, strategy, teacher, teacher_name, teacher_info["key"],
                                                 train_set, need)
        ctx.timings["teacher_outputs_s"] = time.time() - t
    if distributed.is_main_process():
        write_run_record(work_dir, cfg, method=method, student=student_name, stages=strategy.stages())
    stage_results: dict[str, Any] = {"losses": {}, "val": {}, "stages": {}, "teacher_stages": {}}
    t = time.time()
    val_protocol = ctx.protocol(val_set, strategy.eval_scale_policy, strategy.eval_stereo_factor)
    previous_optimizer = None
    for stage, plan, bs in zip(stages, plans, batch_sizes):
        teacher = strategy.on_stage_start(stage, student, teacher)
        step_ctx = StepContext(stage=stage.name)
        model = DistillModel(student, cached_teacher if cached_teacher is not None and teacher is cached_teacher.live
                             else teacher, strategy, stage, step_ctx)
        hook = StrategyHook(strategy, step_ctx, stage)
        # a stage an earlier run finished keeps what it recorded (its Runner has nothing left to train)
        done = resuming.finished_stage(work_dir / stage.name, plan.epochs) if resume else None
        if not resume and distributed.is_main_process():
            resuming.forget_stage(work_dir / stage.name)
        runner = run_stage(
            model=model, stage_label=stage.name, work_dir=work_dir / stage.name, train_set=train_set,
            val_set=val_set, val_protocol=val_protocol, schedule=schedule, epochs=plan.epochs, batch_size=bs,
            lr=plan.lr, param_groups=strategy.param_groups(student, teacher, stage), seed=int(cfg.seed),
            resume=resume, num_workers=int(cfg.num_workers), extra_hooks=[hook],
            progress=ctx.progress, log_interval=int(cfg.log_interval), plan=plan,
            previous_optimizer=previous_optimizer, **ctx.stage_options(),
        )
        previous_optimizer = runner.optim_wrapper.optimizer
        if done is None:
            done = {"stages": stage_record(plan, schedule, runner.schedule_hook),
                    "losses": {k.removeprefix("term."): round(v, 6) for k, v in hook.last_epoch_terms.items()
                               if k == "loss" or k.startswith("term.")},
                    "val": _val_metrics(runner)}
            if distributed.is_main_process():
                resuming.record_stage(work_dir / stage.name, plan.epochs, done)
        for key in ("stages", "losses", "val"):
            stage_results[key][stage.name] = done[key]
        strategy.on_stage_end(stage, student, teacher, lambda predict_batch: evaluate_split(
            None, val_set, val_protocol, ctx, predict_batch=predict_batch))
        if teacher is not None and strategy.teacher_mode == "online" and cfg.evaluate.get("teacher", True):
            stage_results["teacher_stages"][stage.name] = score_online_teacher(ctx, strategy, student, teacher)
    ctx.timings["train_s"] = time.time() - t

    t = time.time()
    student.to(ctx.device).eval()
    distributed.sync_buffers(student)
    # the final model on the val split (what settings are chosen on): the per-stage values above
    # are the runner's last logged validation, stale when --resume finds a finished stage
    stage_results["val"]["final"] = evaluate_split(
        lambda x: strategy.predict(student, x), val_set, val_protocol, ctx)
    protocol = ctx.protocol(test_set, strategy.eval_scale_policy, strategy.eval_stereo_factor)
    metrics, per_frame = {}, {}
    metrics["student"], per_frame["test"] = score_split(lambda x: strategy.predict(student, x), test_set, protocol, ctx)
    # corrupted / adverse-weather conditions; None unless evaluate.robustness.enabled
    robustness_record = robustness.evaluate_conditions(
        ctx, lambda x: strategy.predict(student, x), test_set, protocol, metrics["student"],
        method=method, results_dir=results_dir)
    eval_teacher = teacher if strategy.teacher_mode in ("frozen", "online") else None
    if eval_teacher is None and cfg.evaluate.get("teacher", True):
        # a reference row: the configured (cached) teacher, so a reader sees where the student sits
        t = time.time()
        teacher_name, eval_teacher = ctx.build_model("teachers", "teacher")
        teacher_info = ctx.load_teacher(eval_teacher)
        ctx.timings["teacher_s"] += time.time() - t
    if eval_teacher is not None and cfg.evaluate.get("teacher", True):
        eval_teacher.to(ctx.device).eval()
        distributed.sync_buffers(eval_teacher)
        teacher_test = ctx.build_dataset("test", eval_need | set(eval_teacher.input_keys))
        if eval_teacher is teacher:  # the method's own teacher: the strategy knows how to run it
            predict_batch = lambda b: strategy.teacher_predict(eval_teacher, student, b)  # noqa: E731
        else:  # the configured reference teacher
            predict_batch = lambda b: eval_teacher(b).depth[0]  # noqa: E731
        metrics["teacher"], per_frame["teacher"] = score_split(
            None, teacher_test, ctx.protocol(teacher_test, "none"), ctx, predict_batch=predict_batch)
    if cfg.evaluate.get("mean_depth", True) and ctx.supervision != "none":  # needs training GT
        mean_map = torch.from_numpy(ctx.build_dataset("train", frozenset({"depth_gt", "depth_gt_mask"})).mean_depth_map())
        metrics["mean_depth"], per_frame["mean_depth"] = score_split(
            lambda x: mean_map.to(x.device).expand(x.shape[0], 1, *mean_map.shape[-2:]), test_set, replace(protocol, scale="none"), ctx
        )
    ctx.timings["eval_s"] = time.time() - t
    ctx.timings["total_s"] = time.time() - started

    result = {
        "schema_version": results.SCHEMA_VERSION,
        "method": method,
        "method_plugin": method_entry.plugin,
        "profile": cfg.profile,
        "seed": int(cfg.seed),
        "student": student_name,
        "datasets": {
            "train": _dataset_record(ctx, train_set),
            "test": _dataset_record(ctx, test_set),
        },
        "protocol": dict(protocol.to_dict(), id=protocol.protocol_id()),
        "metrics": metrics,
        # per-image test metrics: the student's under "test", the reference rows' under "<role>.test"
        "per_frame": {"test": per_frame.pop("test"), **{role: {"test": v} for role, v in per_frame.items()}},
        "losses": stage_results["losses"],
        "val": stage_results["val"],
        "stages": stage_results["stages"],
        **({"teacher_stages": stage_results["teacher_stages"]} if stage_results["teacher_stages"] else {}),
        "control": declared_control(ctx.catalog, method, cfg.profile),
        "budget": results.training_budget(cfg.to_dict(), len(train_set)),
        "teacher": None if teacher_name is None else dict(
            teacher_info or {}, type=teacher_name, mode=strategy.teacher_mode,
            **({} if cached_teacher is None else {"outputs_cache": {
                "root": str(cached_teacher.store.root), "served": cached_teacher.hits, "live": cached_teacher.misses,
                "undeclared": sorted(cached_teacher.undeclared)}}),
        ),
        "config": cfg.to_dict(),
        "versions": results.package_versions(),
        "git_commit": commit,
        "device": ctx.device,
        "timings": {k: round(v, 2) for k, v in ctx.timings.items()},
        "resources": _resources_record(ctx),
        "created": results.now_iso(),
        "work_dir": str(Path(work_dir).resolve()),  # its stage checkpoints feed `harness visualize`
    }
    result["cost"] = cost.recorded_cost(result, ctx.catalog, cache_dir=ctx.cache_dir)  # cached per model cfg
    if robustness_record is not None:
        result["robustness"] = robustness_record
    if strategy.notes:
        result["method_notes"] = strategy.notes
    if not distributed.is_main_process():
        return result, None  # rank 0 writes the result file
    path = results.write_result(result, results_dir)
    resuming.record_result(work_dir, path)
    host.result_written(result, str(path))
    return result, path


RUN_RECORD = resuming.RUN_RECORD


def run_plan(ctx: RunContext, method: str, student: str, teacher: str | None, strategy, plans, steps,
             splits) -> list[tuple[str, str]]:
    """What ``harness run`` prints before training: data, teacher, stages, where logs go."""
    cfg = ctx.cfg
    h, w = ctx.data_cfg["input_size"]
    sizes = ", ".join(f"{ds.split} {len(ds)}" for ds in splits)
    mode = strategy.teacher_mode
    teacher_line = "none" if teacher is None else f"{teacher} ({mode}{', cached per config + data' if mode == 'frozen' else ''})"
    stage_line = "; ".join(f"{p.name}: {p.epochs} epochs x {n} steps, lr {p.lr:g}" for p, n in zip(plans, steps))
    logs = f"{ctx.work_dir}/<stage>/<timestamp>/ (text + JSON log"
    logs += ", TensorBoard: tensorboard --logdir " + str(ctx.work_dir) + ")" if ctx.watch.tensorboard else ")"
    return [("run", f"{method} seed {cfg.seed} on {ctx.device}"),
            ("data", f"{ctx.data_cfg['dataset']} at {ctx.data_root} ({sizes} frames, {w}x{h})"),
            ("student", student), ("teacher", teacher_line), ("stages", stage_line), ("logs", logs)]


def write_run_record(work_dir: Path, cfg: Config, *, method: str, student: str, stages) -> Path:
    """Write ``<work_dir>/run_config.json``: the resolved config, the method, the student type and
    the stage names in training order, so ``harness predict``/``export`` can rebuild the student
    from a work dir alone (the last stage's checkpoint holds the final student)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    record = {"method": method, "student": student, "stages": [s.name for s in stages], "config": cfg.to_dict()}
    path = work_dir / RUN_RECORD
    try:
        results.atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str))
    except OSError as exc:  # e.g. a full disk, before any training
        raise RunFailure(f"cannot write the run record {path}: {exc.strerror or exc}") from exc
    return path


def _resources_record(ctx: RunContext) -> dict[str, Any]:
    """Peak memory of this process (rank 0 in multi-process runs) and of every rank."""
    record: dict[str, Any] = dict(resources.peak_memory(ctx.device), launcher=ctx.launcher,
                                  world_size=distributed.world_size())
    if distributed.is_distributed():
        record["per_rank"] = distributed.gather_ordered([(distributed.rank(), resources.peak_memory(ctx.device))])
    return record


def _output_kinds(teacher) -> set[str]:
    return set(getattr(teacher, "outputs", {"depth"}))


def _dataset_record(ctx: RunContext, ds) -> dict[str, Any]:
    return {"name": ctx.data_cfg["dataset"], "split": ds.split, "split_hash": ds.split_hash,
            "frames": len(ds), "root": str(ctx.data_root), "fingerprint": ds.fingerprint,
            "supervision": getattr(ds, "supervision", "dense")}


def score_online_teacher(ctx: RunContext, strategy, student, teacher) -> dict[str, dict]:
    """An online teacher after a stage, on the test split like the frozen teachers' reference
    row: ``{"<scale>": summary}`` for every depth scale it outputs (low scales upsampled to GT)."""
    eval_need = frozenset({"image", "depth_gt", "depth_gt_mask", "meta"}) | set(teacher.input_keys)
    test = ctx.build_dataset("test", eval_need)
    protocol = ctx.protocol(test, "none")
    was = student.training, teacher.training
    student.to(ctx.device).eval()
    teacher.to(ctx.device).eval()
    try:
        with torch.no_grad():
            scales = sorted(strategy.teacher_outputs(teacher, student, _first_batch(test, ctx.device)).depth)
        return {str(i): evaluate_split(None, test, protocol, ctx, predict_batch=lambda b, i=i: strategy.teacher_outputs(
            teacher, student, b).depth[i]) for i in scales}
    finally:
        student.train(was[0])
        teacher.train(was[1])


def _first_batch(dataset, device: str) -> dict[str, Any]:
    batch = torch.utils.data.default_collate([dataset[0]])
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def evaluate_split(predict, dataset, protocol: Protocol, ctx: RunContext, predict_batch=None) -> dict[str, Any]:
    """The summary of :func:`score_split` (mean of every metric over the scored images)."""
    return score_split(predict, dataset, protocol, ctx, predict_batch)[0]


def score_split(predict, dataset, protocol: Protocol, ctx: RunContext, predict_batch=None) -> tuple[dict, dict]:
    """Score ``predict(image) -> depth`` (or ``predict_batch(batch) -> depth``, for models that
    need more than the image, e.g. stereo teachers) on every sample of ``dataset`` in the
    split-evaluation loop (:func:`harness.eval.loop.evaluate_split`, with the run's device,
    ``evaluate.batch_size``, plugin metrics and progress bar).

    Returns ``(summary, per_frame)`` as result files store them (rounded to 6 digits): the metrics
    averaged over images, and the per-image values of the scored images,
    ``{"frames": [frame ids], "<metric>": [values aligned]}`` (frame ids
    :func:`harness.eval.loop.frame_id`; images without valid GT are skipped in both)."""
    cb = progress_callback("eval") if ctx.progress and distributed.is_main_process() else None
    score = loop.evaluate_split(predict, dataset, protocol, device=ctx.device,
                                batch_size=int(ctx.cfg.evaluate.get("batch_size", 8)), predict_batch=predict_batch,
                                extra_metrics=ctx.extra_metrics, progress=cb)
    per_frame = {"frames": score.frames, **{k: [round(v, 6) if math.isfinite(v) else None for v in vals]
                                            for k, vals in score.per_image.items()}}
    return rounded(score.summary), per_frame

