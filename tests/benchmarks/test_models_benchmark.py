"""Throughput of the harness's networks (pytest-benchmark).

Run with ``python -m pytest tests/benchmarks/test_models_benchmark.py --benchmark-enable``;
under the default ``--benchmark-disable`` every benchmark body runs once as a smoke test.
Each benchmark records ``images_per_s`` (from the median round) in ``benchmark.extra_info``.

* training step = forward + backward (no optimiser step) at 96 x 320, batch 8. The student's
  loss is the sum of its per-scale mean disparities (network cost only); the stereo teacher's
  is its self-supervised ``self_loss`` (photometric + smoothness), as when it is trained
  without ground truth.
* inference = ``MonoStudent.predict`` at 192 x 640, batch 1 (KITTI eval resolution).
"""
from __future__ import annotations

import time

import pytest
import torch

from harness.models.stereo_teacher import StereoTeacher
from harness.models.student import MonoStudent

TRAIN_B, TRAIN_H, TRAIN_W = 8, 96, 320
EVAL_H, EVAL_W = 192, 640
ROUNDS, WARMUP = 3, 1


def _run(benchmark, fn, images: int) -> None:
    """Benchmark ``fn`` and record images/s (timed once by hand when benchmarks are off)."""
    start = time.perf_counter()
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    if benchmark.stats:
        seconds = benchmark.stats.stats.median
        benchmark.extra_info["timing"] = f"median of {ROUNDS} rounds"
    else:
        seconds = time.perf_counter() - start
        benchmark.extra_info["timing"] = "single untimed-by-benchmark call"
    benchmark.extra_info["images"] = images
    benchmark.extra_info["seconds_per_call"] = seconds
    benchmark.extra_info["images_per_s"] = images / seconds
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()


def _stereo_batch(b: int, h: int, w: int) -> dict:
    g = torch.Generator().manual_seed(0)
    K = torch.eye(3).repeat(b, 1, 1)
    K[:, 0, 0] = 0.58 * w
    return {
        "image": torch.rand(b, 3, h, w, generator=g),
        "image_right": torch.rand(b, 3, h, w, generator=g),
        "K": K,
        "baseline": torch.full((b,), 0.54),
    }


@pytest.mark.parametrize("base_width", [16, 64])
def test_student_train_step(benchmark, base_width):
    torch.manual_seed(0)
    student = MonoStudent(num_layers=18, base_width=base_width).train()
    image = torch.rand(TRAIN_B, 3, TRAIN_H, TRAIN_W)

    def step():
        student.zero_grad(set_to_none=True)
        out = student(image)
        loss = sum(d.mean() for d in out.disp.values())
        loss.backward()

    benchmark.group = "student-train-96x320-b8"
    benchmark.extra_info["params"] = sum(p.numel() for p in student.parameters())
    _run(benchmark, step, TRAIN_B)


@pytest.mark.parametrize("cost", ["correlation", "concat"])
def test_teacher_train_step(benchmark, cost):
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=48, base_width=32, cost=cost).train()
    batch = _stereo_batch(TRAIN_B, TRAIN_H, TRAIN_W)

    def step():
        teacher.zero_grad(set_to_none=True)
        out = teacher(batch)
        loss = sum(teacher.self_loss(batch, out).values())
        loss.backward()

    benchmark.group = "teacher-train-96x320-b8"
    benchmark.extra_info["params"] = sum(p.numel() for p in teacher.parameters())
    _run(benchmark, step, TRAIN_B)


@pytest.mark.parametrize("base_width", [16, 64])
def test_student_inference(benchmark, base_width):
    torch.manual_seed(0)
    student = MonoStudent(num_layers=18, base_width=base_width).eval()
    image = torch.rand(1, 3, EVAL_H, EVAL_W)

    benchmark.group = "student-predict-192x640-b1"
    benchmark.extra_info["params"] = sum(p.numel() for p in student.parameters())
    _run(benchmark, lambda: student.predict(image), 1)
