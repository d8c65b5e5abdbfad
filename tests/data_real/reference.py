"""Straightforward reference implementations (plain Python loops / per-image NumPy), used to check
the vectorised code and as the baseline of tests/benchmarks/test_kitti_benchmark.py."""
from __future__ import annotations

import math

import cv2
import numpy as np


def eigen_gt_per_point(points, M, height, width, vel_depth=True, duplicates="monodepth2") -> np.ndarray:
    """Monodepth2's ``generate_depth_map`` step by step, one point at a time, in plain Python floats."""
    M = np.asarray(M, dtype=np.float64).tolist()
    hits = []  # (row, col, value) in file order
    for x, y, z, _ in np.asarray(points, dtype=np.float64).tolist():
        if x < 0:
            continue
        u_, v_, w = (m[0] * x + m[1] * y + m[2] * z + m[3] for m in M)
        if w == 0:
            continue
        col, row = round(u_ / w) - 1, round(v_ / w) - 1  # Python's round is half-to-even too
        if 0 <= col < width and 0 <= row < height:
            hits.append((row, col, x if vel_depth else w))
    depth = [[0.0] * width for _ in range(height)]
    if duplicates == "monodepth2":
        for row, col, val in hits:
            depth[row][col] = val
        groups: dict[int, list[int]] = {}
        for k, (row, col, _) in enumerate(hits):
            groups.setdefault(row * (width - 1) + col - 1, []).append(k)
        for ks in groups.values():
            if len(ks) > 1:
                row, col, _ = hits[ks[0]]
                depth[row][col] = min(hits[k][2] for k in ks)
    else:
        best: dict[tuple[int, int], float] = {}
        for row, col, val in hits:
            best[(row, col)] = min(val, best.get((row, col), float("inf")))
        for (row, col), val in best.items():
            depth[row][col] = val
    out = np.array(depth)
    out[out < 0] = 0
    return out


def _crop(h, w, crop):
    fr = {"garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
          "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229)}
    if crop == "none":
        return 0, h, 0, w
    a, b, c, d = fr[crop]
    return int(a * h), int(b * h), int(c * w), int(d * w)


def _errors(g: list[float], p: list[float]) -> dict[str, float]:
    n = len(g)
    out = {"abs_rel": 0.0, "sq_rel": 0.0, "rmse": 0.0, "rmse_log": 0.0, "log10": 0.0, "a1": 0.0, "a2": 0.0, "a3": 0.0}
    sum_d = 0.0
    for gi, pi in zip(g, p):
        diff = gi - pi
        d = math.log(pi) - math.log(gi)
        ratio = max(gi / pi, pi / gi)
        out["abs_rel"] += abs(diff) / gi
        out["sq_rel"] += diff * diff / gi
        out["rmse"] += diff * diff
        out["rmse_log"] += d * d
        out["log10"] += abs(math.log10(gi) - math.log10(pi))
        out["a1"] += ratio < 1.25
        out["a2"] += ratio < 1.25 ** 2
        out["a3"] += ratio < 1.25 ** 3
        sum_d += d
    mean_d2 = out["rmse_log"] / n
    res = {k: v / n for k, v in out.items()}
    res["rmse"] = math.sqrt(res["rmse"])
    res["rmse_log"] = math.sqrt(res["rmse_log"])
    res["silog"] = 100 * math.sqrt(max(mean_d2 - (sum_d / n) ** 2, 0.0))
    return res


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def metrics_per_pixel(disp: np.ndarray, gt: np.ndarray, *, crop="garg", min_depth=1e-3, max_depth=80.0,
                      gt_mask="range", scale="median", stereo_factor=5.4) -> dict[str, float]:
    """One image, every pixel visited in Python: bilinear disparity at each valid GT pixel
    (half-pixel centres), median scaling, clamp, then the metric sums."""
    h, w = disp.shape
    H, W = gt.shape
    r0, r1, c0, c1 = _crop(H, W, crop)
    g, p = [], []
    sy, sx = h / H, w / W
    rows = gt.tolist()
    dl = disp.tolist()
    for r in range(H):
        for c in range(W):
            v = rows[r][c]
            ok = (min_depth < v < max_depth) if gt_mask == "range" else v > 0
            if not ok or not (r0 <= r < r1 and c0 <= c < c1):
                continue
            y = max((r + 0.5) * sy - 0.5, 0.0)
            x = max((c + 0.5) * sx - 0.5, 0.0)
            y0, x0 = min(int(y), h - 1), min(int(x), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ly, lx = y - y0, x - x0
            d = ((1 - ly) * ((1 - lx) * dl[y0][x0] + lx * dl[y0][x1])
                 + ly * ((1 - lx) * dl[y1][x0] + lx * dl[y1][x1]))
            g.append(v)
            p.append(1.0 / d)
    if scale == "median":
        s = _median(g) / _median(p)
    elif scale == "stereo_factor":
        s = stereo_factor
    else:
        s = 1.0
    p = [min(max(pi * s, min_depth), max_depth) for pi in p]
    out = _errors(g, p)
    out["scale"] = s
    return out


def metrics_numpy_per_image(disp: np.ndarray, gt: np.ndarray, *, crop="garg", min_depth=1e-3, max_depth=80.0,
                            scale="median") -> dict[str, float]:
    """The Monodepth2 evaluation loop body for one image (cv2 resize of the whole disparity,
    boolean masks, np.median), for comparison."""
    H, W = gt.shape
    pred_depth = 1.0 / cv2.resize(disp, (W, H), interpolation=cv2.INTER_LINEAR)
    mask = (gt > min_depth) & (gt < max_depth)
    r0, r1, c0, c1 = _crop(H, W, crop)
    crop_mask = np.zeros(mask.shape, bool)
    crop_mask[r0:r1, c0:c1] = True
    mask &= crop_mask
    p, g = pred_depth[mask], gt[mask]
    s = np.median(g) / np.median(p) if scale == "median" else 1.0
    p = np.clip(p * s, min_depth, max_depth)
    thresh = np.maximum(g / p, p / g)
    d = np.log(p) - np.log(g)
    return {
        "abs_rel": float(np.mean(np.abs(g - p) / g)), "sq_rel": float(np.mean((g - p) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((g - p) ** 2))), "rmse_log": float(np.sqrt(np.mean(d ** 2))),
        "a1": float((thresh < 1.25).mean()), "a2": float((thresh < 1.25 ** 2).mean()),
        "a3": float((thresh < 1.25 ** 3).mean()), "scale": float(s),
    }
