"""Checks a run passes before anything trains: it refuses in seconds, not after the teacher trained.

* every dataset variant the run will build (train, val, test, the teacher's training and validation
  sets, the canonical sets a precomputing teacher reads, the mean-depth set) is built, must hold
  frames, and a sample of each (first, last and two seeded random frames) is read; the evaluation
  GT of the sampled val/test frames must be a finite float 2-D map;
* the student (and a frozen teacher) run once on one sample and must give what the strategy's
  ``Needs`` ask for (depth, scales, disparity channels, features, aux outputs).

A data error (a truncated file, a missing calibration key, an 8-bit GT PNG) becomes one
:class:`~harness.errors.HarnessError` keeping the dataset's message, which names the file.
The checks draw no random numbers from the global generators, so a run's numbers do not change.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

import numpy as np
import torch

from harness.errors import HarnessError
from harness.types import DepthOutput, Needs

EVAL_NEED = frozenset({"image", "depth_gt", "depth_gt_mask", "meta"})
#: exceptions a dataset raises for a bad file (anything else is a bug and is reported as one)
DATA_ERRORS = (ValueError, KeyError, IndexError, OSError, EOFError, AssertionError, RuntimeError)


def sample_indices(n: int, k: int = 2) -> list[int]:
    """First, last and ``k`` random frames (a fixed generator: the global RNGs are untouched)."""
    picks = {0, n - 1, *np.random.default_rng(n).integers(0, n, size=min(k, n)).tolist()}
    return sorted(i for i in picks if 0 <= i < n)


def read_sample(ds, index: int, where: str) -> dict[str, Any]:
    try:
        return ds[index]
    except HarnessError:
        raise
    except DATA_ERRORS as exc:
        raise HarnessError(f"{where}: frame {index} cannot be read: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """An exception as one line: its message, prefixed with the type when the message alone is
    not telling (``KeyError: 'P_rect_02'``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if isinstance(exc, (KeyError, IndexError)) or len(text) < 12 else text


def check_dataset(ds, where: str, *, eval_gt: bool) -> None:
    """``ds`` holds frames; its sampled frames (and their evaluation GT) read."""
    n = len(ds)
    if n == 0:
        raise HarnessError(f"{where}: split {getattr(ds, 'split', '?')!r} has no frames")
    for i in sample_indices(n):
        read_sample(ds, i, where)
        if eval_gt:
            try:
                gt = ds.eval_gt(i)
            except HarnessError:
                raise
            except DATA_ERRORS as exc:
                raise HarnessError(f"{where}: the evaluation GT of frame {i} cannot be read: {describe(exc)}") from exc
            gt = np.asarray(gt)
            if gt.ndim != 2 or gt.dtype.kind != "f" or min(gt.shape) < 1:
                raise HarnessError(f"{where}: the evaluation GT of frame {i} is a {gt.dtype} array of shape "
                                   f"{gt.shape}, expected a 2-D float depth map")
            if not np.isfinite(gt).all():
                raise HarnessError(f"{where}: the evaluation GT of frame {i} holds NaN/Inf values")


def check_datasets(datasets: Iterable[tuple[str, Any, bool]]) -> None:
    """``(where, dataset, has evaluation GT)`` for every variant the run builds."""
    for where, ds, eval_gt in datasets:
        check_dataset(ds, where, eval_gt=eval_gt)


@torch.no_grad()
def dry_forward(model: torch.nn.Module, inputs) -> DepthOutput:
    """One forward pass in eval mode on CPU, RNG states and training mode restored."""
    was_training = model.training
    with torch.random.fork_rng(devices=[]):
        model.eval()
        try:
            return model(inputs)
        finally:
            model.train(was_training)


def check_needs(owner: str, model, out: DepthOutput, needs: Needs, method: str) -> None:
    """``out`` (one forward of ``model``, the student or teacher) gives what ``needs`` asks for."""
    name = f"{owner} {type(model).__name__} of method {method!r}"
    specs = {s.name for s in model.feature_specs()} if hasattr(model, "feature_specs") else set()
    if needs.depth and not out.depth:
        raise HarnessError(f"{name} gives no depth output, the strategy needs one")
    have_scales = set(out.disp) | set(out.depth)
    missing = sorted(set(needs.scales) - have_scales)
    if missing and (needs.depth or have_scales):  # a features-only model (a semantic teacher) has no scales
        raise HarnessError(f"{name} gives scale(s) {sorted(have_scales)}, the strategy needs {missing} too "
                           f"(check method.scales)")
    if 0 in out.disp and out.disp[0].dim() == 4 and out.disp[0].shape[1] < needs.disp_channels:
        raise HarnessError(f"{name} gives {out.disp[0].shape[1]} disparity channel(s), the strategy needs "
                           f"{needs.disp_channels}")
    for kind, have in (("feature", set(out.features) | specs), ("aux output", set(out.aux))):
        wanted = needs.features if kind == "feature" else needs.aux
        missing = sorted(set(wanted) - have)
        if missing:
            raise HarnessError(f"{name} does not give {kind}(s) {missing} (it has: {sorted(have) or 'none'})")


def check_models(strategy, student, teacher, batch: dict[str, Any], method: str) -> None:
    """Dry-run the student (and a frozen teacher) on one collated sample and check the ``Needs``;
    a strategy attribute ``scales`` (the student scales its losses read) joins ``student_needs.scales``."""
    needs = strategy.student_needs
    scales = getattr(strategy, "scales", None)
    if isinstance(scales, (tuple, list)) and all(isinstance(s, int) for s in scales):
        needs = replace(needs, scales=tuple(sorted({*needs.scales, *scales})))
    check_needs("student", student, dry_forward(student, batch["image"]), needs, method)
    if teacher is not None and strategy.teacher_mode == "frozen":
        check_needs("teacher", teacher, dry_forward(teacher, batch), strategy.teacher_needs, method)


def one_batch(ds) -> dict[str, Any]:
    return torch.utils.data.default_collate([ds[0]])
