"""Throughput of compute_metrics on a KITTI-sized batch (8 x 375 x 1242).

Runs once (as a smoke test) under ``--benchmark-disable`` (the default in pyproject's addopts);
``pytest tests/benchmarks --benchmark-enable`` measures it. ``images_per_s`` is recorded in
``benchmark.extra_info`` in both modes (from the benchmark statistics when enabled, otherwise from
one timed call).
"""
from __future__ import annotations

import math
import time

import pytest
import torch

from harness.eval.metrics import METRIC_NAMES, compute_metrics
from harness.eval.protocol import Protocol

B, H, W = 8, 375, 1242


def _protocol(scale: str, gt_source: str) -> Protocol:
    return Protocol(
        name=f"bench_{scale}_{gt_source}",
        dataset="kitti",
        split="eigen",
        split_hash="bench",
        gt_source=gt_source,
        crop="garg",
        scale=scale,
        resolution=(192, 640),
    )


def _batch(density: float):
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(B, 1, H, W, generator=gen) * 79.0 + 0.5
    # Velodyne-like sparsity (~5 % of pixels) or a dense map.
    keep = torch.rand(B, 1, H, W, generator=gen) < density
    gt = torch.where(keep, gt, torch.zeros(()))
    pred = gt * (1.0 + 0.2 * torch.randn(B, 1, H, W, generator=gen)).clamp_min(0.1) + 0.01
    return pred, gt


@pytest.mark.parametrize(
    "scale,gt_source,density",
    [("median", "velodyne", 0.05), ("stereo_factor", "dense_png16", 1.0)],
    ids=["median-sparse", "stereo-dense"],
)
def test_compute_metrics_throughput(benchmark, scale, gt_source, density):
    pred, gt = _batch(density)
    protocol = _protocol(scale, gt_source)

    result = benchmark(compute_metrics, pred, gt, protocol)

    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.rounds:
        seconds = stats.stats.mean
    else:  # --benchmark-disable: the benchmark ran once untimed; time one more call.
        t0 = time.perf_counter()
        compute_metrics(pred, gt, protocol)
        seconds = time.perf_counter() - t0
    benchmark.extra_info["batch"] = B
    benchmark.extra_info["image_hw"] = [H, W]
    benchmark.extra_info["gt_density"] = density
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["seconds_per_batch"] = seconds
    benchmark.extra_info["images_per_s"] = B / seconds

    assert set(METRIC_NAMES) <= set(result)
    for key in METRIC_NAMES:
        assert result[key].shape == (B,)
        assert all(math.isfinite(v) for v in result[key].tolist())
    assert (result["valid_px"] > 0).all()
