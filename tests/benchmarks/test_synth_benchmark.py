"""Throughput of the procedural generator and of SynthDataset loading (pytest-benchmark).

Run with ``pytest tests/benchmarks --benchmark-enable``; under the project's default
``--benchmark-disable`` each benchmark runs its function once (a smoke test). Frames per
second are reported in ``extra_info``; nothing here asserts on timings.
"""
from __future__ import annotations

import itertools

from harness.data import synth
from harness.data.synth_dataset import SynthDataset

FRAMES, H, W = 20, 96, 320


def test_generate_throughput(benchmark, tmp_path):
    counter = itertools.count()
    results = []

    def setup():
        out = tmp_path / f"run{next(counter)}"
        return (out,), {}

    def run(out):
        stats = synth.generate(out, frames=FRAMES, seed=0, height=H, width=W, frames_per_drive=FRAMES)
        results.append(stats)
        return stats

    stats = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert stats["frames"] == FRAMES and stats["counts"]["train"]["frames"] == FRAMES
    benchmark.extra_info.update(
        frames=FRAMES,
        height=H,
        width=W,
        frames_per_second=max(r["frames_per_second"] for r in results),
        note="one frame = left + right render + all files (2 RGB, 2 depth, 2 label PNGs, .bin)",
    )


def test_dataset_getitem_throughput(benchmark, tmp_path):
    synth.generate(tmp_path, frames=8, seed=0, height=H, width=W, frames_per_drive=8,
                   split_fractions=(1.0, 0.0, 0.0))
    ds = SynthDataset(tmp_path, "train", flip_mode="mirror")

    def load_all():
        return [ds[i] for i in range(len(ds))]

    samples = benchmark(load_all)
    assert len(samples) == len(ds) == 6
    benchmark.extra_info.update(samples=len(ds), height=H, width=W)
