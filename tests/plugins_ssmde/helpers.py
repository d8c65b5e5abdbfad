"""Tiny models and batches for the ssmde strategy tests."""
from __future__ import annotations

import torch

from harness.models.student import MonoStudent
from stereodistill_plugins.ssmde import SSMDEStrategy


def tiny_batch(b=2, h=64, w=64, seed=0, pseudo=True):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[40.0, 0.0, (w - 1) / 2], [0.0, 40.0, (h - 1) / 2], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    batch = {
        "image": torch.rand(b, 3, h, w, generator=g),
        "frames": {-1: torch.rand(b, 3, h, w, generator=g), 1: torch.rand(b, 3, h, w, generator=g)},
        "K": K,
        "meta": {"flipped": torch.zeros(b, dtype=torch.bool)},
    }
    if pseudo:
        v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        P = 5.0 + 0.1 * v + 3.0 * (u > w / 2) + 0.01 * torch.rand(b, 1, h, w, generator=g)
        P[:, :, :2, :4] = 0.0  # a few invalid pixels
        batch["pseudo_depth"] = P
    return batch


def make(seed=0, **kw):
    torch.manual_seed(seed)
    student = MonoStudent(num_layers=18, base_width=8)
    strategy = SSMDEStrategy(**kw)
    strategy.build(student, None)
    return student, strategy
