"""Data loading throughput at 192 x 640 (KITTI training size) against what the model consumes.

* ``test_loader_throughput[workers]``: images/s of the ``synth`` training split through a torch
  ``DataLoader`` (batch 8, mirror flips, the keys GT-supervised training reads: image, dense
  depth GT, its mask, meta) with 0, 1 and 2 worker processes; workers are persistent and one
  epoch warms them up before the timed epochs.
* ``test_model_consumption``: images/s of one training step of the synth benchmark student
  (ResNet-18, base width 16; forward + backward + AdamW) at the same size and batch.

``extra_info`` keeps ``images_per_s``; the model test also keeps ``loader_over_model`` for
each worker count measured in the same session (> 1: the loader keeps up with training).
Under ``--benchmark-disable`` each body runs once as a smoke test.
"""
from __future__ import annotations

import time

import pytest
import torch

from harness.data import synth
from harness.data.synth_dataset import SynthDataset
from harness.models.student import MonoStudent

H, W, BATCH, FRAMES, EPOCHS = 192, 640, 8, 16, 2
NEED = frozenset({"image", "depth_gt", "depth_gt_mask", "meta"})
_loader_rates: dict[int, float] = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_192x640")
    synth.generate(out, frames=FRAMES, seed=0, height=H, width=W, frames_per_drive=FRAMES,
                   split_fractions=(1.0, 0.0, 0.0))
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_loader_throughput(benchmark, root, workers):
    ds = SynthDataset(root, "train", height=H, width=W, flip_mode="mirror", need=NEED)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm-up epoch: starts the workers
        pass

    def epochs():
        n = 0
        for _ in range(EPOCHS):
            for batch in loader:
                n += batch["image"].shape[0]
        return n

    start = time.perf_counter()
    images = benchmark.pedantic(epochs, rounds=3 if benchmark.enabled else 1, iterations=1)
    seconds = benchmark.stats.stats.median if benchmark.enabled else time.perf_counter() - start
    rate = images / seconds
    _loader_rates[workers] = rate
    benchmark.extra_info.update(height=H, width=W, batch=BATCH, workers=workers, images=images,
                                images_per_s=rate, keys=sorted(NEED))
    assert images == EPOCHS * len(ds) == EPOCHS * (FRAMES - 2)  # the first and last frame lack a neighbour


@pytest.mark.slow  # training steps at 192 x 640 even as a smoke test
def test_model_consumption(benchmark):
    torch.manual_seed(0)
    student = MonoStudent(num_layers=18, base_width=16).train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    image = torch.rand(BATCH, 3, H, W)

    def step():
        opt.zero_grad()
        out = student(image)
        torch.stack([out.depth[s].mean() for s in (0, 1, 2, 3)]).sum().backward()
        opt.step()

    if benchmark.enabled:
        step()  # warm-up
    start = time.perf_counter()
    benchmark.pedantic(step, rounds=3 if benchmark.enabled else 1, iterations=1)
    seconds = benchmark.stats.stats.median if benchmark.enabled else time.perf_counter() - start
    rate = BATCH / seconds
    benchmark.extra_info.update(height=H, width=W, batch=BATCH, student="resnet18 width 16",
                                images_per_s=rate,
                                loader_over_model={str(w): r / rate for w, r in sorted(_loader_rates.items())})
    assert rate > 0
