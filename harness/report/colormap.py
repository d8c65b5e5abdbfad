"""Depth pictures through matplotlib's ``magma`` colormap: the one colouring of the harness
(``harness predict``'s ``*_color.png``, ``harness visualize`` and the TensorBoard depth grids).

:func:`lookup` maps values in ``[0, 1]`` onto the 256 entries of ``magma`` exactly as
matplotlib does (``floor(t * 256)``, 1.0 -> the last entry); :func:`colorize` maps a depth map
(or an inverse-depth / disparity map) to ``uint8 HxWx3`` RGB, near = bright: depth is inverted
before lookup, inverse depth / disparity is used as is.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LUT", "colorize", "lookup"]


def _magma() -> np.ndarray:
    from matplotlib import colormaps

    return np.rint(colormaps["magma"](np.arange(256) / 255.0)[:, :3] * 255.0).astype(np.uint8)


#: ``256 x 3`` uint8 lookup table (matplotlib's magma), index 0 = far / small inverse depth (dark), 255 = near.
LUT = _magma()


def lookup(t: np.ndarray) -> np.ndarray:
    """``[0, 1]`` values (clipped) -> ``uint8 ... x 3`` magma colours, matplotlib's binning."""
    index = np.clip(np.floor(np.asarray(t, dtype=np.float64) * 256.0), 0, 255).astype(np.intp)
    return LUT[index]


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
    out[valid] = lookup((near[valid] - lo) / (hi - lo))
    return out
