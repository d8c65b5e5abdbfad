"""Golden values of every RSD loss term on small fixed tensors.

Appearance and left-right consistency are checked against an independent, slow, loop-based
NumPy implementation written here (1-D bilinear sampling with border clamping, 3x3 SSIM with
reflection padding, 2x2 area pyramids); the other terms against values worked out by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.distill.geometry import warp_stereo
from stereodistill_plugins.recursive.losses import (
    appearance_loss,
    feature_loss,
    lr_loss,
    mono_self_terms,
    nonlocal_loss,
    output_loss,
    scale_pyramid,
    smoothness_loss,
    stereo_self_terms,
)


def rand(*shape, seed=0, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# An independent slow reference (NumPy, explicit loops)
# ------------------------------------------------------------------------------------------
def slow_sample_row(row: np.ndarray, x: float) -> float:
    """Linear interpolation of a 1-D row at column ``x``, clamped to the border."""
    w = row.shape[0]
    x = min(max(x, 0.0), w - 1.0)
    x0 = int(math.floor(x))
    x1 = min(x0 + 1, w - 1)
    a = x - x0
    return (1 - a) * row[x0] + a * row[x1]


def slow_warp(img: np.ndarray, disp_norm: np.ndarray, sign: float) -> np.ndarray:
    """``out(y, x) = img(y, x + sign * d(y, x) * W)`` for ``C x H x W`` / ``H x W`` arrays."""
    c, h, w = img.shape
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            src = x + sign * disp_norm[y, x] * w
            for k in range(c):
                out[k, y, x] = slow_sample_row(img[k, y], src)
    return out


def slow_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c, h, w = a.shape
    pa = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    pb = np.pad(b, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    out = np.zeros_like(a)
    c1, c2 = 0.01**2, 0.03**2
    for k in range(c):
        for y in range(h):
            for x in range(w):
                wa = pa[k, y:y + 3, x:x + 3]
                wb = pb[k, y:y + 3, x:x + 3]
                ma, mb = wa.mean(), wb.mean()
                va, vb = (wa * wa).mean() - ma * ma, (wb * wb).mean() - mb * mb
                cov = (wa * wb).mean() - ma * mb
                out[k, y, x] = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return out


def slow_pe(a: np.ndarray, b: np.ndarray, alpha=0.85) -> float:
    dssim = np.clip((1 - slow_ssim(a, b)) / 2, 0, 1)
    return float((alpha * dssim + (1 - alpha) * np.abs(a - b)).mean())


def slow_area(img: np.ndarray, f: int) -> np.ndarray:
    c, h, w = img.shape
    return img.reshape(c, h // f, f, w // f, f).mean(axis=(2, 4))


def slow_appearance(left, right, disps) -> float:
    """RSD L_ap for one image (B = 1): ``{scale: 2 x h x w}`` disparities."""
    total = 0.0
    for i, d in disps.items():
        li, ri = slow_area(left, 2**i), slow_area(right, 2**i)
        l_est = slow_warp(ri, d[0], -1.0)
        r_est = slow_warp(li, d[1], +1.0)
        total += slow_pe(l_est, li) + slow_pe(r_est, ri)
    return total


def slow_lr(disps) -> float:
    total = 0.0
    for d in disps.values():
        dl, dr = d[0], d[1]
        r_in_l = slow_warp(dr[None], dl, -1.0)[0]
        l_in_r = slow_warp(dl[None], dr, +1.0)[0]
        total += np.abs(dl - r_in_l).mean() + np.abs(dr - l_in_r).mean()
    return float(total)


# ------------------------------------------------------------------------------------------
# Pyramid
# ------------------------------------------------------------------------------------------
def test_scale_pyramid_is_area_downsampling():
    img = rand(1, 3, 8, 12)
    pyr = scale_pyramid(img, 3)
    assert [tuple(p.shape[-2:]) for p in pyr] == [(8, 12), (4, 6), (2, 3)]
    np.testing.assert_allclose(pyr[2][0].numpy(), slow_area(img[0].numpy(), 4), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Appearance / LR against the slow reference
# ------------------------------------------------------------------------------------------
def test_appearance_loss_matches_slow_reference_two_scales():
    left, right = rand(1, 3, 8, 12, seed=1), rand(1, 3, 8, 12, seed=2)
    disp = {0: rand(1, 2, 8, 12, seed=3, hi=0.3), 1: rand(1, 2, 4, 6, seed=4, hi=0.3)}
    got = appearance_loss(disp, scale_pyramid(left, 2), scale_pyramid(right, 2)).item()
    want = slow_appearance(left[0].numpy(), right[0].numpy(), {i: d[0].numpy() for i, d in disp.items()})
    assert got == pytest.approx(want, rel=1e-9)


def test_appearance_loss_is_zero_for_the_true_disparity():
    # right view = left view shifted by 2 px: I_r(x) = I_l(x + 2) -> d^l = d^r = 2 / W; interior only
    w = 16
    base = rand(1, 3, 4, w + 4, seed=5)
    left, right = base[..., :w], base[..., 2:w + 2]
    d = torch.full((1, 2, 4, w), 2.0 / w, dtype=torch.float64)
    l_est = warp_stereo(right, d[:, :1], "r2l", normalised=True)
    assert torch.allclose(l_est[..., 2:], left[..., 2:])  # x - 2 >= 0: an exact reconstruction
    loss = appearance_loss({0: d}, [left], [right]).item()
    wrong = appearance_loss({0: d * 3}, [left], [right]).item()
    assert loss < wrong


def test_lr_loss_golden_constant_and_slow_reference():
    a, b = 0.1, 0.04
    const = {0: torch.cat([torch.full((1, 1, 4, 6), a), torch.full((1, 1, 4, 6), b)], 1),
             1: torch.cat([torch.full((1, 1, 2, 3), a), torch.full((1, 1, 2, 3), b)], 1)}
    assert lr_loss(const).item() == pytest.approx(2 * (2 * abs(a - b)), rel=1e-6)  # 2|a-b| per scale
    disp = {0: rand(1, 2, 5, 9, seed=6, hi=0.3), 1: rand(1, 2, 3, 4, seed=7, hi=0.3)}
    assert lr_loss(disp).item() == pytest.approx(slow_lr({i: d[0].numpy() for i, d in disp.items()}), rel=1e-9)


# ------------------------------------------------------------------------------------------
# Smoothness (second order, edge-aware, 2^-i)
# ------------------------------------------------------------------------------------------
def test_smoothness_loss_golden_quadratic_profile():
    # d^l = c x^2 -> d_xx = 2c everywhere, d_yy = 0; d^r = 0. Image I = k x^2 -> I_xx = 2k.
    c0, c1, k = 0.01, 0.02, 0.05
    def quad(h, w, c):
        x = torch.arange(w, dtype=torch.float64)
        return (c * x * x).expand(1, 1, h, w).clone()
    disp = {0: torch.cat([quad(4, 8, c0), torch.zeros(1, 1, 4, 8, dtype=torch.float64)], 1),
            1: torch.cat([quad(2, 4, c1), torch.zeros(1, 1, 2, 4, dtype=torch.float64)], 1)}
    flat = [torch.ones(1, 3, 4, 8, dtype=torch.float64), torch.ones(1, 3, 2, 4, dtype=torch.float64)]
    assert smoothness_loss(disp, flat, flat).item() == pytest.approx(2 * c0 + 2 * c1 / 2, rel=1e-9)
    textured = [quad(4, 8, k).expand(1, 3, 4, 8), quad(2, 4, k).expand(1, 3, 2, 4)]
    want = (2 * c0 + 2 * c1 / 2) * math.exp(-2 * k)
    assert smoothness_loss(disp, textured, flat).item() == pytest.approx(want, rel=1e-9)


# ------------------------------------------------------------------------------------------
# Stereo-Net averaging over iterations
# ------------------------------------------------------------------------------------------
def test_stereo_terms_average_ap_lr_over_iterations_and_smooth_only_final():
    left, right = rand(1, 3, 8, 8, seed=8), rand(1, 3, 8, 8, seed=9)
    lp, rp = scale_pyramid(left, 2), scale_pyramid(right, 2)
    it0 = {0: rand(1, 2, 8, 8, seed=10, hi=0.3), 1: rand(1, 2, 4, 4, seed=11, hi=0.3)}
    it1 = {0: rand(1, 2, 8, 8, seed=12, hi=0.3), 1: rand(1, 2, 4, 4, seed=13, hi=0.3)}
    t = stereo_self_terms([it0, it1], it1, lp, rp)
    m0, m1 = mono_self_terms(it0, lp, rp), mono_self_terms(it1, lp, rp)
    assert t["ap"].item() == pytest.approx((m0["ap"] + m1["ap"]).item() / 2, rel=1e-12)
    assert t["lr"].item() == pytest.approx((m0["lr"] + m1["lr"]).item() / 2, rel=1e-12)
    assert t["sm"].item() == pytest.approx(m1["sm"].item(), rel=1e-12)
    # images instead of pyramids are accepted
    t2 = stereo_self_terms([it0, it1], it1, left, right)
    assert t2["ap"].item() == pytest.approx(t["ap"].item(), rel=1e-12)


# ------------------------------------------------------------------------------------------
# Distillation terms
# ------------------------------------------------------------------------------------------
def test_output_loss_golden_left_channel_only_and_teacher_detached():
    s = {0: torch.tensor([[[[0.1, 0.2]], [[5.0, 5.0]]]], requires_grad=True),
         1: torch.tensor([[[[0.3]], [[9.0]]]], requires_grad=True)}
    t = {0: torch.tensor([[[[0.2, 0.0]], [[0.0, 0.0]]]], requires_grad=True),
         1: torch.tensor([[[[0.0]], [[0.0]]]], requires_grad=True)}
    loss = output_loss(s, t)
    assert loss.item() == pytest.approx((0.1 + 0.2) / 2 + 0.3)  # right channels (5, 9) ignored
    loss.backward()
    assert t[0].grad is None and t[1].grad is None
    assert s[0].grad[0, 0].tolist() == [[-0.5, 0.5]] and s[0].grad[0, 1].abs().sum() == 0


@pytest.mark.parametrize("stop_grad", [True, False])
def test_feature_loss_golden_and_stop_gradient_flag(stop_grad):
    s = {"dec_s1": torch.ones(1, 2, 2, 2, requires_grad=True), "dec_s2": torch.zeros(1, 4, 1, 1, requires_grad=True)}
    t = {"dec_s1": torch.zeros(1, 2, 2, 2, requires_grad=True), "dec_s2": torch.full((1, 4, 1, 1), -2.0, requires_grad=True)}
    loss = feature_loss(s, t, ("dec_s1", "dec_s2"), stop_grad=stop_grad)
    assert loss.item() == pytest.approx(1.0 + 2.0)  # mean |1 - 0| + mean |0 + 2|
    loss.backward()
    assert s["dec_s1"].grad is not None
    assert (t["dec_s1"].grad is None) == stop_grad


@pytest.mark.parametrize("stop_grad", [True, False])
def test_nonlocal_loss_golden(stop_grad):
    a_s = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]], requires_grad=True)
    a_t = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], requires_grad=True)
    b_s = torch.full((1, 3, 3), 1 / 3, requires_grad=True)
    b_t = torch.eye(3).unsqueeze(0).requires_grad_(True)
    loss = nonlocal_loss({"affinity_s16": a_s, "affinity_s8": b_s}, {"affinity_s16": a_t, "affinity_s8": b_t},
                         ("affinity_s16", "affinity_s8"), stop_grad=stop_grad)
    want = (0.5 + 0.5) / 4 + (3 * (2 / 3) + 6 * (1 / 3)) / 9
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert a_s.grad is not None and (a_t.grad is None) == stop_grad
    with pytest.raises(ValueError, match="shapes differ"):
        nonlocal_loss({"x": a_s}, {"x": b_t}, ("x",))


def test_self_terms_gradients_reach_disparities():
    left, right = rand(2, 3, 8, 16, seed=14).float(), rand(2, 3, 8, 16, seed=15).float()
    disp = {i: (0.05 + 0.1 * rand(2, 2, 8 // 2**i, 16 // 2**i, seed=20 + i)).float().requires_grad_(True)
            for i in range(3)}
    terms = mono_self_terms(disp, scale_pyramid(left, 3), scale_pyramid(right, 3))
    for name, v in terms.items():
        for d in disp.values():
            d.grad = None
        v.backward()
        assert all(d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0
                   for d in disp.values()), name
