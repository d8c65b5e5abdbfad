"""KITTI-sized GT export and evaluation vs straightforward references (images/s, speedup).

Data: 1242 x 375 frames with the real 2011_09_26 calibration and HDL-64-like scans (64 rings x
1800 azimuths = 115,200 points, ~20k of them in the image), written in the real formats.

* GT export: :meth:`KittiDataset.eval_gt` (read ``.bin``, Eigen export, vectorised) vs
  ``reference.eigen_gt_per_point`` (the same steps one point at a time in Python).
* Evaluation: :func:`harness.eval.predictions.score` (what ``harness eval`` runs, sparse
  bilinear sampling at the GT points, NumPy segment reductions) on 640 x 192 disparities vs
  ``reference.metrics_per_pixel`` (every pixel visited in Python) — and, for the record, vs the
  Monodepth2-style per-image NumPy loop ``reference.metrics_numpy_per_image``.

Runs once as a smoke test under ``--benchmark-disable`` (the default addopts);
``pytest tests/benchmarks/test_kitti_benchmark.py --benchmark-enable`` measures. Every test
records ``images_per_s``, the reference's ``reference_images_per_s`` and ``speedup`` in
``benchmark.extra_info`` (``--benchmark-json`` keeps them) and prints them.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from harness.data import formats
from harness.data.kitti import KittiDataset
from harness.eval.predictions import Predictions, score
from harness.eval.metrics import METRIC_NAMES
from harness.eval.protocol import Protocol
from tests.data_real import reference

W, H = 1242, 375
N_EXPORT = 4
N_EVAL = 16
DATE = "2011_09_26"
DRIVE = f"{DATE}_drive_0002_sync"
P2 = np.array([721.5377, 0, 609.5593, 44.85728, 0, 721.5377, 172.854, 0.2163791, 0, 0, 1, 0.002745884])
P3 = np.array([721.5377, 0, 609.5593, -339.5242, 0, 721.5377, 172.854, 2.199936, 0, 0, 1, 2.729905e-03])
R_RECT = np.array([0.9999239, 0.00983776, -0.007445048, -0.009869795, 0.9999421, -0.004278459,
                   0.007402527, 0.004351614, 0.9999631])
VELO_R = np.array([0.007533745, -0.9999714, -0.000616602, 0.01480249, 0.0007280733, -0.9998902,
                   0.9998621, 0.00752379, 0.01480755])
VELO_T = np.array([-0.004069766, -0.07631618, -0.2717806])


def hdl64_scan(rng: np.random.Generator) -> np.ndarray:
    """64 rings (+2 .. -24.8 deg) x 1800 azimuths: ground at -1.73 m, walls 8-40 m to the sides."""
    elev = np.deg2rad(np.linspace(2.0, -24.8, 64))[:, None]
    az = np.deg2rad(np.arange(1800) * 0.2 - 180.0)[None, :] + rng.normal(0, 1e-4, (64, 1800))
    dx, dy, dz = np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev) * np.ones_like(az)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dz < 0, -1.73 / dz, np.inf)
        wall = rng.uniform(8, 40, (1, 1800))
        t_wall = np.where(np.abs(dy) > 1e-3, wall / np.abs(dy), np.inf)
    t = np.minimum(np.minimum(t_ground, t_wall), 120.0) * (1 + rng.normal(0, 0.002, (64, 1800)))
    pts = np.stack([dx * t, dy * t, dz * t, rng.random((64, 1800))], axis=-1).reshape(-1, 4)
    return pts.astype(np.float32)


@pytest.fixture(scope="module")
def kitti_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_bench")
    cam = {"calib_time": "09-Jan-2012 13:57:47", "S_rect_02": [W, H], "R_rect_00": R_RECT, "P_rect_02": P2,
           "P_rect_03": P3}
    formats.write_calib(root / DATE / "calib_cam_to_cam.txt", cam)
    formats.write_calib(root / DATE / "calib_velo_to_cam.txt", {"calib_time": "15-Mar-2012 11:37:16",
                                                              "R": VELO_R, "T": VELO_T})
    rng = np.random.default_rng(0)
    for t in range(max(N_EXPORT, N_EVAL)):
        formats.write_velodyne(root / DATE / DRIVE / "velodyne_points" / "data" / f"{t:010d}.bin", hdl64_scan(rng))
    split = root / "bench_files.txt"
    split.write_text("".join(f"{DATE}/{DRIVE} {t:010d} l\n" for t in range(max(N_EXPORT, N_EVAL))))
    ds = KittiDataset(root, str(split))
    gts = [ds.eval_gt(i) for i in range(N_EVAL)]
    return root, split, gts


def _seconds(benchmark, fn) -> float:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.rounds:
        return stats.stats.mean
    t0 = time.perf_counter()  # --benchmark-disable: the benchmark ran once untimed; time one more call
    fn()
    return time.perf_counter() - t0


def _record(benchmark, label, images, seconds, ref_seconds_per_image, extra=None):
    ips = images / seconds
    ref_ips = 1.0 / ref_seconds_per_image
    benchmark.extra_info.update({"images": images, "seconds": seconds, "images_per_s": ips,
                                 "reference_images_per_s": ref_ips, "speedup": ips / ref_ips,
                                 "torch_threads": torch.get_num_threads(), **(extra or {})})
    print(f"\n{label}: {ips:.1f} images/s vs reference {ref_ips:.2f} images/s -> {ips / ref_ips:.0f}x"
          + "".join(f", {k} {v:.3g}" for k, v in (extra or {}).items()))


def test_gt_export_speed(benchmark, kitti_bench):
    root, split, gts = kitti_bench
    ds = KittiDataset(root, str(split))
    frames = range(N_EXPORT)

    def export():
        return [ds.eval_gt(i) for i in frames]

    result = benchmark(export)
    seconds = _seconds(benchmark, export)
    # the reference on one frame (file reading included, like the vectorised path)
    t0 = time.perf_counter()
    pts = formats.read_velodyne(root / DATE / DRIVE / "velodyne_points" / "data" / "0000000000.bin")
    ref = reference.eigen_gt_per_point(pts, ds.calib(ds.samples[0].folder).velo_to_image(2), H, W)
    ref_seconds = time.perf_counter() - t0
    np.testing.assert_array_equal(result[0] > 0, ref > 0)
    np.testing.assert_allclose(result[0], ref.astype(np.float32), rtol=1e-6)
    _record(benchmark, "GT export (1242x375, 115k points)", N_EXPORT, seconds, ref_seconds,
            {"points_per_scan": float(len(pts)), "gt_pixels": float((ref > 0).sum())})
    assert 10_000 < (ref > 0).sum() < 40_000  # a realistic Velodyne density (~4 %)


def test_evaluation_speed(benchmark, kitti_bench):
    _, _, gts = kitti_bench
    rng = np.random.default_rng(1)
    # 640 x 192 disparities that roughly follow the GT (so the metrics are plausible)
    disp = np.empty((N_EVAL, 192, 640), np.float32)
    for i, g in enumerate(gts):
        fill = np.where(g > 0, g, 20.0).astype(np.float32)
        small = np.asarray(torch.nn.functional.interpolate(torch.from_numpy(1 / fill)[None, None], size=(192, 640),
                                                           mode="area")[0, 0])
        disp[i] = small * rng.uniform(0.8, 1.2, small.shape).astype(np.float32)
    preds = Predictions(path=None, key="disparity", values=disp)
    protocol = Protocol(name="bench", dataset="kitti", split="eigen", split_hash="bench", gt_source="velodyne",
                        crop="garg", scale="median", resolution=(192, 640))

    def run():
        return score(preds, gts.__getitem__, N_EVAL, protocol)

    summary, per_image = benchmark(run)
    seconds = _seconds(benchmark, run)
    t0 = time.perf_counter()
    ref = reference.metrics_per_pixel(disp[0], gts[0])
    ref_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(N_EVAL):
        md2 = reference.metrics_numpy_per_image(disp[i], gts[i])
    numpy_seconds = (time.perf_counter() - t0) / N_EVAL
    assert per_image["abs_rel"][0] == pytest.approx(ref["abs_rel"], rel=1e-4)
    assert per_image["abs_rel"][-1] == pytest.approx(md2["abs_rel"], rel=1e-3)  # cv2 float32 resize
    _record(benchmark, "evaluation (Garg crop, median scaling, 640x192 -> 1242x375)", N_EVAL, seconds, ref_seconds,
            {"numpy_per_image_images_per_s": 1 / numpy_seconds,
             "speedup_vs_numpy_per_image": N_EVAL / seconds * numpy_seconds})
    for key in METRIC_NAMES:
        assert math.isfinite(summary[key])
    assert summary["num_images"] == N_EVAL
