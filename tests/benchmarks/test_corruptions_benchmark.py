"""Time to corrupt one 640 x 192 image (KITTI-C's size) per corruption, at severity 3.

Runs once as a smoke test under ``--benchmark-disable`` (the default addopts);
``OMP_NUM_THREADS=1 pytest tests/benchmarks/test_corruptions_benchmark.py --benchmark-enable``
measures. ``ms_per_image`` is recorded in ``benchmark.extra_info`` in both modes (from the
statistics when enabled, otherwise from one timed call). The image is a frame of the synthetic
set rendered at 640 x 192; every corruption runs once before timing (imports, numba compilation).
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from harness.data import corruptions as C
from harness.data import formats, synth

SEVERITY = 3


@pytest.fixture(scope="module")
def image_640(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_street")
    synth.generate(root, frames=2, seed=0, height=192, width=640, frames_per_drive=2)
    drive = root / "2000_01_01" / "2000_01_01_drive_0001_sync"
    img = formats.read_image(drive / "image_02" / "data" / "0000000001.png")
    for name in C.CORRUPTIONS:  # imports imagecorruptions and compiles its numba glass-blur kernel once
        C.corrupt(img, name, SEVERITY, seed=0, key="warm-up")
    return img


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_corrupt_640x192(benchmark, name, image_640):
    keys = iter(range(10**9))

    def one():  # a new frame key per call: every call draws its own random pattern
        return C.corrupt(image_640, name, SEVERITY, seed=0, key=str(next(keys)))

    out = benchmark(one)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.rounds:
        seconds = stats.stats.mean
    else:  # --benchmark-disable: time one more call
        t0 = time.perf_counter()
        one()
        seconds = time.perf_counter() - t0
    benchmark.extra_info.update(corruption=name, severity=SEVERITY, image_hw=[192, 640],
                                ms_per_image=1000 * seconds, opencv_threads=cv2.getNumThreads())
    assert out.shape == image_640.shape and out.dtype == np.uint8
