"""Perceptual colormap for depth pictures (numpy only, no plotting library).

:func:`colorize` maps a depth map (or an inverse-depth / disparity map) to ``uint8 HxWx3`` RGB
through a 256-entry magma-like lookup table: dark purple -> red -> orange -> pale yellow,
monotonically increasing in lightness, so a grey-scale print keeps the ordering. Near is
bright: depth is inverted before lookup, inverse depth / disparity is used as is.

The table is interpolated (in RGB) between a few anchor colours sampled along a magma-like
path; it is computed once at import.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LUT", "colorize"]

# (position, R, G, B) anchors of a dark-to-bright perceptual ramp (lightness increases monotonically).
_ANCHORS = np.array([
    (0.00, 0.001, 0.000, 0.014),
    (0.13, 0.078, 0.055, 0.210),
    (0.25, 0.232, 0.060, 0.438),
    (0.38, 0.390, 0.100, 0.502),
    (0.50, 0.550, 0.161, 0.506),
    (0.63, 0.716, 0.215, 0.475),
    (0.75, 0.868, 0.288, 0.409),
    (0.88, 0.983, 0.499, 0.380),
    (0.94, 0.995, 0.688, 0.470),
    (1.00, 0.987, 0.991, 0.750),
])

#: ``256 x 3`` uint8 lookup table, index 0 = far / small inverse depth (dark), 255 = near (bright).
LUT = np.stack(
    [np.interp(np.linspace(0.0, 1.0, 256), _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], axis=1
)
LUT = np.clip(np.rint(LUT * 255.0), 0, 255).astype(np.uint8)


def colorize(depth_or_inverse: np.ndarray, vmin: float | None = None, vmax: float | None = None,
             *, inverse: bool = False) -> np.ndarray:
    """``HxW`` map -> ``uint8 HxWx3`` RGB picture, near = bright.

    Args:
        depth_or_inverse: depth (default) or, with ``inverse=True``, inverse depth / disparity.
            Non-finite and non-positive values are invalid and drawn black.
        vmin, vmax: value range mapped onto the table, in the units of the input; values
            outside are clipped. Defaults: the 5th and 95th percentiles of the valid values for
            depth (robust to a few far outliers), 0 and the 95th percentile for inverse maps.
        inverse: the input is already inverse depth / disparity (larger = nearer).
    """
    values = np.asarray(depth_or_inverse, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"colorize expects an HxW map, got shape {values.shape}")
    valid = np.isfinite(values) & (values > 0)
    out = np.zeros(values.shape + (3,), dtype=np.uint8)
    if not valid.any():
        return out
    near = values if inverse else np.where(valid, 1.0 / np.where(valid, values, 1.0), 0.0)
    v = near[valid]
    # the range is given in the input's units; for depth, vmin (near) maps to bright
    if inverse:
        lo = 0.0 if vmin is None else float(vmin)
        hi = float(np.percentile(v, 95)) if vmax is None else float(vmax)
    else:
        lo = float(np.percentile(v, 5)) if vmax is None else 1.0 / float(vmax)
        hi = float(np.percentile(v, 95)) if vmin is None else 1.0 / float(vmin)
    if not hi > lo:
        hi = lo + 1e-12
    index = np.rint(np.clip((near - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.intp)
    out[valid] = LUT[index[valid]]
    return out
