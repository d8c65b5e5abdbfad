"""Depth evaluation: protocol records, crops, prediction resizing, flip post-processing, metrics.

Everything follows ``docs/datasets.md``, "The KITTI Eigen protocol, step by step" and "Metric definitions":

1. the prediction is a disparity-like map at network resolution; the *disparity* is resized
   bilinearly (OpenCV ``INTER_LINEAR`` semantics) to the GT size and inverted to depth
   (:func:`resize_prediction`);
2. valid pixels: ``min_depth < gt < max_depth`` (``gt_mask="range"``) or ``gt > 0``
   (``gt_mask="positive"``), AND inside the crop (:func:`crop_mask`);
3. scale: per-image median ratio, a fixed stereo factor (5.4 for KITTI), or none;
4. the prediction is clamped to ``[min_depth, max_depth]`` AFTER scaling; GT is masked, not clamped;
5. optional Monodepth flip post-processing on disparities before resizing (:func:`flip_post_process`);
6. metrics are computed per image and then averaged over images (:class:`MetricAccumulator`).

All computations are vectorised over a batch of same-size images with masks; there is no Python
loop over pixels. Per-image sums are accumulated in float64.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.eval.metric_names import LOWER_IS_BETTER, METRIC_DESCRIPTIONS, METRIC_NAMES

__all__ = [
    "CROP_FRACTIONS",
    "LOWER_IS_BETTER",
    "METRIC_DESCRIPTIONS",
    "METRIC_NAMES",
    "MetricAccumulator",
    "Protocol",
    "compute_metrics",
    "compute_metrics_sparse",
    "crop_bounds",
    "crop_mask",
    "evaluate_depth_fn",
    "flip_post_process",
    "masked_median",
    "metrics_from_values",
    "resize_disparity",
    "resize_prediction",
    "sample_resized",
    "valid_mask",
]


#: Crop fractions ``(row_start, row_end, col_start, col_end)`` of the GT height/width
#: (docs/datasets.md, Eigen protocol step 3). Slicing is ``[int(a*H):int(b*H), int(c*W):int(d*W)]``.
CROP_FRACTIONS: dict[str, tuple[float, float, float, float]] = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}

_CROPS = ("none", "garg", "eigen")
_GT_MASKS = ("range", "positive")
_SCALES = ("none", "median", "stereo_factor")


# --------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Protocol:
    """One evaluation protocol. Construct with keyword arguments.

    ``protocol_id()`` identifies the protocol by content (every field except ``name``), so two
    differently named but identical protocols share an id, and results computed under different
    settings can never be confused.

    Fields:
        name: human-readable label (not part of the id).
        dataset: e.g. ``"kitti"``, ``"drivingstereo"``.
        split: e.g. ``"eigen"``, ``"eigen_benchmark"``.
        split_hash: hash of the split file (identifies the exact image list).
        gt_source: where GT comes from, e.g. ``"velodyne"``, ``"dense_png16"``.
        crop: ``"none"``, ``"garg"`` or ``"eigen"``.
        min_depth, max_depth: GT validity range (``gt_mask="range"``) and prediction clamp.
        gt_mask: ``"range"`` (``min_depth < gt < max_depth``) or ``"positive"`` (``gt > 0``, no cap).
        scale: ``"none"``, ``"median"`` (per-image median ratio) or ``"stereo_factor"``.
        stereo_factor: multiplier for ``scale="stereo_factor"`` (5.4 for KITTI, see 1.9 step 4).
        flip_pp: Monodepth flip post-processing.
        resolution: network input ``(H, W)``.
    """

    name: str
    dataset: str
    split: str
    split_hash: str
    gt_source: str
    crop: str
    scale: str
    resolution: tuple[int, int]
    min_depth: float = 1e-3
    max_depth: float = 80.0
    gt_mask: str = "range"
    stereo_factor: float = 5.4
    flip_pp: bool = False

    def __post_init__(self) -> None:
        for key in ("name", "dataset", "split", "split_hash", "gt_source"):
            value = getattr(self, key)
            if not isinstance(value, str):
                raise ValueError(f"Protocol.{key} must be a string, got {type(value).__name__}")
        for key in ("name", "dataset", "split", "gt_source"):
            if not getattr(self, key):
                raise ValueError(f"Protocol.{key} must be a non-empty string")
        if self.crop not in _CROPS:
            raise ValueError(f"Protocol.crop must be one of {_CROPS}, got {self.crop!r}")
        if self.gt_mask not in _GT_MASKS:
            raise ValueError(f"Protocol.gt_mask must be one of {_GT_MASKS}, got {self.gt_mask!r}")
        if self.scale not in _SCALES:
            raise ValueError(f"Protocol.scale must be one of {_SCALES}, got {self.scale!r}")
        if not isinstance(self.flip_pp, bool):
            raise ValueError(f"Protocol.flip_pp must be a bool, got {self.flip_pp!r}")
        # Normalise numbers so that 80 and 80.0 give the same id.
        for key in ("min_depth", "max_depth", "stereo_factor"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"Protocol.{key} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"Protocol.{key} must be a finite positive number, got {value!r}")
            object.__setattr__(self, key, value)
        if self.min_depth >= self.max_depth:
            raise ValueError(
                f"Protocol.min_depth ({self.min_depth}) must be smaller than max_depth ({self.max_depth})"
            )
        res = self.resolution
        if (
            not isinstance(res, (tuple, list))
            or len(res) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in res)
        ):
            raise ValueError(f"Protocol.resolution must be two positive ints (H, W), got {res!r}")
        object.__setattr__(self, "resolution", (int(res[0]), int(res[1])))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field (``resolution`` as a list)."""
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Protocol":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown Protocol field(s): {sorted(unknown)}")
        kwargs = dict(d)
        if "resolution" in kwargs and isinstance(kwargs["resolution"], list):
            kwargs["resolution"] = tuple(kwargs["resolution"])
        try:
            return cls(**kwargs)
        except TypeError as exc:  # missing required fields
            raise ValueError(f"cannot build Protocol from {dict(d)!r}: {exc}") from None

    def canonical_json(self) -> str:
        """Canonical JSON of every field except ``name`` (sorted keys, no whitespace)."""
        d = self.to_dict()
        d.pop("name")
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def protocol_id(self) -> str:
        """First 12 hex chars of sha256 of :meth:`canonical_json` (independent of ``name``)."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Crops, masks, resizing, post-processing
# --------------------------------------------------------------------------------------------
def crop_bounds(h: int, w: int, crop: str) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of the crop window for a ``h x w`` GT map.

    Uses ``int(a*H):int(b*H)`` slicing with the fractions of docs/datasets.md (Eigen protocol step 3) (``CROP_FRACTIONS``).
    ``crop="none"`` returns the full image.
    """
    if crop == "none":
        return 0, int(h), 0, int(w)
    if crop not in CROP_FRACTIONS:
        raise ValueError(f"crop must be one of {_CROPS}, got {crop!r}")
    a, b, c, d = CROP_FRACTIONS[crop]
    return int(a * h), int(b * h), int(c * w), int(d * w)


def crop_mask(h: int, w: int, crop: str, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``h x w`` tensor, True inside the crop (all True for ``"none"``)."""
    r0, r1, c0, c1 = crop_bounds(h, w, crop)
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[r0:r1, c0:c1] = True
    return mask


def _as_b1hw(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        return x[None, None]
    if x.dim() == 3:
        return x[:, None]
    if x.dim() == 4 and x.shape[1] == 1:
        return x
    raise ValueError(f"{what} must be B x 1 x H x W (or B x H x W / H x W), got {tuple(x.shape)}")


def resize_disparity(disp: Tensor, gt_hw: tuple[int, int]) -> Tensor:
    """Bilinear resize of a ``B x C x h x w`` disparity to ``gt_hw`` (``align_corners=False``).

    Matches ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` (half-pixel centres, no
    antialiasing) to float32 rounding: the interpolation runs in float64 because PyTorch computes
    float32 source coordinates in float32 (errors up to ~5e-5 at KITTI widths with non-integer
    ratios). Returns the input unchanged if it already has the target size.
    """
    h, w = int(gt_hw[0]), int(gt_hw[1])
    if tuple(disp.shape[-2:]) == (h, w):
        return disp
    out = F.interpolate(disp.to(torch.float64), size=(h, w), mode="bilinear", align_corners=False)
    return out.to(disp.dtype) if disp.is_floating_point() else out


def resize_prediction(depth: Tensor, gt_hw: tuple[int, int]) -> Tensor:
    """Resize a depth prediction to the GT size the Monodepth2 way (docs/datasets.md, Eigen protocol step 1).

    The *disparity* ``1/depth`` is resized bilinearly (OpenCV ``INTER_LINEAR`` semantics) and
    inverted back to depth. Depth values are floored at 1e-12 before inversion so that zeros do
    not produce ``inf``. Accepts ``B x 1 x h x w`` (or ``B x h x w`` / ``h x w``); returns
    ``B x 1 x H x W``.
    """
    depth = _as_b1hw(depth, "depth")
    if tuple(depth.shape[-2:]) == (int(gt_hw[0]), int(gt_hw[1])):
        return depth
    disp = 1.0 / depth.clamp_min(1e-12)
    return 1.0 / resize_disparity(disp, gt_hw)


def flip_post_process(disp: Tensor, disp_of_flipped_input: Tensor) -> Tensor:
    """Monodepth post-processing (docs/datasets.md, Eigen protocol step 6), applied to disparities.

    ``disp`` is the prediction for the image, ``disp_of_flipped_input`` the prediction for the
    horizontally mirrored image (still mirrored; it is un-mirrored here: ``d_f``). With the
    normalised column ``x = linspace(0, 1, W)`` and ``w(x) = 1 - clip(20 (x - 0.05), 0, 1)``::

        out = w(1-x) * d + w(x) * d_f + (1 - w(x) - w(1-x)) * (d + d_f) / 2

    so the left 5 % of columns come from the mirrored pass, the right 5 % from the normal pass,
    the middle is the mean, with linear ramps (5 %..10 %) between. ``w(1-x)`` is taken as the
    column-reversed ``w(x)`` (exactly as Monodepth2). Works for any ``... x H x W`` shape.
    """
    if disp.shape != disp_of_flipped_input.shape:
        raise ValueError(
            f"disp {tuple(disp.shape)} and disp_of_flipped_input "
            f"{tuple(disp_of_flipped_input.shape)} must have the same shape"
        )
    w = disp.shape[-1]
    d_f = torch.flip(disp_of_flipped_input, dims=[-1])
    x = torch.linspace(0.0, 1.0, w, dtype=torch.float64, device=disp.device)
    l_mask = (1.0 - torch.clamp(20.0 * (x - 0.05), 0.0, 1.0)).to(disp.dtype)
    r_mask = torch.flip(l_mask, dims=[0])
    mean = 0.5 * (disp + d_f)
    return r_mask * disp + l_mask * d_f + (1.0 - l_mask - r_mask) * mean


def _gt_rule(gt: Tensor, protocol: Protocol) -> Tensor:
    if protocol.gt_mask == "range":
        valid = (gt > protocol.min_depth) & (gt < protocol.max_depth)
    else:
        valid = gt > 0
    return valid & torch.isfinite(gt)


def _mask_b1hw(mask: Tensor, shape: tuple[int, ...]) -> Tensor:
    mask = mask.to(torch.bool)
    if mask.dim() == 3:  # B x H x W
        mask = mask[:, None]
    return torch.broadcast_to(mask, shape)


def valid_mask(gt: Tensor, protocol: Protocol, mask: Tensor | None = None) -> Tensor:
    """Boolean valid-pixel mask for ``gt`` (``B x 1 x H x W``): GT rule AND crop AND ``mask``."""
    gt = _as_b1hw(gt, "gt")
    valid = _gt_rule(gt, protocol)
    h, w = gt.shape[-2:]
    if protocol.crop != "none":
        valid = valid & crop_mask(h, w, protocol.crop, device=gt.device)
    if mask is not None:
        valid = valid & _mask_b1hw(mask, tuple(gt.shape))
    return valid


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
# Metrics
# --------------------------------------------------------------------------------------------
def compute_metrics(
    pred: Tensor, gt: Tensor, protocol: Protocol, mask: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-image depth metrics for a batch (docs/datasets.md, Eigen protocol steps 2-5 and "Metric definitions").

    Args:
        pred: ``B x 1 x H x W`` predicted depth in metres, already at GT resolution
            (use :func:`resize_prediction`), *before* scaling.
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
    pred = _as_b1hw(pred, "pred")
    gt = _as_b1hw(gt, "gt")
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
    valid = _gt_rule(gt_c, protocol)
    if mask is not None:
        valid = valid & _mask_b1hw(mask, (bsz, 1, h, w))[..., r0:r1, c0:c1]
    n = valid.reshape(bsz, -1).sum(dim=1)

    # Compact the valid pixels of the whole batch into flat vectors (row-major, so image after
    # image); per-image sums are float64 segment sums over those vectors.
    pv = torch.masked_select(pred_c, valid)
    gv = torch.masked_select(gt_c, valid)
    return metrics_from_values(pv, gv, n, protocol)


def metrics_from_values(pred: Tensor, gt: Tensor, counts: Tensor, protocol: Protocol) -> dict[str, Tensor]:
    """Per-image metrics from the valid pixels only (docs/datasets.md, Eigen protocol steps 4-5 and "Metric definitions").

    Args:
        pred: flat predicted depths of the valid pixels, image after image, *before* scaling.
        gt: flat GT depths of the same pixels.
        counts: ``B`` int tensor, number of valid pixels of each image (``sum == pred.numel()``).
        protocol: scaling policy and clamp range (the mask must already be applied).

    Returns the same dict as :func:`compute_metrics`.
    """
    pv, gv, n = pred, gt, counts.to(torch.int64)
    if pv.shape != gv.shape or pv.dim() != 1:
        raise ValueError(f"pred {tuple(pv.shape)} and gt {tuple(gv.shape)} must be flat vectors of one length")
    if int(n.sum()) != pv.numel():
        raise ValueError(f"counts sum to {int(n.sum())}, but there are {pv.numel()} values")
    bsz = n.numel()
    total = pv.numel()

    if protocol.scale == "median":
        scale = (_segment_median(gv, n) / _segment_median(pv, n)).to(pv.dtype)
        pv = pv * torch.repeat_interleave(scale, n, output_size=total)
    elif protocol.scale == "stereo_factor":
        scale = torch.full((bsz,), protocol.stereo_factor, dtype=pv.dtype, device=pv.device)
        pv = pv * protocol.stereo_factor
    else:
        scale = torch.ones(bsz, dtype=pv.dtype, device=pv.device)
    pv = pv.clamp(protocol.min_depth, protocol.max_depth)

    n_f = n.to(torch.float64)

    def mean(x: Tensor) -> Tensor:
        return _segment_sum(x, n) / n_f

    diff = gv - pv
    sq = diff * diff
    log_diff = torch.log(pv) - torch.log(gv)  # d = ln p - ln g
    ratio = torch.maximum(gv / pv, pv / gv)

    out: dict[str, Tensor] = {}
    out["abs_rel"] = mean(diff.abs() / gv)
    out["sq_rel"] = mean(sq / gv)
    out["rmse"] = torch.sqrt(mean(sq))
    mean_d2 = mean(log_diff * log_diff)
    out["rmse_log"] = torch.sqrt(mean_d2)
    out["log10"] = mean(log_diff.abs()) / math.log(10.0)
    out["a1"] = mean(ratio < 1.25)
    out["a2"] = mean(ratio < 1.25**2)
    out["a3"] = mean(ratio < 1.25**3)
    # SILog = 100 sqrt(mean d^2 - mean(d)^2); float64 sums keep the cancellation harmless.
    mean_d = mean(log_diff)
    out["silog"] = 100.0 * torch.sqrt((mean_d2 - mean_d * mean_d).clamp_min(0.0))

    empty = n == 0
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=gv.device)
    for key in METRIC_NAMES:
        out[key] = torch.where(empty, nan, out[key])
    out["scale"] = torch.where(empty, nan, scale.to(torch.float64))
    out["valid_px"] = n.to(torch.int64)
    return out


def sample_resized(disp: Tensor, gt_hw: tuple[int, int], batch: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Values of ``resize_disparity(disp, gt_hw)`` at the pixels ``(batch, rows, cols)`` only.

    Same half-pixel bilinear rule as :func:`resize_disparity` (``align_corners=False``, source
    coordinates clamped at 0, computed in float64), evaluated at the requested pixels instead of
    the whole ``H x W`` map: for sparse GT (Velodyne: ~4 % of the pixels) evaluation never
    builds the full-resolution prediction. Returns float64 values (cast as needed).
    """
    disp = _as_b1hw(disp, "disp")
    h, w = int(disp.shape[-2]), int(disp.shape[-1])
    H, W = int(gt_hw[0]), int(gt_hw[1])
    src = disp[:, 0].to(torch.float64)
    if (h, w) == (H, W):
        return src[batch, rows, cols]

    def axis(idx: Tensor, n_in: int, n_out: int):
        pos = ((idx.to(torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp_min(0.0)
        i0 = pos.floor().to(torch.int64).clamp_max(n_in - 1)
        i1 = torch.where(i0 < n_in - 1, i0 + 1, i0)
        lam = pos - i0.to(torch.float64)
        return i0, i1, lam

    y0, y1, ly = axis(rows, h, H)
    x0, x1, lx = axis(cols, w, W)
    top = (1.0 - lx) * src[batch, y0, x0] + lx * src[batch, y0, x1]
    bottom = (1.0 - lx) * src[batch, y1, x0] + lx * src[batch, y1, x1]
    return (1.0 - ly) * top + ly * bottom


def compute_metrics_sparse(
    disp: Tensor | np.ndarray,
    gt: Tensor | np.ndarray | list[np.ndarray],
    protocol: Protocol,
    mask: Tensor | np.ndarray | None = None,
) -> dict[str, Tensor]:
    """:func:`compute_metrics` of ``1 / resize_disparity(disp, gt size)`` without the resize.

    ``disp`` is a ``B x 1 x h x w`` (or ``B x h x w``) disparity-like map (``1 / depth``) at any
    resolution; ``gt`` the ``B x 1 x H x W`` GT (or a list of ``B`` equally sized ``H x W``
    arrays, which saves stacking them). Only the valid GT pixels (GT rule, crop, ``mask``) are
    interpolated (the bilinear rule of :func:`resize_disparity`, in float64), so the cost
    follows the number of GT points, not the image size. Tensors on the CPU and NumPy arrays
    take a NumPy path (much faster than small torch ops on one core); CUDA tensors stay in
    torch. Results equal the dense path to float32 rounding; returns the same dict of
    ``B``-vectors (torch, float64) as :func:`compute_metrics`.
    """
    if isinstance(disp, Tensor) and disp.device.type != "cpu":
        return _compute_metrics_sparse_torch(disp, gt, protocol, mask)
    d = _np3(disp, "disp")
    gts = [np.asarray(g) for g in gt] if isinstance(gt, (list, tuple)) else list(_np3(gt, "gt"))
    if d.shape[0] != len(gts):
        raise ValueError(f"disp has {d.shape[0]} images, gt has {len(gts)}")
    if any(g.ndim != 2 or g.shape != gts[0].shape for g in gts):
        raise ValueError("gt maps must all be H x W of one size")
    masks = None
    if mask is not None:
        m = _np3(mask, "mask").astype(bool)
        masks = [np.broadcast_to(m[i if m.shape[0] > 1 else 0], gts[0].shape) for i in range(len(gts))]
    dtype = d.dtype.type if np.issubdtype(d.dtype, np.floating) else np.float32
    pv_parts, gv_parts, counts = [], [], []
    for i, g in enumerate(gts):
        r, c, gv = _valid_points_np(g, protocol, None if masks is None else masks[i])
        dv = _sample_np(d[i], g.shape, r, c).astype(dtype)
        with np.errstate(divide="ignore"):
            pv_parts.append((dtype(1.0) / dv).astype(dtype))
        gv_parts.append(gv if np.issubdtype(gv.dtype, np.floating) else gv.astype(np.float32))
        counts.append(gv.size)
    pv = np.concatenate(pv_parts) if pv_parts else np.zeros(0, dtype)
    gv = np.concatenate(gv_parts) if gv_parts else np.zeros(0, np.float32)
    n = np.asarray(counts, dtype=np.int64)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _metrics_np(pv, gv, n, protocol).items()}


def _np3(x, what: str) -> np.ndarray:
    """``B x H x W`` NumPy view of a ``B x 1 x H x W`` / ``B x H x W`` / ``H x W`` array or tensor."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 2:
        return x[None]
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(f"{what} must be B x 1 x H x W (or B x H x W / H x W), got {tuple(x.shape)}")


def _valid_points_np(gt: np.ndarray, protocol: Protocol, mask: np.ndarray | None):
    """``(rows, cols, values)`` of the valid pixels of one ``H x W`` GT map, row-major.

    One comparison pass over the crop's rows (a contiguous block) finds the candidates
    (``gt > min_depth`` or ``gt > 0``); the column range, the upper bound and the extra mask
    are applied to the candidates only.
    """
    h, w = gt.shape
    r0, r1, c0, c1 = crop_bounds(h, w, protocol.crop)
    block = np.ascontiguousarray(gt[r0:r1]).reshape(-1)
    lower = protocol.min_depth if protocol.gt_mask == "range" else 0.0
    idx = np.flatnonzero(block > lower)
    vals = block[idx]
    r, c = np.divmod(idx, w)
    r += r0
    # NaN and -inf fail ``> lower``; +inf fails ``< max_depth`` or the finiteness test
    keep = vals < protocol.max_depth if protocol.gt_mask == "range" else np.isfinite(vals)
    if (c0, c1) != (0, w):
        keep &= (c >= c0) & (c < c1)
    if mask is not None:
        keep &= mask[r, c]
    return r[keep], c[keep], vals[keep]


@functools.lru_cache(maxsize=64)
def _axis_table(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``i0, i1`` and weight ``lam`` of every output index for a half-pixel
    bilinear resize from ``n_in`` to ``n_out`` samples (the rule of :func:`sample_resized`)."""
    pos = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, pos - i0


def _sample_np(disp: np.ndarray, gt_hw, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float64 values of one ``h x w`` map bilinearly resized to ``gt_hw``, at ``(r, c)`` only
    (four gathers and two lerps per point, weights from per-axis tables)."""
    h, w = disp.shape
    H, W = int(gt_hw[0]), int(gt_hw[1])
    src = np.ascontiguousarray(disp).reshape(-1)
    if (h, w) == (H, W):
        return src[r * w + c].astype(np.float64)
    y0, y1, ly = _axis_table(h, H)
    x0, x1, lx = _axis_table(w, W)
    top_row, bottom_row = (y0 * w)[r], (y1 * w)[r]
    left, right = x0[c], x1[c]
    v00 = src[top_row + left].astype(np.float64)
    v01 = src[top_row + right].astype(np.float64)
    v10 = src[bottom_row + left].astype(np.float64)
    v11 = src[bottom_row + right].astype(np.float64)
    lam = lx[c]
    top = v00 + lam * (v01 - v00)
    bottom = v10 + lam * (v11 - v10)
    return top + ly[r] * (bottom - top)


def _metrics_np(pv: np.ndarray, gv: np.ndarray, n: np.ndarray, protocol: Protocol) -> dict[str, np.ndarray]:
    """NumPy twin of :func:`metrics_from_values` (same formulas, same float32/float64 split)."""
    bsz = n.size
    starts = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)
    nonempty = n > 0
    ne_starts = starts[nonempty]
    n_f = n.astype(np.float64)

    def mean(x: np.ndarray) -> np.ndarray:
        out = np.full(bsz, np.nan)
        if ne_starts.size:
            out[nonempty] = np.add.reduceat(x.astype(np.float64), ne_starts) / n_f[nonempty]
        return out

    def seg_median(x: np.ndarray) -> np.ndarray:
        out = np.full(bsz, np.nan, dtype=x.dtype)
        for i in np.flatnonzero(nonempty):
            out[i] = np.median(x[starts[i]:starts[i] + n[i]])
        return out

    if protocol.scale == "median":
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = (seg_median(gv) / seg_median(pv)).astype(pv.dtype)
        pv = pv * np.repeat(scale, n)
    elif protocol.scale == "stereo_factor":
        scale = np.full(bsz, protocol.stereo_factor, dtype=pv.dtype)
        pv = pv * pv.dtype.type(protocol.stereo_factor)
    else:
        scale = np.ones(bsz, dtype=pv.dtype)
    pv = np.clip(pv, pv.dtype.type(protocol.min_depth), pv.dtype.type(protocol.max_depth))

    diff = gv - pv
    sq = diff * diff
    log_diff = np.log(pv) - np.log(gv)
    ratio = np.maximum(gv / pv, pv / gv)
    out: dict[str, np.ndarray] = {}
    out["abs_rel"] = mean(np.abs(diff) / gv)
    out["sq_rel"] = mean(sq / gv)
    out["rmse"] = np.sqrt(mean(sq))
    mean_d2 = mean(log_diff * log_diff)
    out["rmse_log"] = np.sqrt(mean_d2)
    out["log10"] = mean(np.abs(log_diff)) / math.log(10.0)
    out["a1"] = mean(ratio < 1.25)
    out["a2"] = mean(ratio < 1.25**2)
    out["a3"] = mean(ratio < 1.25**3)
    mean_d = mean(log_diff)
    out["silog"] = 100.0 * np.sqrt(np.maximum(mean_d2 - mean_d * mean_d, 0.0))
    out["scale"] = np.where(nonempty, scale.astype(np.float64), np.nan)
    out["valid_px"] = n.astype(np.int64)
    return out


def _compute_metrics_sparse_torch(disp: Tensor, gt: Tensor, protocol: Protocol, mask: Tensor | None) -> dict[str, Tensor]:
    disp = _as_b1hw(disp, "disp")
    gt = _as_b1hw(gt, "gt").to(disp.device)
    if disp.shape[0] != gt.shape[0]:
        raise ValueError(f"disp has {disp.shape[0]} images, gt has {gt.shape[0]}")
    bsz, _, h, w = gt.shape
    if not gt.is_floating_point():
        gt = gt.float()
    dtype = disp.dtype if disp.is_floating_point() else torch.float32
    r0, r1, c0, c1 = crop_bounds(h, w, protocol.crop)
    gt_c = gt[:, 0, r0:r1, c0:c1]
    valid = _gt_rule(gt_c, protocol)
    if mask is not None:
        valid = valid & _mask_b1hw(mask.to(gt.device), (bsz, 1, h, w))[:, 0, r0:r1, c0:c1]
    b, r, c = torch.nonzero(valid, as_tuple=True)
    n = torch.bincount(b, minlength=bsz)
    gv = gt_c[b, r, c]
    dv = sample_resized(disp, (h, w), b, r + r0, c + c0).to(dtype)
    return metrics_from_values(1.0 / dv, gv, n, protocol)


# --------------------------------------------------------------------------------------------
# Accumulation
# --------------------------------------------------------------------------------------------
class MetricAccumulator:
    """Collects per-image metrics and averages them over images (docs/datasets.md, Eigen protocol and "Metric definitions").

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
            vals = torch.as_tensor(value).detach().reshape(-1).to("cpu", torch.float64).tolist()
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


# --------------------------------------------------------------------------------------------
# End-to-end helper
# --------------------------------------------------------------------------------------------
def _unpack_sample(sample: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    if isinstance(sample, Mapping):
        return sample["image"], sample["depth_gt"], sample.get("depth_gt_mask")
    if isinstance(sample, (tuple, list)):
        if len(sample) == 2:
            return sample[0], sample[1], None
        if len(sample) == 3:
            return sample[0], sample[1], sample[2]
    raise ValueError(
        "each sample must be (image, gt), (image, gt, mask) or a mapping with "
        "'image' and 'depth_gt' (optional 'depth_gt_mask')"
    )


@torch.no_grad()
def evaluate_depth_fn(
    predict: Callable[[Tensor], Tensor],
    samples: Iterable[Any],
    protocol: Protocol,
    device: torch.device | str = "cpu",
    flip: bool | None = None,
) -> dict[str, float | int]:
    """Evaluate ``predict`` on ``samples`` under ``protocol`` and return the accumulator summary.

    Args:
        predict: ``predict(image B x 3 x h x w) -> depth B x 1 x h x w`` (metres or scaled units,
            whatever the protocol's ``scale`` expects). Called under ``torch.no_grad``.
        samples: iterable of ``(image, gt)`` / ``(image, gt, mask)`` pairs or mappings with keys
            ``image``, ``depth_gt`` (and optional ``depth_gt_mask``); ``gt`` is ``B x 1 x H x W``.
            Images must already be at ``protocol.resolution`` (checked).
        device: where prediction and metrics run.
        flip: flip post-processing; ``None`` follows ``protocol.flip_pp``.

    With flip post-processing the mirrored image is predicted as well and the two *disparities*
    (``1/depth``) are fused by :func:`flip_post_process` before resizing to the GT size.
    """
    use_flip = protocol.flip_pp if flip is None else bool(flip)
    acc = MetricAccumulator(protocol)
    for sample in samples:
        image, gt, mask = _unpack_sample(sample)
        image = image.to(device)
        gt = _as_b1hw(gt.to(device), "gt")
        if tuple(image.shape[-2:]) != tuple(protocol.resolution):
            raise ValueError(
                f"image size {tuple(image.shape[-2:])} does not match protocol.resolution "
                f"{protocol.resolution} (protocol {protocol.name!r})"
            )
        depth = _as_b1hw(predict(image), "prediction")
        disp = 1.0 / depth.clamp_min(1e-12)
        if use_flip:
            depth_f = _as_b1hw(predict(torch.flip(image, dims=[-1])), "prediction")
            disp = flip_post_process(disp, 1.0 / depth_f.clamp_min(1e-12))
        pred = 1.0 / resize_disparity(disp, tuple(gt.shape[-2:]))
        if mask is not None:
            mask = mask.to(device)
        acc.update(compute_metrics(pred, gt, protocol, mask=mask))
    return acc.summary()
