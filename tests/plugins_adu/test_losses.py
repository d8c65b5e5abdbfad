"""Golden values of every ADU-Depth loss term on small fixed tensors (hand-worked numbers, plus
an independent loop implementation for the feature term) and their gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stereodistill_plugins.adu.strategy import (
    feat_term,
    gt_term,
    hard_region_weight,
    resp_term,
    teacher_residual,
    unc_term,
)

L2 = math.log(2.0)
EPS = 1e-5  # channel_layernorm's eps


def t(values, shape):
    return torch.tensor(values, dtype=torch.float64).reshape(shape)


# ------------------------------------------------------------------------------------------
# gt: SILog, 10 * sqrt(mean g^2 - 0.85 mean(g)^2), averaged over scales
# ------------------------------------------------------------------------------------------
def test_gt_silog_golden_single_scale():
    pred = t([1.0, 2.0, 4.0, 8.0], (1, 1, 2, 2))
    gt = t([1.0, 1.0, 2.0, 2.0], (1, 1, 2, 2))
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    # g = log2 * [0, 1, 1, 2]: mean g^2 = 1.5 L2^2, mean g = L2 -> var = 0.65 L2^2
    expected = 10.0 * math.sqrt(0.65) * L2
    assert gt_term([pred], gt, mask).item() == pytest.approx(expected, rel=1e-9)
    # masking the pixel with g = 2 log2: g = log2 * [0, 1, 1] -> 2/3 - 0.85 * 4/9
    mask[0, 0, 1, 1] = False
    expected_m = 10.0 * math.sqrt(2 / 3 - 0.85 * 4 / 9) * L2
    assert gt_term([pred], gt, mask).item() == pytest.approx(expected_m, rel=1e-9)


def test_gt_silog_golden_multi_scale_mean():
    pred = t([1.0, 2.0, 4.0, 8.0], (1, 1, 2, 2))
    coarse = t([2.0], (1, 1, 1, 1))  # bilinear upsampling of a constant is that constant
    gt = t([1.0, 1.0, 2.0, 2.0], (1, 1, 2, 2))
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    # coarse: g = log2 * [1, 1, 0, 0]: mean g^2 = 0.5 L2^2, mean g = 0.5 L2 -> 0.2875 L2^2
    expected = 0.5 * (10 * math.sqrt(0.65) * L2 + 10 * math.sqrt(0.2875) * L2)
    assert gt_term([pred, coarse], gt, mask).item() == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------------------
# unc: Laplacian NLL mean(r e^-s + s) with r = |log sg(D_S) - log D_T|
# ------------------------------------------------------------------------------------------
def test_teacher_residual_golden_and_detached():
    d_s = t([1.0, math.e, 2.0], (1, 1, 1, 3)).requires_grad_(True)
    d_t = t([1.0, 1.0, 4.0], (1, 1, 1, 3))
    r = teacher_residual(d_s, d_t)
    assert r.flatten().tolist() == pytest.approx([0.0, 1.0, L2])
    assert not r.requires_grad


def test_unc_golden_and_gradient():
    r = t([0.1, 0.5], (1, 1, 1, 2))
    s = t([math.log(0.1), 0.0], (1, 1, 1, 2)).requires_grad_(True)
    val = unc_term(r, s)
    # (0.1 * 10 + log 0.1 + 0.5 * 1 + 0) / 2
    assert val.item() == pytest.approx((1.0 + math.log(0.1) + 0.5) / 2, rel=1e-12)
    val.backward()
    # d/ds (r e^-s + s) / N = (1 - r e^-s) / 2 -> [0 (optimum s = log r), 0.25]
    assert s.grad.flatten().tolist() == pytest.approx([0.0, 0.25], abs=1e-12)


def test_unc_does_not_move_the_residual_source():
    d_s = t([2.0, 3.0], (1, 1, 1, 2)).requires_grad_(True)
    s = torch.zeros(1, 1, 1, 2, dtype=torch.float64, requires_grad=True)
    unc_term(teacher_residual(d_s, torch.ones_like(d_s)), s).backward()
    assert d_s.grad is None and s.grad is not None


# ------------------------------------------------------------------------------------------
# hard-region weight
# ------------------------------------------------------------------------------------------
def test_hard_region_weight_emphasise_golden_per_image_mean():
    b = t([1.0, 1.0, 1.0, 5.0, 2.0, 2.0, 2.0, 2.0], (2, 1, 2, 2))
    s = torch.log(b).requires_grad_(True)
    w = hard_region_weight(s, "emphasise", beta=1.0, c_max=5.0)
    # image 0: mean b = 2 -> b/mean = [.5, .5, .5, 2.5]; image 1: all 1
    assert w.flatten().tolist() == pytest.approx([1.5, 1.5, 1.5, 3.5, 2.0, 2.0, 2.0, 2.0])
    assert not w.requires_grad
    clipped = hard_region_weight(s, "emphasise", beta=2.0, c_max=2.0)
    assert clipped.flatten().tolist() == pytest.approx([2.0, 2.0, 2.0, 5.0, 3.0, 3.0, 3.0, 3.0])


def test_hard_region_weight_attenuate_golden():
    s = t([0.0, math.log(5.0)], (1, 1, 1, 2))
    assert hard_region_weight(s, "attenuate").flatten().tolist() == pytest.approx([1.0, 0.2])
    with pytest.raises(ValueError, match="uncertainty_mode"):
        hard_region_weight(s, "bogus")


# ------------------------------------------------------------------------------------------
# feat: sum_k mean_p w^k ||LN(a) - LN(t)||^2 / C
# ------------------------------------------------------------------------------------------
def _two_pixel_pair():
    # pixel 0: a = (1, 3) -> LN (-1, 1)/sqrt(1+eps); t = (2, 0) -> (1, -1)/sqrt(1+eps)
    #          ||diff||^2 / 2 = 8 / 2 / (1+eps) = 4 / (1+eps)
    # pixel 1: a = (0, 2) -> (-1, 1)/sqrt(1+eps); t = (5, 5) -> (0, 0)
    #          ||diff||^2 / 2 = 2 / 2 / (1+eps) = 1 / (1+eps)
    a = t([1.0, 0.0, 3.0, 2.0], (1, 2, 1, 2))
    tt = t([2.0, 5.0, 0.0, 5.0], (1, 2, 1, 2))
    return a, tt


def test_feat_golden_unweighted_and_weighted():
    a, tt = _two_pixel_pair()
    assert feat_term({"x": a}, {"x": tt}).item() == pytest.approx(2.5 / (1 + EPS), rel=1e-9)
    # full-resolution w (2 x 4) average-pooled to the 1 x 2 grid: [1, 3]
    w = t([1.0, 1.0, 2.0, 4.0, 1.0, 1.0, 4.0, 2.0], (1, 1, 2, 4))
    assert feat_term({"x": a}, {"x": tt}, w).item() == pytest.approx((4 + 3) / 2 / (1 + EPS), rel=1e-9)
    # two strides add up
    both = feat_term({"x": a, "y": a}, {"x": tt, "y": tt}, w)
    assert both.item() == pytest.approx(7 / (1 + EPS), rel=1e-9)


def test_feat_sample_mask_drops_samples():
    a, tt = _two_pixel_pair()
    a2, tt2 = torch.cat([a, a.flip(1)]), torch.cat([tt, tt])  # sample 1: pixel 0 matches
    keep = torch.tensor([True, False])
    assert feat_term({"x": a2}, {"x": tt2}, sample_mask=keep).item() == pytest.approx(2.5 / (1 + EPS))
    none = torch.tensor([False, False])
    assert feat_term({"x": a2}, {"x": tt2}, sample_mask=none).item() == 0.0


def _feat_slow(a: np.ndarray, tt: np.ndarray, w: np.ndarray) -> float:
    """Independent loop implementation: pixel by pixel, pooling w by explicit block means."""
    b, c, h, wd = a.shape
    kh, kw = w.shape[2] // h, w.shape[3] // wd
    total = 0.0
    for n in range(b):
        for y in range(h):
            for x in range(wd):
                va, vt = a[n, :, y, x], tt[n, :, y, x]
                la = (va - va.mean()) / math.sqrt(va.var() + EPS)
                lt = (vt - vt.mean()) / math.sqrt(vt.var() + EPS)
                wp = w[n, 0, y * kh:(y + 1) * kh, x * kw:(x + 1) * kw].mean()
                total += wp * float(((la - lt) ** 2).sum()) / c
    return total / (b * h * wd)


def test_feat_matches_slow_reference_on_random_tensors():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64)
    tt = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64)
    w = 1 + torch.rand(2, 1, 12, 16, generator=g, dtype=torch.float64)
    got = feat_term({"x": a}, {"x": tt}, w).item()
    assert got == pytest.approx(_feat_slow(a.numpy(), tt.numpy(), w.numpy()), rel=1e-10)


def test_feat_gradient_reaches_student_only():
    a, tt = _two_pixel_pair()
    a.requires_grad_(True)
    tt.requires_grad_(True)
    w = torch.ones(1, 1, 2, 4, dtype=torch.float64, requires_grad=True)
    feat_term({"x": a}, {"x": tt}, w).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert tt.grad is None and w.grad is None


# ------------------------------------------------------------------------------------------
# resp: sum w m e / sum w, focal or depth-range modulation
# ------------------------------------------------------------------------------------------
def test_resp_focal_golden():
    d_t = t([1.0, 1.0], (1, 1, 1, 2))
    d_s = t([1.0, math.exp(0.1)], (1, 1, 1, 2))
    m1 = (1 - math.exp(-1.0)) ** 2  # e = 0.1, tau = 0.1, gamma = 2
    assert resp_term(d_s, d_t).item() == pytest.approx(0.1 * m1 / 2, rel=1e-9)
    w = t([1.0, 3.0], (1, 1, 1, 2))
    assert resp_term(d_s, d_t, w).item() == pytest.approx(3 * 0.1 * m1 / 4, rel=1e-9)
    # gamma = 1, tau = 0.2: m = 1 - exp(-0.5)
    got = resp_term(d_s, d_t, None, "focal", tau=0.2, gamma=1.0).item()
    assert got == pytest.approx(0.1 * (1 - math.exp(-0.5)) / 2, rel=1e-9)


def test_resp_depth_range_golden():
    d_t = t([40.0, 80.0, 120.0], (1, 1, 1, 3))
    d_s = d_t * torch.exp(t([0.2, -0.1, 0.3], (1, 1, 1, 3)))
    # m = (D_T / 80) clipped to 1 -> [0.5, 1, 1]; e = [0.2, 0.1, 0.3]
    got = resp_term(d_s, d_t, None, "depth_range", d_max=80.0, kappa=1.0).item()
    assert got == pytest.approx((0.1 + 0.1 + 0.3) / 3, rel=1e-9)
    got2 = resp_term(d_s, d_t, None, "depth_range", d_max=80.0, kappa=2.0).item()
    assert got2 == pytest.approx((0.25 * 0.2 + 0.1 + 0.3) / 3, rel=1e-9)
    with pytest.raises(ValueError, match="focal_mode"):
        resp_term(d_s, d_t, None, "bogus")


def test_resp_gradient_modulation_is_stop_grad():
    d_t = t([1.0, 1.0], (1, 1, 1, 2)).requires_grad_(True)
    d_s = t([1.5, 0.5], (1, 1, 1, 2)).requires_grad_(True)
    w = t([1.0, 3.0], (1, 1, 1, 2))
    resp_term(d_s, d_t, w).backward()
    e = torch.log(torch.tensor([1.5, 2.0], dtype=torch.float64))
    m = (1 - torch.exp(-e / 0.1)) ** 2
    # d/dD_S (w m |log D_S - log D_T|) / sum w = w m sign / (D_S sum w), m held constant
    expected = torch.tensor([1.0, 3.0]) * m * torch.tensor([1.0, -1.0]) / (torch.tensor([1.5, 0.5]) * 4)
    assert d_s.grad.flatten().tolist() == pytest.approx(expected.tolist(), rel=1e-9)
    assert d_t.grad is None
