"""The sparse-GT path: metrics of ``1 / resize_disparity(disp, gt size)`` computed at the valid GT
pixels only (Velodyne GT covers ~4 % of the pixels), without building the full-resolution
prediction. Same half-pixel bilinear rule as :func:`harness.eval.protocol.resize_disparity`, in
float64; the metrics come from :mod:`harness.eval.metrics` (NumPy backend for CPU inputs, torch
for CUDA tensors).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from harness.eval.metrics import metrics_from_values, metrics_from_values_np
from harness.eval.protocol import Protocol, as_b1hw, broadcast_mask, crop_bounds, gt_rule

__all__ = ["compute_metrics_sparse", "sample_resized"]


def sample_resized(disp: Tensor, gt_hw: tuple[int, int], batch: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Values of ``resize_disparity(disp, gt_hw)`` at the pixels ``(batch, rows, cols)`` only.

    Same half-pixel bilinear rule as :func:`~harness.eval.protocol.resize_disparity` (``align_corners=False``, source
    coordinates clamped at 0, computed in float64), evaluated at the requested pixels instead of
    the whole ``H x W`` map: for sparse GT (Velodyne: ~4 % of the pixels) evaluation never
    builds the full-resolution prediction. Returns float64 values (cast as needed).
    """
    disp = as_b1hw(disp, "disp")
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
    """:func:`harness.eval.metrics.compute_metrics` of ``1 / resize_disparity(disp, gt size)`` without the resize.

    ``disp`` is a ``B x 1 x h x w`` (or ``B x h x w``) disparity-like map (``1 / depth``) at any
    resolution; ``gt`` the ``B x 1 x H x W`` GT (or a list of ``B`` equally sized ``H x W``
    arrays, which saves stacking them). Only the valid GT pixels (GT rule, crop, ``mask``) are
    interpolated (the bilinear rule of :func:`~harness.eval.protocol.resize_disparity`, in float64), so the cost
    follows the number of GT points, not the image size. Tensors on the CPU and NumPy arrays
    take a NumPy path (much faster than small torch ops on one core); CUDA tensors stay in
    torch. Results equal the dense path to float32 rounding; returns the same dict of
    ``B``-vectors (torch, float64) as :func:`~harness.eval.metrics.compute_metrics`.
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
    return metrics_from_values_np(pv, gv, n, protocol)


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



def _compute_metrics_sparse_torch(disp: Tensor, gt: Tensor, protocol: Protocol, mask: Tensor | None) -> dict[str, Tensor]:
    disp = as_b1hw(disp, "disp")
    gt = as_b1hw(gt, "gt").to(disp.device)
    if disp.shape[0] != gt.shape[0]:
        raise ValueError(f"disp has {disp.shape[0]} images, gt has {gt.shape[0]}")
    bsz, _, h, w = gt.shape
    if not gt.is_floating_point():
        gt = gt.float()
    dtype = disp.dtype if disp.is_floating_point() else torch.float32
    r0, r1, c0, c1 = crop_bounds(h, w, protocol.crop)
    gt_c = gt[:, 0, r0:r1, c0:c1]
    valid = gt_rule(gt_c, protocol)
    if mask is not None:
        valid = valid & broadcast_mask(mask.to(gt.device), (bsz, 1, h, w))[:, 0, r0:r1, c0:c1]
    b, r, c = torch.nonzero(valid, as_tuple=True)
    n = torch.bincount(b, minlength=bsz)
    gv = gt_c[b, r, c]
    dv = sample_resized(disp, (h, w), b, r + r0, c + c0).to(dtype)
    return metrics_from_values(1.0 / dv, gv, n, protocol)
