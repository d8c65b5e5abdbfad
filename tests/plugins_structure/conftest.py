"""Shared fixtures of the structure plugin tests: tiny models and batches."""
import pytest
import torch

from harness.models.student import MonoStudent
from stereodistill_plugins.structure.modules import SemanticTeacher
from stereodistill_plugins.structure.strategy import StructureStrategy

H, W = 64, 96


def make_K(b: int, h: int = H, w: int = W) -> torch.Tensor:
    K = torch.tensor([[0.6 * w, 0.0, (w - 1) / 2], [0.0, 0.6 * w, (h - 1) / 2], [0.0, 0.0, 1.0]])
    return K.expand(b, 3, 3).clone()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    b = 4
    img = torch.rand(b, 3, H, W, generator=g)
    frames = {-1: torch.rand(b, 3, H, W, generator=g), 1: torch.rand(b, 3, H, W, generator=g)}
    return {"image": img, "frames": frames, "K": make_K(b)}


@pytest.fixture
def models():
    torch.manual_seed(0)
    student = MonoStudent(base_width=8)
    teacher = SemanticTeacher(base_width=8, feat_channels=16).eval().requires_grad_(False)
    return student, teacher


def build(student, teacher, **kw) -> StructureStrategy:
    kw.setdefault("graph_dim", 16)
    kw.setdefault("perturb_seed", 0)
    kw.setdefault("pose_width", 8)
    kw.setdefault("aug_warmup", 0.0)
    st = StructureStrategy(**kw)
    st.build(student, teacher)
    return st
