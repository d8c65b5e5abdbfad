"""Depth evaluation: protocol records, crops, prediction resizing, flip post-processing, metrics.

Everything follows ``DATASETS.md`` sections 1.9 (KITTI Eigen protocol) and 2 (metric definitions):

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

import hashlib
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CROP_FRACTIONS",
    "LOWER_IS_BETTER",
    "METRIC_DESCRIPTIONS",
    "METRIC_NAMES",
    "MetricAccumulator",
    "Protocol",
    "compute_metrics",
    "crop_bounds",
    "crop_mask",
    "evaluate_depth_fn",
    "flip_post_process",
    "masked_median",
    "resize_disparity",
    "resize_prediction",
    "valid_mask",
]

#: Metric keys returned by :func:`compute_metrics` (besides ``scale`` and ``valid_px``).
METRIC_NAMES: tuple[str, ...] = (
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "a1",
    "a2",
    "a3",
    "silog",
)

#: One-line description of each metric (DATASETS.md section 2; g = GT, p = prediction, per image).
METRIC_DESCRIPTIONS: dict[str, str] = {
    "abs_rel": "AbsRel: mean |g - p| / g",
    "sq_rel": "SqRel: mean (g - p)^2 / g (m)",
    "rmse": "RMSE: sqrt(mean (g - p)^2) (m)",
    "rmse_log": "RMSElog: sqrt(mean (ln g - ln p)^2)",
    "log10": "log10: mean |log10 g - log10 p|",
    "a1": "delta1: fraction with max(g/p, p/g) < 1.25",
    "a2": "delta2: fraction with max(g/p, p/g) < 1.25^2",
    "a3": "delta3: fraction with max(g/p, p/g) < 1.25^3",
    "silog": "SILog: 100 sqrt(mean d^2 - mean(d)^2), d = ln p - ln g",
}

#: Metrics for which a smaller value is better (the δ accuracies a1..a3 are higher-is-better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"})

#: Crop fractions ``(row_start, row_end, col_start, col_end)`` of the GT height/width
#: (DATASETS.md 1.9 step 3). Slicing is ``[int(a*H):int(b*H), int(c*W):int(d*W)]``.
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

    Uses ``int(a*H):int(b*H)`` slicing with the fractions of DATASETS.md 1.9 (``CROP_FRACTIONS``).
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
    """Resize a depth prediction to the GT size the Monodepth2 way (DATASETS.md 1.9 step 1).

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
    """Monodepth post-processing (DATASETS.md 1.9 step 6), applied to disparities.

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
    """Per-image depth metrics for a batch (DATASETS.md 1.9 steps 2-5 and section 2).

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
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=gt.device)
    for key in METRIC_NAMES:
        out[key] = torch.where(empty, nan, out[key])
    out["scale"] = torch.where(empty, nan, scale.to(torch.float64))
    out["valid_px"] = n.to(torch.int64)
    return out


# --------------------------------------------------------------------------------------------
# Accumulation
# --------------------------------------------------------------------------------------------
class MetricAccumulator:
    """Collects per-image metrics and averages them over images (DATASETS.md 1.9 / 2).

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
