"""Optimiser and LR schedule across training stages (``Stage.reset_schedule``).

Consecutive stages whose later members say ``reset_schedule=False`` form one *chain*: they
share one LR schedule spanning the chain's epochs, and each continuing stage starts from the
optimiser state (AdamW moments and step counts, per parameter) where the previous stage ended.
A stage with ``reset_schedule=True`` (the default) starts a new chain: a fresh optimiser and
its schedule restarted at the stage lr. The first stage always starts a chain.

Each stage's choice is recorded in the result's ``stages`` section (:func:`stage_record`).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

from mmengine.hooks import Hook
from torch.optim import Optimizer

from harness.errors import HarnessError


@dataclass(frozen=True)
class StagePlan:
    """Where one stage sits in its schedule chain.

    ``offset_epochs``/``offset_iters``: epochs/iterations of the chain before this stage;
    ``span_epochs``/``span_iters``: the chain's whole length (what a scheduler without ``end``
    spans); ``continues``: the previous stage's name when this stage continues its schedule.
    """

    name: str
    epochs: int
    lr: float
    offset_epochs: int = 0
    offset_iters: int = 0
    span_epochs: int = 0
    span_iters: int = 0
    continues: str | None = None


def plan_stages(stages, epochs: list[int], iters_per_epoch: list[int], lrs: list[float]) -> list[StagePlan]:
    """One :class:`StagePlan` per stage, in order. A continuing stage keeps its chain's lr: a
    different ``Stage.lr`` on it is a contradiction and refused."""
    heads = []  # index of the stage that starts each stage's chain
    for i, stage in enumerate(stages):
        heads.append(i if i == 0 or stage.reset_schedule else heads[-1])
    out: list[StagePlan] = []
    for i, stage in enumerate(stages):
        head = heads[i]
        if i != head and stage.lr is not None and float(stage.lr) != lrs[head]:
            raise HarnessError(f"stage {stage.name!r}: reset_schedule=False continues the schedule of stage "
                               f"{stages[head].name!r} (lr {lrs[head]:g}) but sets its own lr {stage.lr:g}")
        members = [j for j, h in enumerate(heads) if h == head]
        out.append(StagePlan(
            name=stage.name, epochs=epochs[i], lr=lrs[head],
            offset_epochs=sum(epochs[j] for j in members if j < i),
            offset_iters=sum(epochs[j] * iters_per_epoch[j] for j in members if j < i),
            span_epochs=sum(epochs[j] for j in members),
            span_iters=sum(epochs[j] * iters_per_epoch[j] for j in members),
            continues=None if i == head else stages[i - 1].name,
        ))
    return out


def fill_schedulers(specs: list[dict], plan: StagePlan) -> list[dict]:
    """Fill ``end`` of each configured scheduler with the chain's length when it is not set
    (by-epoch ends are capped at it)."""
    out = []
    for spec in copy.deepcopy(specs):
        by_epoch = spec.get("by_epoch", True)
        span = plan.span_epochs if by_epoch else plan.span_iters
        if spec.get("end") is None:
            spec["end"] = span
        if by_epoch and spec["end"] > span:
            spec["end"] = span
        out.append(spec)
    return out


class ContinueScheduleHook(Hook):
    """Before the Runner resumes (a checkpoint of this stage, if any, overrides all of this):
    copy the previous stage's optimiser state for every parameter trained in both stages, and
    advance the freshly built schedulers by the chain's earlier epochs/iterations, so the LR
    continues where the previous stage left it. Records the lr each epoch trains with."""

    priority = "VERY_HIGH"

    def __init__(self, previous: Optimizer | None, plan: StagePlan):
        self.previous = previous
        self.plan = plan
        self.epoch_lrs: list[float] = []  # first parameter group, epochs run by this process

    def before_run(self, runner) -> None:
        optimizer = runner.optim_wrapper.optimizer
        if self.previous is not None:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p in self.previous.state:
                        optimizer.state[p] = copy.deepcopy(self.previous.state[p])
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
            warnings.simplefilter("ignore", UserWarning)
            for scheduler in runner.param_schedulers or []:
                steps = self.plan.offset_epochs if scheduler.by_epoch else self.plan.offset_iters
                for _ in range(steps):
                    scheduler.step()

    def before_train_epoch(self, runner) -> None:
        self.epoch_lrs.append(float(runner.optim_wrapper.optimizer.param_groups[0]["lr"]))


def stage_record(plan: StagePlan, schedule: dict, hook: ContinueScheduleHook) -> dict[str, Any]:
    """The result's ``stages.<name>`` entry: optimiser, base lr, schedule, chain position and
    the lr each epoch trained with (first parameter group; only the epochs this process ran,
    so a stage finished before ``--resume`` lists none)."""
    return {
        "optimizer": dict(schedule["optimizer"], lr=plan.lr),
        "param_scheduler": fill_schedulers(schedule.get("param_scheduler", []), plan),
        "reset_schedule": plan.continues is None,
        "continues": plan.continues,
        "epochs": plan.epochs,
        "schedule_epochs": [plan.offset_epochs, plan.offset_epochs + plan.epochs, plan.span_epochs],
        "epoch_lr": [round(lr, 9) for lr in hook.epoch_lrs],
    }
