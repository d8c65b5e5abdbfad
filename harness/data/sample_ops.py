"""Per-sample operations shared by the stereo datasets (synthetic, KITTI, DrivingStereo):
intrinsics scaled to the loaded size (and mirrored), image array -> tensor, the flip draw."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["draw_flip", "image_to_tensor", "scaled_intrinsics"]


def scaled_intrinsics(K: np.ndarray, native: tuple[int, int], size: tuple[int, int], flip: bool) -> np.ndarray:
    """``K`` (3x3) of an image of ``native = (H, W)`` resized to ``size``, in float64.

    Pixel centres stay at integer coordinates (``c' = (c + 0.5) s - 0.5``); ``flip`` mirrors the
    principal point (``cx' = W - 1 - cx``) and the skew.
    """
    h, w = size
    sy, sx = h / native[0], w / native[1]
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 1] *= sx
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    if flip:
        K[0, 2] = w - 1 - K[0, 2]
        K[0, 1] = -K[0, 1]
    return K


def image_to_tensor(img: np.ndarray, flip: bool) -> torch.Tensor:
    """``H x W x 3`` uint8 -> ``3 x H x W`` float32 in [0, 1], mirrored when ``flip``.

    NumPy, not torch ops: intra-op threads in DataLoader workers only add overhead here.
    """
    if flip:
        img = img[:, ::-1]
    chw = np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32)
    chw /= np.float32(255.0)
    return torch.from_numpy(chw)


def draw_flip(flip_mode: str | None, flip_prob: float, seed: int, index: int, epoch: int) -> bool:
    """Whether sample ``index`` is flipped in ``epoch``: a draw from a generator seeded by
    ``(seed, index, epoch)``, so it depends on nothing else (worker count, order)."""
    if flip_mode is None or flip_prob <= 0.0:
        return False
    return bool(np.random.default_rng([seed, int(index), epoch]).random() < flip_prob)
