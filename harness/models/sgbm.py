"""Classical stereo teacher: OpenCV semi-global block matching with a left-right check.

No training and no features: it gives a baseline for how much a *learned* teacher adds and a
proxy-label source that needs nothing but rectified pairs. The right-view disparity for the
left-right check comes from the same matcher run on the horizontally mirrored pair
(``flip(right)`` as the reference view), which is what ``cv2.ximgproc``'s right matcher computes
but needs no opencv-contrib. The left-right check and the hole filling are vectorised numpy.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from harness.types import DepthOutput, FeatureSpec

__all__ = ["CLIPPED_SHARE", "SGBMTeacher", "default_max_disp", "fill_invalid_along_rows", "left_right_check",
           "top_of_range_counts", "top_of_range_share"]

#: a disparity within this many px of the top of the search range counts as pinned there
TOP_MARGIN = 2.0
#: a share of valid disparities at the top of the search range above which the harness warns
#: (``harness predict`` and the cached outputs of a frozen teacher)
CLIPPED_SHARE = 0.02


def default_max_disp(width: int) -> int:
    """The search range used when none is given: an eighth of the image width, rounded up to a
    multiple of 16 (48 px at 320, 80 at 640, 96 for Middlebury's 741-px motorcycle, 160 at 1242)."""
    return max(16, -(-math.ceil(int(width) / 8) // 16) * 16)


def top_of_range_counts(disp: np.ndarray, valid: np.ndarray, top: float) -> tuple[int, int]:
    """How many ``valid`` disparities lie within :data:`TOP_MARGIN` px of ``top``, and how many are
    valid (counts add up over batches)."""
    values = np.asarray(disp)[np.asarray(valid, dtype=bool)]
    return int((values >= float(top) - TOP_MARGIN).sum()), int(values.size)


def top_of_range_share(disp: np.ndarray, valid: np.ndarray, top: float) -> float:
    """Share of the ``valid`` disparities within :data:`TOP_MARGIN` px of ``top`` (0 when none is
    valid): a sizeable share means nearer surfaces were clipped to the range."""
    hits, n = top_of_range_counts(disp, valid, top)
    return hits / n if n else 0.0


MODES = {"3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY, "hh": cv2.STEREO_SGBM_MODE_HH,
         "sgbm": cv2.STEREO_SGBM_MODE_SGBM}


def left_right_check(disp_left: np.ndarray, disp_right: np.ndarray,
                     max_diff: float = 1.0) -> np.ndarray:
    """Pixels of the left view whose disparity the right view confirms.

    ``disp_left[y, x]`` maps left ``x`` to right ``x - d``; ``disp_right[y, x']`` maps right
    ``x'`` to left ``x' + d'``. A left pixel is consistent when ``x - d`` lies in the image and
    ``|d - disp_right[y, round(x - d)]| <= max_diff``. Non-positive or non-finite disparities
    are never consistent. Returns an ``H x W`` bool array.
    """
    h, w = disp_left.shape
    finite = np.isfinite(disp_left) & (disp_left > 0)
    xs = np.arange(w, dtype=np.float64)[None, :]
    x_right = np.rint(xs - np.where(finite, disp_left, 0.0)).astype(np.int64)
    inside = (x_right >= 0) & (x_right < w)
    d_r = np.take_along_axis(disp_right, np.clip(x_right, 0, w - 1), axis=1)
    return finite & inside & np.isfinite(d_r) & (np.abs(disp_left - d_r) <= max_diff)


def fill_invalid_along_rows(values: np.ndarray, valid: np.ndarray,
                            fallback: float) -> np.ndarray:
    """Replace invalid entries by the nearest valid value in the same row (ties -> left).

    Vectorised with running maxima of indices. Rows without any valid entry get ``fallback``.
    """
    h, w = values.shape
    idx = np.broadcast_to(np.arange(w), (h, w))
    # Index of the last valid pixel at or left of x (-1 if none).
    left_idx = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    # Index of the first valid pixel at or right of x (w if none), via the mirrored rows.
    rev = np.maximum.accumulate(np.where(valid[:, ::-1], idx, -1), axis=1)
    right_idx = (w - 1 - rev)[:, ::-1]
    has_left = left_idx >= 0
    has_right = right_idx <= w - 1
    dist_left = np.where(has_left, idx - left_idx, np.iinfo(np.int64).max)
    dist_right = np.where(has_right, right_idx - idx, np.iinfo(np.int64).max)
    src = np.where(dist_left <= dist_right, left_idx, right_idx)
    any_valid = valid.any(axis=1, keepdims=True)
    filled = np.take_along_axis(values, np.clip(src, 0, w - 1), axis=1)
    return np.where(any_valid, filled, fallback).astype(values.dtype, copy=False)


class SGBMTeacher(nn.Module):
    """OpenCV StereoSGBM as a frozen, non-trainable teacher (no features, no ``self_loss``).

    Args:
        max_disp: largest disparity searched (px); rounded up to a multiple of 16. ``None``
            (the default): :func:`default_max_disp` of each input's width.
        block_size: matching block size (odd); P1/P2 are ``8/32 * block_size**2``.
        mode: ``"3way"`` (default), ``"hh"`` or ``"sgbm"``.
        uniqueness_ratio, speckle_window, speckle_range, disp12_max_diff, pre_filter_cap:
            passed to ``cv2.StereoSGBM_create``.
        lr_check: reject disparities that the right-view matcher contradicts by more than
            ``lr_max_diff`` px.
        min_depth, max_depth: clamp range of the returned depth.

    ``forward`` returns full-resolution disparity (px, invalid pixels filled by the nearest
    valid value along the row), depth ``fx * baseline / disp`` and ``aux["confidence"]``
    (1 where SGBM gave a valid, L-R consistent disparity, else 0).
    """

    mode = "frozen"
    trainable = False
    input_keys = frozenset({"image", "image_right", "K", "baseline"})

    def __init__(self, max_disp: int | None = None, block_size: int = 5, mode: str = "3way",
                 uniqueness_ratio: int = 10, speckle_window: int = 100, speckle_range: int = 2,
                 disp12_max_diff: int = 1, pre_filter_cap: int = 63, lr_check: bool = True,
                 lr_max_diff: float = 1.0, min_depth: float = 0.1,
                 max_depth: float = 100.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"block_size must be odd and positive, got {block_size}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.max_disp = None if max_disp is None else int(max_disp)
        #: the search range in px (a multiple of 16); None: it follows each input's width
        self.num_disparities = None if max_disp is None else max(16, -(-self.max_disp // 16) * 16)
        self.block_size = block_size
        self.sgbm_mode = mode
        self.lr_check = lr_check
        self.lr_max_diff = float(lr_max_diff)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self._params = dict(
            minDisparity=0,
            blockSize=block_size,
            P1=8 * block_size**2,  # single (gray) channel
            P2=32 * block_size**2,
            disp12MaxDiff=disp12_max_diff,
            preFilterCap=pre_filter_cap,
            uniquenessRatio=uniqueness_ratio,
            speckleWindowSize=speckle_window,
            speckleRange=speckle_range,
            mode=MODES[mode],
        )
        self._matchers: dict[int, Any] = {}

    def search_range(self, width: int) -> int:
        """The disparities searched (px, a multiple of 16) for an input ``width`` px wide."""
        if self.num_disparities is not None:
            return self.num_disparities
        return default_max_disp(width)

    def _matcher(self, num_disparities: int):
        if num_disparities not in self._matchers:
            self._matchers[num_disparities] = cv2.StereoSGBM_create(numDisparities=num_disparities, **self._params)
        return self._matchers[num_disparities]

    def feature_specs(self) -> list[FeatureSpec]:
        """SGBM exposes no features."""
        return []

    # ------------------------------------------------------------------ numpy core
    @staticmethod
    def _to_gray_u8(image: Tensor) -> np.ndarray:
        """``3 x H x W`` float image in ``[0, 1]`` -> ``H x W`` uint8 gray."""
        rgb = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        rgb = np.ascontiguousarray(rgb.permute(1, 2, 0).cpu().numpy())
        if rgb.shape[2] == 1:
            return rgb[..., 0]
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    def _match(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """SGBM disparity of ``left`` in px (float32); invalid pixels are ``<= 0``.

        SGBM never matches the first ``num_disparities`` columns; padding both images on the
        left by that many black columns (cropped afterwards) lets every real pixel be matched
        against every candidate that lies inside the right image.
        """
        pad = self.search_range(left.shape[1])
        lp = cv2.copyMakeBorder(left, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
        rp = cv2.copyMakeBorder(right, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
        disp = self._matcher(pad).compute(lp, rp)[:, pad:]
        return disp.astype(np.float32) / 16.0

    def disparity(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Left-view disparity (px, invalid filled) and validity mask for one uint8 pair."""
        disp = self._match(left, right)
        # A match must land inside the right image (x - d >= 0); the L-R check implies this.
        xs = np.arange(disp.shape[1], dtype=np.float32)[None, :]
        valid = (disp > 0) & (xs - disp >= -0.5)
        if self.lr_check:
            # Right-view disparity: match the mirrored pair, with flip(right) as reference.
            disp_r = self._match(np.ascontiguousarray(right[:, ::-1]),
                                 np.ascontiguousarray(left[:, ::-1]))[:, ::-1]
            disp_r = np.where(disp_r > 0, disp_r, np.nan)
            valid &= left_right_check(disp, disp_r, self.lr_max_diff)
        fallback = float(np.median(disp[valid])) if valid.any() else 0.0
        disp = fill_invalid_along_rows(disp, valid, fallback)
        return disp, valid

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def forward(self, batch: dict[str, Any], student_out: DepthOutput | None = None) -> DepthOutput:
        """Run SGBM on every pair of the batch (``image``/``image_right`` in ``[0, 1]``)."""
        missing = [k for k in ("image", "image_right", "K", "baseline") if k not in batch]
        if missing:
            raise KeyError(f"SGBMTeacher needs batch key(s) {missing}; got {sorted(batch)}")
        left, right = batch["image"], batch["image_right"]
        if left.shape != right.shape or left.dim() != 4:
            raise ValueError(
                f"image and image_right must both be B x C x H x W, got "
                f"{tuple(left.shape)} and {tuple(right.shape)}"
            )
        disps, confs = [], []
        for i in range(left.shape[0]):
            d, v = self.disparity(self._to_gray_u8(left[i]), self._to_gray_u8(right[i]))
            disps.append(torch.from_numpy(d))
            confs.append(torch.from_numpy(v.astype(np.float32)))
        disp = torch.stack(disps)[:, None].to(device=left.device, dtype=torch.float32)
        conf = torch.stack(confs)[:, None].to(device=left.device, dtype=torch.float32)
        fx = batch["K"][:, 0, 0].to(disp)
        base = torch.as_tensor(batch["baseline"]).to(disp).reshape(-1)
        fb = (fx * base).view(-1, 1, 1, 1)
        depth = (fb / disp.clamp(min=1e-6)).clamp(self.min_depth, self.max_depth)
        return DepthOutput(disp={0: disp}, depth={0: depth}, aux={"confidence": conf},
                           disp_units="px", depth_kind="metric")

    def extra_repr(self) -> str:
        return (f"max_disp={self.max_disp}, num_disparities={self.num_disparities}, "
                f"block_size={self.block_size}, mode={self.sgbm_mode!r}, "
                f"lr_check={self.lr_check}")
