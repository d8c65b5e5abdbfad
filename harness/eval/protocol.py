"""Evaluation protocols: the :class:`Protocol` record, crops, valid-pixel masks, prediction
resizing and flip post-processing (``docs/datasets.md``, "The KITTI Eigen protocol, step by step"):

1. the prediction is a disparity-like map at network resolution; the *disparity* is resized
   bilinearly (OpenCV ``INTER_LINEAR`` semantics) to the GT size and inverted to depth
   (:func:`resize_prediction`);
2. valid pixels: ``min_depth < gt < max_depth`` (``gt_mask="range"``) or ``gt > 0``
   (``gt_mask="positive"``), AND inside the crop (:func:`crop_mask`, :func:`valid_mask`);
3. scale: per-image median ratio, a fixed stereo factor (5.4 for KITTI), or none;
4. the prediction is clamped to ``[min_depth, max_depth]`` AFTER scaling; GT is masked, not clamped;
5. optional Monodepth flip post-processing on disparities before resizing (:func:`flip_post_process`).

Steps 3-4 and the metric formulas are in :mod:`harness.eval.metrics`, the sparse-GT path in
:mod:`harness.eval.sparse`, the split-evaluation loop in :mod:`harness.eval.loop`.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CROP_FRACTIONS",
    "Protocol",
    "as_b1hw",
    "broadcast_mask",
    "crop_bounds",
    "crop_mask",
    "flip_post_process",
    "gt_rule",
    "resize_disparity",
    "resize_prediction",
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

    Uses ``int(a*H):int(b*H)`` slicing with the fractions of docs/datasets.md (Eigen protocol step 3,
    ``CROP_FRACTIONS``).
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


def as_b1hw(x: Tensor, what: str) -> Tensor:
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
    depth = as_b1hw(depth, "depth")
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


def gt_rule(gt: Tensor, protocol: Protocol) -> Tensor:
    if protocol.gt_mask == "range":
        valid = (gt > protocol.min_depth) & (gt < protocol.max_depth)
    else:
        valid = gt > 0
    return valid & torch.isfinite(gt)


def broadcast_mask(mask: Tensor, shape: tuple[int, ...]) -> Tensor:
    mask = mask.to(torch.bool)
    if mask.dim() == 3:  # B x H x W
        mask = mask[:, None]
    return torch.broadcast_to(mask, shape)


def valid_mask(gt: Tensor, protocol: Protocol, mask: Tensor | None = None) -> Tensor:
    """Boolean valid-pixel mask for ``gt`` (``B x 1 x H x W``): GT rule AND crop AND ``mask``."""
    gt = as_b1hw(gt, "gt")
    valid = gt_rule(gt, protocol)
    h, w = gt.shape[-2:]
    if protocol.crop != "none":
        valid = valid & crop_mask(h, w, protocol.crop, device=gt.device)
    if mask is not None:
        valid = valid & broadcast_mask(mask, tuple(gt.shape))
    return valid

