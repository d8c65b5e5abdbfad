"""Per-method step cost: one training step of every method against the baseline's.

Each method is built as ``harness run --method M --config synth_small`` builds it (its config
over the benchmark profile: 96 x 320 input, the shared student, batch 8; a 48-frame generated
set, since the set's size does not change a step), with an untrained teacher of its configured
type (the weights do not change the cost), and brought to its last stage (the one that
distils) through ``on_stage_start``. One step is what ``DistillModel`` runs per iteration:
``student_forward``, ``teacher_forward``, ``compute_loss``, backward and the AdamW update, on
one fixed batch of the method's own data.

Every round times one baseline step and one method step back to back (interleaved, so the load
of the shared machine hits both alike). ``extra_info``: ``ratio`` (median method step /
median baseline step) and ``parts``, the median seconds of each part of the method's step,
exclusive of the parts nested in it: ``student`` (student_forward), ``teacher``
(teacher_forward), ``strategy modules`` (forward of the strategy's own sub-modules: adapters,
heads, pose nets, wherever they are called), ``losses`` (the rest of compute_loss),
``backward`` and ``optimizer``.

Under the default ``--benchmark-disable`` one round runs as a smoke test.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import pytest
import torch
from mmengine.config import Config

from harness.config.loader import build_run_config, section
from harness.host.manager import PluginHost
from harness.pipeline.determinism import seed_everything
from harness.pipeline.run import RunContext, run_info
from harness.types import StepContext

METHODS = ("adu", "selective", "recursive", "structure", "ssmde")
ROUNDS = 5
PARTS = ("student", "teacher", "strategy modules", "losses", "backward", "optimizer")


class Clock:
    """Exclusive timers: a part's time excludes the parts entered inside it."""

    def __init__(self):
        self.total = defaultdict(float)
        self.stack: list[list] = []

    @contextmanager
    def part(self, name: str):
        self.stack.append([name, time.perf_counter(), 0.0])
        try:
            yield
        finally:
            name, start, nested = self.stack.pop()
            elapsed = time.perf_counter() - start
            self.total[name] += elapsed - nested
            if self.stack:
                self.stack[-1][2] += elapsed


@pytest.fixture(scope="module")
def host():
    return PluginHost()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


class MethodStep:
    """One method's models, optimiser and batch, and a timed training step."""

    def __init__(self, method: str, host: PluginHost, cache: str, work_dir):
        entry = host.catalog.get("methods", method)
        from harness.config.loader import CONFIG_DIR

        cfg = build_run_config(method=method, method_config=entry.extra.get("config"),
                               config_file=str(CONFIG_DIR / "synth_small.py"),
                               cfg_options=["data.generate.frames=48", "data.generate.frames_per_drive=8"])
        cfg.cache_dir = cache
        cfg.device = "cpu"
        host.configure_run(cfg)
        ctx = RunContext(Config(copy.deepcopy(cfg.to_dict())), host, work_dir=work_dir)
        method_cfg = section(ctx.cfg, "method")
        method_cfg.pop("type")
        seed_everything(0)
        strategy = ctx.catalog.build("methods", method, **method_cfg)
        strategy.on_run_start(run_info(ctx.cfg, strategy))
        ctx.prepare_data()
        _, student = ctx.build_model("students", "student")
        teacher = None
        if strategy.teacher_mode in ("frozen", "online"):
            _, teacher = ctx.build_model("teachers", "teacher")
            if strategy.teacher_mode == "frozen":
                teacher.eval().requires_grad_(False)
        need = frozenset(strategy.required_batch_keys) | frozenset(getattr(teacher, "input_keys", ())) | {"meta"}
        train_set = ctx.build_dataset("train", need)
        strategy.build(student, teacher)
        stages = strategy.stages()
        for stage in stages:
            teacher = strategy.on_stage_start(stage, student, teacher)
        self.stage = stages[-1]
        from harness.pipeline.train import DistillModel

        self.model = DistillModel(student, teacher, strategy, self.stage, StepContext(stage=self.stage.name)).train()
        groups = strategy.param_groups(student, teacher, self.stage)
        self.optimizer = torch.optim.AdamW([dict(g, params=list(g["params"])) for g in groups], lr=1e-4)
        bs = int(self.stage.batch_size or ctx.cfg.schedule["batch_size"])
        self.batch = torch.utils.data.default_collate([train_set[i] for i in range(bs)])
        for key in strategy.precompute:  # maps the harness precomputes with the trained teacher: their values cost nothing
            self.batch[key] = 0.1 + torch.rand_like(self.batch["image"][:, :1])
        self.clock = Clock()
        self._instrument(strategy)

    def _instrument(self, strategy) -> None:
        clock = self.clock
        for attr, name in (("student_forward", "student"), ("teacher_forward", "teacher"), ("compute_loss", "losses")):
            fn = getattr(strategy, attr)

            def timed(*args, _fn=fn, _name=name, **kwargs):
                with clock.part(_name):
                    return _fn(*args, **kwargs)

            setattr(strategy, attr, timed)
        for module in strategy.children():  # the strategy's own modules, wherever they are called
            module.register_forward_pre_hook(lambda m, a: clock.stack.append(["strategy modules", time.perf_counter(), 0.0]))
            module.register_forward_hook(lambda m, a, o: _close(clock))

    def step(self) -> tuple[float, dict[str, float]]:
        self.clock.total.clear()
        start = time.perf_counter()
        out = self.model(mode="loss", **self.batch)
        with self.clock.part("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
        with self.clock.part("optimizer"):
            self.optimizer.step()
        return time.perf_counter() - start, dict(self.clock.total)


def _close(clock: Clock) -> None:
    name, start, nested = clock.stack.pop()
    elapsed = time.perf_counter() - start
    clock.total[name] += elapsed - nested
    if clock.stack:
        clock.stack[-1][2] += elapsed


@pytest.fixture(scope="module")
def baseline(host, cache, tmp_path_factory):
    return MethodStep("baseline", host, cache, tmp_path_factory.mktemp("w"))


@pytest.mark.parametrize("method", METHODS)
def test_method_step_cost_vs_baseline(benchmark, host, cache, baseline, method, tmp_path):
    torch.set_num_threads(1)
    step = MethodStep(method, host, cache, tmp_path)
    base_s, method_s, parts = [], [], defaultdict(list)
    baseline.step(), step.step()  # warm-up (allocator, lazy modules)

    def one_round():
        base_s.append(baseline.step()[0])
        seconds, split = step.step()
        method_s.append(seconds)
        for name in PARTS:
            parts[name].append(split.get(name, 0.0))
        return seconds

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    med = {name: statistics.median(v) for name, v in parts.items()}
    benchmark.extra_info.update(
        ratio=round(statistics.median(method_s) / statistics.median(base_s), 3),
        baseline_step_s=round(statistics.median(base_s), 4),
        step_s=round(statistics.median(method_s), 4),
        parts={name: round(med[name], 4) for name in PARTS},
        stage=step.stage.name,
    )
    total = statistics.median(method_s)
    assert total > 0 and sum(med.values()) <= 1.05 * max(method_s)  # the parts add up to (at most) the step
    assert med["student"] > 0 and med["backward"] > 0
