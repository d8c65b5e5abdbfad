"""Paired per-frame statistics of a method against its like-for-like control.

Every result stores per-frame test metrics (``per_frame.test``: frame ids ``<drive>/<frame>``
and one list per metric, aligned with the ids). A method and its control are paired frame by
frame, after pooling seeds (a frame's value is its mean over the seeds that scored it):

- ``delta``: mean over the common frames of (method - control), i.e. the difference of the
  two rows' means when both scored the same frames;
- ``ci``: a 95 % percentile bootstrap interval of ``delta``, resampling *drives* with
  replacement (frames of one drive are near-duplicates: the drive is the independent unit);
  seeded, so a table is reproducible;
- ``p``: the two-sided paired Wilcoxon signed-rank p over the per-drive means
  (``scipy.stats.wilcoxon``; exact for small samples; zero differences dropped);
- ``per_drive``: the per-drive mean difference, so an outlier drive shows at a glance.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95


def drive_of(frame_id: str) -> str:
    """``"2011_09_26/2011_09_26_drive_0040_sync/0000000012"`` -> the drive folder."""
    return frame_id.rsplit("/", 1)[0]


def frame_values(per_frame: Mapping[str, Any] | None, metric: str) -> dict[str, float] | None:
    """``{frame id: value}`` of one result's ``per_frame.test`` record (None without one, or
    without the metric); non-finite values are left out."""
    if not isinstance(per_frame, Mapping) or metric not in per_frame or "frames" not in per_frame:
        return None
    frames, values = per_frame["frames"], per_frame[metric]
    if not isinstance(frames, list) or not isinstance(values, list) or len(frames) != len(values):
        return None
    return {f: float(v) for f, v in zip(frames, values)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def pool_seeds(runs: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per frame, the mean over the runs (seeds) that scored it."""
    acc: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for frame, value in run.items():
            acc[frame].append(value)
    return {f: sum(v) / len(v) for f, v in acc.items()}


def per_drive_means(values: Mapping[str, float]) -> dict[str, float]:
    """Mean over each drive's frames."""
    acc: dict[str, list[float]] = defaultdict(list)
    for frame, value in values.items():
        acc[drive_of(frame)].append(value)
    return {d: sum(v) / len(v) for d, v in sorted(acc.items())}


def bootstrap_ci(sums: np.ndarray, counts: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``sum(sums[S]) / sum(counts[S])`` over drive resamples ``S`` (the
    frame-weighted mean of the resampled drives). With one frame per drive this is exactly
    ``scipy.stats.bootstrap(..., method="percentile")`` with the same generator."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), (n_boot, len(sums)))
    stats = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def wilcoxon_p(diffs: Iterable[float]) -> float | None:
    """Two-sided paired Wilcoxon signed-rank p of per-drive differences (None below 2 drives;
    1.0 when every difference is zero)."""
    from scipy.stats import wilcoxon

    d = np.asarray(list(diffs), dtype=float)
    if len(d) < 2:
        return None
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d).pvalue)


def paired_delta(method_runs: list[Mapping[str, float]], control_runs: list[Mapping[str, float]], *,
                 n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict[str, Any] | None:
    """Method vs control on their common frames (seeds pooled per side); None when they share
    no frame. See the module docstring for the fields."""
    method, control = pool_seeds(method_runs), pool_seeds(control_runs)
    common = sorted(set(method) & set(control))
    if not common:
        return None
    diff = {f: method[f] - control[f] for f in common}
    by_drive: dict[str, list[float]] = defaultdict(list)
    for frame, value in diff.items():
        by_drive[drive_of(frame)].append(value)
    drives = sorted(by_drive)
    sums = np.array([sum(by_drive[d]) for d in drives])
    counts = np.array([len(by_drive[d]) for d in drives], dtype=float)
    per_drive = {d: float(s / n) for d, s, n in zip(drives, sums, counts)}
    return {
        "delta": float(sums.sum() / counts.sum()),
        "ci": bootstrap_ci(sums, counts, n_boot=n_boot, seed=seed, level=level),
        "p": wilcoxon_p(per_drive.values()),
        "drives": len(drives),
        "frames": len(common),
        "per_drive": per_drive,
        "method_per_drive": per_drive_means({f: method[f] for f in common}),
        "control_per_drive": per_drive_means({f: control[f] for f in common}),
    }
