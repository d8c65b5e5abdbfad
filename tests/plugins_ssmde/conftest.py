"""Shared fixtures of the ssmde plugin tests: tiny scenes with exactly known geometry."""
from __future__ import annotations

import pytest
import torch


def plane_shift_scene(h=8, w=12, depth=10.0, fx=50.0, seed=0, dtype=torch.float64):
    """A fronto-parallel plane at ``depth`` seen by a camera that moves sideways so that every
    pixel shifts by exactly one column: ``T_t2s`` translates by ``-depth / fx`` along x, so the
    target pixel ``u`` projects to source column ``u - 1``. ``source(u) = target(u + 1)``,
    hence the warped source equals the target wherever the projection lands in the image."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.rand(1, 3, h, w + 1, generator=g, dtype=dtype)
    target = wide[..., :w].contiguous()
    source = wide[..., 1:].contiguous()
    K = torch.tensor([[fx, 0.0, (w - 1) / 2], [0.0, fx, (h - 1) / 2], [0.0, 0.0, 1.0]], dtype=dtype)[None]
    T = torch.eye(4, dtype=dtype)[None].clone()
    T[0, 0, 3] = -depth / fx
    D = torch.full((1, 1, h, w), depth, dtype=dtype)
    return target, source, D, T, K


@pytest.fixture
def plane_scene():
    return plane_shift_scene()
