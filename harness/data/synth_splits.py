"""Which synthetic drives go to which split: cheap per-drive scene statistics, a redraw of
degenerate drives, and a split assignment balanced on those statistics.

Statistics of a drive come from a *probe*: its evaluation frames (:func:`eval_frames`) rendered
at a quarter of the resolution (same field of view; depth and labels only matter), which costs
about 1/6 of rendering one full-size frame per probe frame. The probe's near share (valid pixels
closer than :data:`NEAR_M`) tracks the full-size value with correlation 0.999.

* A drive whose mean probe near share exceeds :data:`MAX_DRIVE_NEAR` (the ego car passing close
  parked cars cut by the image border in most frames) is *degenerate* and drawn again with the
  next attempt seed, up to :data:`MAX_ATTEMPTS` times (the least near draw is kept).
* :func:`balanced_assignment` gives each split its drive count and then swaps drives between
  splits, best swap first, while the sum over splits and statistics of the squared standardised
  deviation of a split's mean from the mean over all drives decreases. Deterministic.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "BALANCE_STATS",
    "MAX_ATTEMPTS",
    "MAX_DRIVE_NEAR",
    "NEAR_M",
    "balanced_assignment",
    "eval_frames",
    "frame_stats",
]

#: "near" depth threshold (m) of the near-pixel share
NEAR_M = 5.0
#: a drive whose mean probe near share is above this is drawn again
MAX_DRIVE_NEAR = 0.10
MAX_ATTEMPTS = 8
#: the statistics balanced across splits: near share, then the class shares of the labels
#: sky, road (lane marks included), sidewalk, building, car, pole
BALANCE_STATS = ("near", "sky", "road", "sidewalk", "building", "car", "pole")
_CLASS_GROUPS = ((0,), (1, 2), (3,), (4,), (5,), (6,))


def eval_frames(n_frames: int, per_drive: int) -> list[int]:
    """The frames a val/test drive of ``n_frames`` lists: ``per_drive`` evenly spaced inner
    frames (every listed frame has both temporal neighbours), all inner frames when
    ``per_drive`` is 0 or at least their number; drives of fewer than 3 frames list all."""
    if n_frames < 3:
        return list(range(n_frames))
    inner = n_frames - 2
    if per_drive <= 0 or per_drive >= inner:
        return list(range(1, n_frames - 1))
    return [int(t) for t in np.unique(np.round(np.linspace(1, n_frames - 2, per_drive)).astype(int))]


def frame_stats(depth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``BALANCE_STATS`` of one frame: near share of the valid pixels, class shares of all."""
    valid = depth > 0
    near = float((valid & (depth < NEAR_M)).sum()) / max(int(valid.sum()), 1)
    counts = np.bincount(labels.ravel(), minlength=7)[:7] / labels.size
    return np.array([near] + [float(counts[list(g)].sum()) for g in _CLASS_GROUPS])


def balanced_assignment(stats: np.ndarray, counts: tuple[int, int, int], max_swaps: int = 1000) -> list[str]:
    """Split name per drive (``train``/``val``/``test``, ``counts`` of each) with the split
    means of ``stats`` (``N x S``, one row per drive) as close to the overall means as the
    swap search gets (module docstring). Starts from the contiguous order (train first)."""
    names = ("train", "val", "test")
    stats = np.asarray(stats, dtype=np.float64)
    n = stats.shape[0]
    if sum(counts) != n:
        raise ValueError(f"counts {counts} do not add up to {n} drives")
    label = np.repeat(np.arange(3), counts)
    spread = stats.std(axis=0)
    z = (stats - stats.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    sizes = np.asarray(counts, dtype=np.float64)
    for _ in range(max_swaps):
        sums = np.stack([z[label == s].sum(axis=0) for s in range(3)])
        best = (-1e-12, None)
        for a in range(3):
            for b in range(a + 1, 3):
                if not (counts[a] and counts[b]):
                    continue
                ia, ib = np.flatnonzero(label == a), np.flatnonzero(label == b)
                d = z[ib][None, :, :] - z[ia][:, None, :]  # a's drive out, b's drive in
                old = (sums[a] ** 2).sum() / sizes[a] ** 2 + (sums[b] ** 2).sum() / sizes[b] ** 2
                new = ((sums[a] + d) ** 2).sum(-1) / sizes[a] ** 2 + ((sums[b] - d) ** 2).sum(-1) / sizes[b] ** 2
                k = int(np.argmin(new))
                gain = float(new.ravel()[k] - old)
                if gain < best[0]:
                    best = (gain, (ia[k // len(ib)], ib[k % len(ib)]))
        if best[1] is None:
            break
        i, j = best[1]
        label[i], label[j] = label[j], label[i]
    return [names[s] for s in label]
