"""``harness data stats``: per-split scene statistics of a data set, from its files.

For every split: samples (frames) and drives (split-line folders); the *near share* (valid GT
pixels closer than :data:`~harness.data.synth_splits.NEAR_M`, over all valid GT pixels of the
split), the 95th percentile of the per-frame near share, the number of *degenerate* frames (near
share above :data:`DEGENERATE_FRAME_NEAR`), the drive with the largest share of the split's near
pixels (an outlier drive shows here); class shares (of all pixels; datasets with a ``semantic``
key); GT depth quantiles (p5, p25, p50, p75, p95 of the valid GT depths, from a histogram with
1 cm bins). GT is each dataset's evaluation GT at native resolution (``eval_gt``).

:func:`balance_report` compares splits against :data:`TOLERANCE`: the synthetic benchmark's
splits must agree within it (checked by the generator's tests on the benchmark layout).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from harness.data.synth_splits import NEAR_M

__all__ = ["DEGENERATE_FRAME_NEAR", "TOLERANCE", "balance_report", "format_stats", "split_stats"]

#: a frame with more than this share of valid pixels nearer than NEAR_M counts as degenerate
DEGENERATE_FRAME_NEAR = 0.15
#: largest allowed difference of a split's value from the mean over the splits: near share
#: relative (x the mean), class shares absolute (share points)
TOLERANCE = {"near_share_rel": 0.10, "class_share_abs": 0.01}
QUANTILES = (5, 25, 50, 75, 95)
_BIN = 0.01
_NBINS = 25600  # 0 .. 256 m (the 16-bit PNG range)


def split_stats(dataset, labels: dict[int, str] | None = None, progress=None) -> dict:
    """Statistics of one split (module docstring). ``labels`` (id -> name) turns on the class
    shares; the dataset must then provide ``semantic`` (read at its output size)."""
    n = len(dataset)
    hist = np.zeros(_NBINS + 1, dtype=np.int64)
    near_px = np.zeros(n, dtype=np.int64)
    valid_px = np.zeros(n, dtype=np.int64)
    class_px = np.zeros(max(labels) + 1 if labels else 0, dtype=np.int64)
    total_px = 0
    folders = []
    for i in range(n):
        gt = dataset.eval_gt(i)
        valid = gt > 0
        d = gt[valid]
        valid_px[i] = d.size
        near_px[i] = int((d < NEAR_M).sum())
        hist += np.bincount(np.minimum((d / _BIN).astype(np.int64), _NBINS), minlength=_NBINS + 1)
        folders.append(dataset.frame_at(i).folder)
        if labels:
            lab = dataset[i]["semantic"].numpy()
            class_px += np.bincount(lab.ravel(), minlength=len(class_px))[: len(class_px)]
            total_px += lab.size
        if progress is not None:
            progress(i + 1, n)
    frame_near = near_px / np.maximum(valid_px, 1)
    out: dict = {
        "frames": n,
        "drives": len(set(folders)),
        "near_share": float(near_px.sum() / max(valid_px.sum(), 1)),
        "near_share_p95": float(np.percentile(frame_near, 95)) if n else 0.0,
        "degenerate_frames": int((frame_near > DEGENERATE_FRAME_NEAR).sum()),
    }
    by_drive: dict[str, int] = OrderedDict()
    for folder, k in zip(folders, near_px):
        by_drive[folder] = by_drive.get(folder, 0) + int(k)
    if by_drive and near_px.sum():
        top = max(by_drive, key=by_drive.get)
        out["top_drive"] = {"drive": top, "near_pixel_share": by_drive[top] / float(near_px.sum())}
    else:
        out["top_drive"] = None
    if labels:
        out["class_shares"] = {name: float(class_px[k] / max(total_px, 1)) for k, name in sorted(labels.items())}
    cdf = np.cumsum(hist)
    out["depth_quantiles"] = {
        f"p{q}": (float((np.searchsorted(cdf, q / 100.0 * cdf[-1]) + 0.5) * _BIN) if cdf[-1] else math.nan)
        for q in QUANTILES
    }
    return out


def balance_report(stats: dict[str, dict]) -> list[str]:
    """The statistics on which the splits differ by more than :data:`TOLERANCE` from their
    mean (one line each; empty when balanced)."""
    problems = []
    splits = [s for s in stats if stats[s]["frames"]]
    near = {s: stats[s]["near_share"] for s in splits}
    mean = float(np.mean(list(near.values()))) if near else 0.0
    for s, v in near.items():
        if abs(v - mean) > TOLERANCE["near_share_rel"] * mean:
            problems.append(f"{s}: near share {v:.4f} vs mean {mean:.4f} (tolerance "
                            f"{TOLERANCE['near_share_rel']:.0%} of the mean)")
    classes = sorted({c for s in splits for c in stats[s].get("class_shares", {})})
    for c in classes:
        vals = {s: stats[s]["class_shares"][c] for s in splits}
        m = float(np.mean(list(vals.values())))
        for s, v in vals.items():
            if abs(v - m) > TOLERANCE["class_share_abs"]:
                problems.append(f"{s}: {c} share {v:.4f} vs mean {m:.4f} (tolerance "
                                f"{TOLERANCE['class_share_abs']:.2f})")
    return problems


def format_stats(stats: dict[str, dict]) -> str:
    """A plain-text table, one column per split."""
    if not stats:
        return ""
    splits = list(stats)
    rows = [("frames", lambda s: str(s["frames"])), ("drives", lambda s: str(s["drives"])),
            (f"near share (< {NEAR_M:g} m)", lambda s: f"{s['near_share']:.4f}"),
            ("near share p95 per frame", lambda s: f"{s['near_share_p95']:.4f}"),
            (f"degenerate frames (> {DEGENERATE_FRAME_NEAR:.0%} near)", lambda s: str(s["degenerate_frames"])),
            ("top drive share of near pixels",
             lambda s: f"{s['top_drive']['near_pixel_share']:.3f}" if s.get("top_drive") else "-")]
    classes = list(next((s["class_shares"] for s in stats.values() if s.get("class_shares")), {}))
    rows += [(f"{c} share", lambda s, c=c: f"{s['class_shares'][c]:.4f}") for c in classes]
    rows += [(f"depth {q} (m)", lambda s, q=q: f"{s['depth_quantiles'][q]:.2f}") for q in
             next(iter(stats.values()))["depth_quantiles"]]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':{width}}  " + "  ".join(f"{s:>10}" for s in splits)]
    for name, fn in rows:
        lines.append(f"{name:{width}}  " + "  ".join(f"{fn(stats[s]) if stats[s]['frames'] else '-':>10}"
                                                      for s in splits))
    tops = [f"  {s}: {stats[s]['top_drive']['drive']}" for s in splits if stats[s].get("top_drive")]
    if tops:
        lines.append("top drive per split (largest share of the split's near pixels):")
        lines += tops
    return "\n".join(lines) + "\n"
