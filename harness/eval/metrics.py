"""Depth metrics: ONE formula table (:data:`FORMULAS`) and the scaling/clamping step, evaluated by
two array backends over the valid pixels of a batch, and the average over images.

Front-ends (all return the same dict of ``B``-vectors, torch float64: every name in
:data:`METRIC_NAMES`, ``scale`` and ``valid_px``):

* :func:`compute_metrics`: dense ``B x 1 x H x W`` prediction and GT (torch, any device);
* :func:`metrics_from_values`: the flat valid pixels, image after image (torch);
* :func:`metrics_from_values_np`: the same in NumPy (the CPU sparse path of
  :func:`harness.eval.sparse.compute_metrics_sparse`; much faster than small torch ops on one core).

Both backends run the same table with the same float32 (per pixel) / float64 (per-image sums)
split; they differ only in their primitives (segment sum and median). Images are averaged by
:class:`MetricAccumulator` (``docs/datasets.md``; Monodepth2's per-image mean).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.eval.metric_names import LOWER_IS_BETTER, METRIC_DESCRIPTIONS, METRIC_NAMES
from harness.eval.protocol import Protocol, as_b1hw, broadcast_mask, crop_bounds, gt_rule

__all__ = [
    "FORMULAS",
    "LOWER_IS_BETTER",
    "METRIC_DESCRIPTIONS",
    "METRIC_NAMES",
    "MetricAccumulator",
    "compute_metrics",
    "masked_median",
    "metrics_from_values",
    "metrics_from_values_np",
    "rounded",
]

#: The metric formulas (docs/datasets.md, "Metric definitions"; g = GT, p = scaled and clamped
#: prediction, per image, ``mean`` over the image's valid pixels). Every backend evaluates this
#: table; its keys are :data:`METRIC_NAMES` in order (``harness.eval.metric_names``, no torch).
FORMULAS: dict[str, Callable[[SimpleNamespace], Any]] = {
    "abs_rel": lambda t: t.mean(t.xp.abs(t.diff) / t.gt),
    "sq_rel": lambda t: t.mean(t.sq / t.gt),
    "rmse": lambda t: t.xp.sqrt(t.mean(t.sq)),
    "rmse_log": lambda t: t.xp.sqrt(t.mean_d2),
    "log10": lambda t: t.mean(t.xp.abs(t.log_diff)) / math.log(10.0),
    "a1": lambda t: t.mean(t.ratio < 1.25),
    "a2": lambda t: t.mean(t.ratio < 1.25**2),
    "a3": lambda t: t.mean(t.ratio < 1.25**3),
    # SILog = 100 sqrt(mean d^2 - mean(d)^2); float64 sums keep the cancellation harmless.
    "silog": lambda t: 100.0 * t.xp.sqrt(t.clamp0(t.mean_d2 - t.mean_d * t.mean_d)),
}


# --------------------------------------------------------------------------------------------
# The shared computation: scale, clamp, the formula table
# --------------------------------------------------------------------------------------------
def _evaluate(be, pv, gv, protocol: Protocol) -> dict[str, Any]:
    """Steps 3-4 of the protocol (scale, clamp) and every formula, on backend ``be``."""
    if protocol.scale == "median":
        scale = be.cast(be.median(gv) / be.median(pv), pv)
        pv = pv * be.repeat(scale)
    elif protocol.scale == "stereo_factor":
        scale = be.full(protocol.stereo_factor, pv)
        pv = pv * be.scalar(protocol.stereo_factor, pv)
    else:
        scale = be.full(1.0, pv)
    pv = be.clip(pv, protocol.min_depth, protocol.max_depth)

    diff = gv - pv
    log_diff = be.xp.log(pv) - be.xp.log(gv)  # d = ln p - ln g
    t = SimpleNamespace(xp=be.xp, mean=be.mean, clamp0=be.clamp0, gt=gv, diff=diff, sq=diff * diff,
                        log_diff=log_diff, ratio=be.xp.maximum(gv / pv, pv / gv))
    t.mean_d2 = be.mean(log_diff * log_diff)
    t.mean_d = be.mean(log_diff)
    return be.finish({name: formula(t) for name, formula in FORMULAS.items()}, scale)


class _TorchBackend:
    """Flat torch vectors; per-image sums are float64 prefix-sum differences."""

    xp = torch

    def __init__(self, counts: Tensor, total: int):
        self.n, self.total = counts, total
        self.n_f = counts.to(torch.float64)

    def mean(self, x: Tensor) -> Tensor:
        return _segment_sum(x, self.n) / self.n_f

    def median(self, x: Tensor) -> Tensor:
        return _segment_median(x, self.n)

    def repeat(self, scale: Tensor) -> Tensor:
        return torch.repeat_interleave(scale, self.n, output_size=self.total)

    def cast(self, x: Tensor, like: Tensor) -> Tensor:
        return x.to(like.dtype)

    def full(self, value: float, like: Tensor) -> Tensor:
        return torch.full((self.n.numel(),), value, dtype=like.dtype, device=like.device)

    def scalar(self, value: float, like: Tensor) -> float:
        return value

    def clip(self, x: Tensor, lo: float, hi: float) -> Tensor:
        return x.clamp(lo, hi)

    def clamp0(self, x: Tensor) -> Tensor:
        return x.clamp_min(0.0)

    def finish(self, out: dict[str, Tensor], scale: Tensor) -> dict[str, Tensor]:
        empty = self.n == 0
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.n.device)
        out = {k: torch.where(empty, nan, v) for k, v in out.items()}
        out["scale"] = torch.where(empty, nan, scale.to(torch.float64))
        out["valid_px"] = self.n.to(torch.int64)
        return out


class _NumpyBackend:
    """Flat NumPy vectors; per-image sums are float64 ``np.add.reduceat`` segments."""

    xp = np

    def __init__(self, counts: np.ndarray):
        self.n = counts
        self.starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self.nonempty = counts > 0
        self.n_f = counts.astype(np.float64)

    def mean(self, x: np.ndarray) -> np.ndarray:
        out = np.full(self.n.size, np.nan)
        ne_starts = self.starts[self.nonempty]
        if ne_starts.size:
            out[self.nonempty] = np.add.reduceat(x.astype(np.float64), ne_starts) / self.n_f[self.nonempty]
        return out

    def median(self, x: np.ndarray) -> np.ndarray:
        out = np.full(self.n.size, np.nan, dtype=x.dtype)
        for i in np.flatnonzero(self.nonempty):
            out[i] = np.median(x[self.starts[i]:self.starts[i] + self.n[i]])
        return out

    def repeat(self, scale: np.ndarray) -> np.ndarray:
        return np.repeat(scale, self.n)

    def cast(self, x: np.ndarray, like: np.ndarray) -> np.ndarray:
        return x.astype(like.dtype)

    def full(self, value: float, like: np.ndarray) -> np.ndarray:
        return np.full(self.n.size, value, dtype=like.dtype)

    def scalar(self, value: float, like: np.ndarray):
        return like.dtype.type(value)

    def clip(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.clip(x, x.dtype.type(lo), x.dtype.type(hi))

    def clamp0(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)

    def finish(self, out: dict[str, np.ndarray], scale: np.ndarray) -> dict[str, Tensor]:
        out = dict(out, scale=np.where(self.nonempty, scale.astype(np.float64), np.nan),
                   valid_px=self.n.astype(np.int64))
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Front-ends
# --------------------------------------------------------------------------------------------
def compute_metrics(
    pred: Tensor, gt: Tensor, protocol: Protocol, mask: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-image depth metrics for a batch (docs/datasets.md, Eigen protocol steps 2-5 and
    "Metric definitions").

    Args:
        pred: ``B x 1 x H x W`` predicted depth in metres, already at GT resolution
            (use :func:`harness.eval.protocol.resize_prediction`), *before* scaling.
        gt: ``B x 1 x H x W`` GT depth in metres (0 or out-of-range = invalid).
        protocol: decides the valid mask (``gt_mask`` + ``crop``), scaling and clamping.
        mask: optional extra boolean mask broadcastable to ``gt`` (ANDed in).

    Returns:
        dict of ``B``-vectors (float64): every name in :data:`METRIC_NAMES`, ``scale`` (the ratio
        applied: per-image median ratio, the stereo factor, or 1) and ``valid_px`` (int64).
        Images without any valid pixel get ``valid_px = 0`` and NaN metrics/scale; the
        :class:`MetricAccumulator` skips (and counts) them.

    Scaling: ``median`` uses ``s = median(gt[V]) / median(pred[V])`` per image; the prediction
    is multiplied by ``s`` and then clamped to ``[min_depth, max_depth]``.
    """
    pred = as_b1hw(pred, "pred")
    gt = as_b1hw(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must have the same shape; "
            "resize the prediction first (resize_prediction)"
        )
    bsz, _, h, w = gt.shape
    if not pred.is_floating_point():
        pred = pred.float()
    if not gt.is_floating_point():
        gt = gt.float()
    # Work on the crop window only: everything outside it is invalid anyway.
    r0, r1, c0, c1 = crop_bounds(h, w, protocol.crop)
    pred_c = pred[..., r0:r1, c0:c1]
    gt_c = gt[..., r0:r1, c0:c1]
    valid = gt_rule(gt_c, protocol)
    if mask is not None:
        valid = valid & broadcast_mask(mask, (bsz, 1, h, w))[..., r0:r1, c0:c1]
    n = valid.reshape(bsz, -1).sum(dim=1)

    # Compact the valid pixels of the whole batch into flat vectors (row-major, so image after
    # image); per-image sums are float64 segment sums over those vectors.
    pv = torch.masked_select(pred_c, valid)
    gv = torch.masked_select(gt_c, valid)
    return metrics_from_values(pv, gv, n, protocol)


def metrics_from_values(pred: Tensor, gt: Tensor, counts: Tensor, protocol: Protocol) -> dict[str, Tensor]:
    """Per-image metrics from the valid pixels only (docs/datasets.md, Eigen protocol steps 4-5
    and "Metric definitions").

    Args:
        pred: flat predicted depths of the valid pixels, image after image, *before* scaling.
        gt: flat GT depths of the same pixels.
        counts: ``B`` int tensor, number of valid pixels of each image (``sum == pred.numel()``).
        protocol: scaling policy and clamp range (the mask must already be applied).

    Returns the same dict as :func:`compute_metrics`.
    """
    n = counts.to(torch.int64)
    if pred.shape != gt.shape or pred.dim() != 1:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must be flat vectors of one length")
    if int(n.sum()) != pred.numel():
        raise ValueError(f"counts sum to {int(n.sum())}, but there are {pred.numel()} values")
    return _evaluate(_TorchBackend(n, pred.numel()), pred, gt, protocol)


def metrics_from_values_np(pred: np.ndarray, gt: np.ndarray, counts: np.ndarray,
                           protocol: Protocol) -> dict[str, Tensor]:
    """:func:`metrics_from_values` on NumPy vectors (``counts``: int64); returns torch tensors."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _evaluate(_NumpyBackend(counts), pred, gt, protocol)


def masked_median(x: Tensor, valid: Tensor) -> Tensor:
    """Row-wise median of ``x[b][valid[b]]`` for ``B x N`` inputs, like ``numpy.median``.

    For an even count the two middle values are averaged (``torch.nanmedian`` alone would
    return the lower one). Rows without a valid entry give NaN.
    """
    xn = torch.where(valid, x, torch.full_like(x, float("nan")))
    lower = torch.nanmedian(xn, dim=1).values  # sorted[(n - 1) // 2]
    # Upper median sorted[n // 2]: equals ``lower`` if at least n // 2 + 1 values are <= lower,
    # otherwise it is the smallest value above ``lower`` (cheaper than a second selection).
    n = valid.sum(dim=1)
    le = (valid & (x <= lower[:, None])).sum(dim=1)
    above = torch.where(valid & (x > lower[:, None]), x, torch.full_like(x, float("inf")))
    upper = torch.where(le >= n // 2 + 1, lower, above.amin(dim=1))
    return 0.5 * (lower + upper)


def _segment_sum(values: Tensor, counts: Tensor) -> Tensor:
    """Float64 sums of consecutive segments of a flat vector (segment ``i`` has ``counts[i]``
    entries); a float64 prefix sum, differenced at the segment ends. Empty segments give 0."""
    csum = torch.cumsum(values, 0, dtype=torch.float64)
    ends = torch.cumsum(counts, 0)
    at_end = csum[(ends - 1).clamp_min(0)] if csum.numel() else csum.new_zeros(counts.shape)
    at_end = torch.where(ends > 0, at_end, torch.zeros_like(at_end))
    return torch.diff(at_end, prepend=at_end.new_zeros(1))


def _segment_median(values: Tensor, counts: Tensor) -> Tensor:
    """numpy-style median of each consecutive segment of a flat vector.

    The segments are scattered into a NaN-padded ``B x max(count)`` matrix and reduced with
    :func:`masked_median`; empty segments give NaN.
    """
    bsz = counts.numel()
    width = int(counts.max()) if bsz and values.numel() else 0
    if width == 0:
        return torch.full((bsz,), float("nan"), dtype=values.dtype, device=values.device)
    total = values.numel()
    rows = torch.repeat_interleave(torch.arange(bsz, device=values.device), counts, output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(total, device=values.device) - torch.repeat_interleave(starts, counts, output_size=total)
    padded = torch.zeros(bsz, width, dtype=values.dtype, device=values.device)
    filled = torch.zeros(bsz, width, dtype=torch.bool, device=values.device)
    padded[rows, pos] = values
    filled[rows, pos] = True
    return masked_median(padded, filled)



# --------------------------------------------------------------------------------------------
# Accumulation
# --------------------------------------------------------------------------------------------
class MetricAccumulator:
    """Collects per-image metrics and averages them over images (docs/datasets.md, Eigen protocol and
    "Metric definitions").

    ``update`` takes the dict returned by :func:`compute_metrics` (B-vectors or scalars). Images
    with ``valid_px == 0`` are skipped and counted in ``skipped_images``. ``summary()`` returns a
    dict of floats: the mean of every metric over the kept images, ``num_images``,
    ``skipped_images`` and, when the protocol uses median scaling (or no protocol was given),
    ``scale_median`` = median of the per-image ratios and ``scale_std`` = population std of
    ``s / median(s)`` (1.9 step 4, Monodepth2 ``ratios.std()``).
    """

    def __init__(self, protocol: Protocol | None = None) -> None:
        self.protocol = protocol
        self.report_scale = protocol is None or protocol.scale == "median"
        self._values: dict[str, list[float]] = {}
        self._scales: list[float] = []
        self.num_images = 0
        self.skipped_images = 0

    def update(self, metrics: Mapping[str, Tensor | float]) -> None:
        cols: dict[str, list[float]] = {}
        size = None
        for key, value in metrics.items():
            # float64 also for Python floats (as_tensor would make them float32)
            vals = torch.as_tensor(value, dtype=torch.float64, device="cpu").detach().reshape(-1).tolist()
            if size is None:
                size = len(vals)
            elif len(vals) != size:
                raise ValueError(f"metric {key!r} has {len(vals)} values, expected {size}")
            cols[key] = vals
        if not cols:
            return
        keep = [True] * size
        if "valid_px" in cols:
            keep = [v > 0 for v in cols["valid_px"]]
        for i in range(size):
            if not keep[i]:
                self.skipped_images += 1
                continue
            self.num_images += 1
            for key, vals in cols.items():
                if key == "valid_px":
                    continue
                if key == "scale":
                    self._scales.append(vals[i])
                    continue
                self._values.setdefault(key, []).append(vals[i])

    def per_image(self) -> dict[str, list[float]]:
        """Per-image values of the kept images (``scale`` included when present)."""
        out = {k: list(v) for k, v in self._values.items()}
        if self._scales:
            out["scale"] = list(self._scales)
        return out

    def summary(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        names = list(METRIC_NAMES) + [k for k in self._values if k not in METRIC_NAMES]
        for key in names:
            vals = self._values.get(key, [])
            out[key] = float(math.fsum(vals) / len(vals)) if vals else float("nan")
        out["num_images"] = self.num_images
        out["skipped_images"] = self.skipped_images
        if self.report_scale:
            if self._scales:
                s = torch.tensor(self._scales, dtype=torch.float64)
                med = float(torch.quantile(s, 0.5))  # numpy-style median (averages the middle pair)
                out["scale_median"] = med
                out["scale_std"] = float((s / med).std(correction=0))
            else:
                out["scale_median"] = float("nan")
                out["scale_std"] = float("nan")
        return out




def rounded(metrics: Mapping[str, Any], digits: int = 6) -> dict[str, Any]:
    """``metrics`` with finite floats rounded to ``digits`` (how result files store them)."""
    return {k: (round(v, digits) if isinstance(v, float) and math.isfinite(v) else v) for k, v in metrics.items()}
