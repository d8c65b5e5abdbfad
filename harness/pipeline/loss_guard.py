"""Stop training at the first non-finite loss term, before the optimiser step uses it.

:class:`LossGuard` is an mmengine hook that remembers where training is (stage, epoch, step)
and is consulted by the model wrappers' ``parse_losses`` on every step. A NaN or Inf in any
named term (or in the total) raises :class:`~harness.errors.RunFailure`::

    loss term 'photo' is NaN at epoch 2 step 37 (iteration 117) of stage 'student';
    last good checkpoint: work_dirs/x/student/epoch_1.pth

No checkpoint is written after the failure, so the last one on disk is the last good state.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from mmengine.hooks import Hook

from harness.errors import RunFailure
from harness.pipeline import checkpoint

TERM_PREFIX = "term."


def first_non_finite(losses: dict[str, torch.Tensor]) -> tuple[str, float] | None:
    """The first named term (``term.*`` keys, then the total ``loss``) holding a NaN or Inf,
    as ``(name, offending value)``; ``None`` when all are finite (one device sync)."""
    order = [k for k in losses if k.startswith(TERM_PREFIX)] + [k for k in losses if not k.startswith(TERM_PREFIX)]
    values = [losses[k].detach() for k in order]
    if not values or bool(torch.stack([torch.isfinite(v).all() for v in values]).all()):
        return None
    for key, v in zip(order, values):
        bad = v[~torch.isfinite(v)]
        if bad.numel():
            return key.removeprefix(TERM_PREFIX), float(bad.flatten()[0])
    return None


def describe_value(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


class LossGuard(Hook):
    """Knows the current training position; :meth:`check` raises on a non-finite term."""

    priority = "VERY_HIGH"

    def __init__(self, stage: str, work_dir: str | Path):
        self.stage = stage
        self.work_dir = Path(work_dir)
        self.epoch = self.step = self.iteration = 0

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.epoch, self.step, self.iteration = runner.epoch + 1, batch_idx + 1, runner.iter + 1

    def check(self, losses: dict[str, torch.Tensor]) -> None:
        found = first_non_finite(losses)
        if found is None:
            return
        name, value = found
        what = f"loss term {name!r}" if name != "loss" else "the total loss"
        raise RunFailure(
            f"{what} is {describe_value(value)} at epoch {self.epoch} step {self.step} "
            f"(iteration {self.iteration}) of stage {self.stage!r}; last good checkpoint: {self.last_good()}"
        )

    def last_good(self) -> str:
        name = checkpoint.marker_name(self.work_dir)
        return str(self.work_dir / name) if name else "none (no epoch finished yet)"
