"""Golden values of every ``selective`` loss term on tiny fixed tensors.

``photo`` and ``smooth`` are checked against slow, loop-based NumPy implementations written here
from the formulas (docs/methods.md 0.3 / 2.4), ``proxy``, ``mask`` and ``ts`` against values worked out
by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stereodistill_plugins.selective.modules import binarise
from stereodistill_plugins.selective.strategy import (
    mask_loss,
    photo_loss,
    proxy_loss,
    smooth_loss,
    ts_feature_loss,
    ts_response_loss,
)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# slow reference implementations (explicit loops, NumPy float64)
# ------------------------------------------------------------------------------------------
def slow_sample_row(row: np.ndarray, u: float) -> float:
    """Linear interpolation along a row at column ``u`` with border clamping."""
    w = row.shape[0]
    u = min(max(u, 0.0), w - 1.0)
    x0 = int(math.floor(u))
    x1 = min(x0 + 1, w - 1)
    a = u - x0
    return (1 - a) * row[x0] + a * row[x1]


def slow_warp(right: np.ndarray, disp: np.ndarray, sign: float) -> np.ndarray:
    """out[c, y, x] = right[c, y, x - sign * disp[y, x]]."""
    c, h, w = right.shape
    out = np.zeros_like(right)
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                out[ch, y, x] = slow_sample_row(right[ch, y], x - sign * disp[y, x])
    return out


def _reflect(i: int, n: int) -> int:
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


def slow_pe(a: np.ndarray, b: np.ndarray, alpha=0.85) -> np.ndarray:
    """0.85 * clip((1 - SSIM3x3) / 2, 0, 1) + 0.15 * |a - b|, both averaged over channels."""
    c, h, w = a.shape
    c1, c2 = 0.01**2, 0.03**2
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            dssim = l1 = 0.0
            for ch in range(c):
                xs = [a[ch, _reflect(y + dy, h), _reflect(x + dx, w)] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                ys = [b[ch, _reflect(y + dy, h), _reflect(x + dx, w)] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                mx, my = sum(xs) / 9, sum(ys) / 9
                vx = sum(v * v for v in xs) / 9 - mx * mx
                vy = sum(v * v for v in ys) / 9 - my * my
                cxy = sum(p * q for p, q in zip(xs, ys)) / 9 - mx * my
                s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
                dssim += min(max((1 - s) / 2, 0.0), 1.0)
                l1 += abs(a[ch, y, x] - b[ch, y, x])
            out[y, x] = alpha * dssim / c + (1 - alpha) * l1 / c
    return out


# ------------------------------------------------------------------------------------------
# photo
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_photo_golden_against_slow_reference(sign):
    img, right = rand(1, 3, 4, 7, seed=1), rand(1, 3, 4, 7, seed=2)
    depths = [0.5 + 2 * rand(1, 1, 4, 7, seed=3), 0.5 + 2 * rand(1, 1, 4, 7, seed=4)]
    fb = torch.tensor(1.3, dtype=torch.float64).view(1, 1, 1, 1)
    got = photo_loss(img, right, depths, fb, torch.tensor(sign, dtype=torch.float64).view(1, 1, 1, 1))

    I, R = img[0].numpy(), right[0].numpy()
    ident = slow_pe(R, I)
    want = []
    for d in depths:
        disp = 1.3 / d[0, 0].numpy()
        err = slow_pe(slow_warp(R, disp, sign), I)
        want.append(np.minimum(err, ident).mean())
    assert got.item() == pytest.approx(float(np.mean(want)), rel=1e-9, abs=1e-12)


def test_photo_without_automask_and_with_region_weights():
    img, right = rand(1, 3, 4, 6, seed=5), rand(1, 3, 4, 6, seed=6)
    depth = [1.0 + rand(1, 1, 4, 6, seed=7)]
    fb = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    one = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    I, R = img[0].numpy(), right[0].numpy()
    err = slow_pe(slow_warp(R, 1.0 / depth[0][0, 0].numpy(), 1.0), I)
    got = photo_loss(img, right, depth, fb, one, automask=False)
    assert got.item() == pytest.approx(err.mean(), rel=1e-9)
    region = torch.zeros(1, 1, 4, 6, dtype=torch.float64)
    region[..., :2] = 1.0  # masked mean over the first two columns
    got = photo_loss(img, right, depth, fb, one, weights=[region], automask=False)
    assert got.item() == pytest.approx(err[:, :2].mean(), rel=1e-9)


# ------------------------------------------------------------------------------------------
# smooth
# ------------------------------------------------------------------------------------------
def slow_smooth(d: np.ndarray, img: np.ndarray) -> float:
    d = d / d.mean()
    h, w = d.shape
    sx = [abs(d[y, x] - d[y, x + 1]) * math.exp(-np.abs(img[:, y, x] - img[:, y, x + 1]).mean())
          for y in range(h) for x in range(w - 1)]
    sy = [abs(d[y, x] - d[y + 1, x]) * math.exp(-np.abs(img[:, y, x] - img[:, y + 1, x]).mean())
          for y in range(h - 1) for x in range(w)]
    return sum(sx) / len(sx) + sum(sy) / len(sy)


def test_smooth_golden_against_slow_reference():
    img = rand(1, 3, 4, 8, seed=8)
    disps = {0: rand(1, 1, 4, 8, seed=9) + 0.1, 1: rand(1, 1, 2, 4, seed=10) + 0.1}
    got = smooth_loss(disps, img)
    I = img[0].numpy()
    I1 = I.reshape(3, 2, 2, 4, 2).mean(axis=(2, 4))  # 2x2 block means (area downsampling)
    want = (slow_smooth(disps[0][0, 0].numpy(), I) + slow_smooth(disps[1][0, 0].numpy(), I1) / 2) / 2
    assert got.item() == pytest.approx(want, rel=1e-9)


# ------------------------------------------------------------------------------------------
# proxy
# ------------------------------------------------------------------------------------------
def test_proxy_golden_by_hand():
    d = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    d_p = torch.ones(1, 1, 2, 2)
    m = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    # (log 1 + log 3 + log 4) / 4 pixels (mean over ALL pixels, not the masked ones)
    want = (0.0 + math.log(3.0) + math.log(4.0)) / 4
    assert proxy_loss([d], d_p, [m]).item() == pytest.approx(want, rel=1e-6)
    # two scales: the mean of the per-scale values; an all-zero mask gives 0
    d2 = torch.full((1, 1, 2, 2), 2.0)
    want2 = math.log(2.0) * 3 / 4
    assert proxy_loss([d, d2], d_p, [m, m]).item() == pytest.approx((want + want2) / 2, rel=1e-6)
    assert proxy_loss([d], d_p, [torch.zeros_like(m)]).item() == 0.0


def test_proxy_abs_log_form_golden_by_hand():
    d = torch.tensor([[[[1.0, 2.0], [math.e, 4.0]]]])
    m = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    # (|ln 1| + |ln e| + |ln 4|) / 4 pixels
    want = (0.0 + 1.0 + math.log(4.0)) / 4
    assert proxy_loss([d], torch.ones(1, 1, 2, 2), [m], form="abs_log").item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="abs_log"):
        proxy_loss([d], torch.ones(1, 1, 2, 2), [m], form="l2")


def test_proxy_gradient_only_inside_mask():
    d = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    m = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    proxy_loss([d], torch.ones(1, 1, 2, 2), [m]).backward()
    # d/dD log(1 + |D - P|) = sign / (1 + |D - P|), / 4 pixels; masked pixel -> 0
    want = torch.tensor([[[[0.0, 0.0], [1 / 3 / 4, 1 / 4 / 4]]]])
    want[0, 0, 0, 0] = d.grad[0, 0, 0, 0]  # |x| at 0: sub-gradient, not checked
    torch.testing.assert_close(d.grad, want)
    assert d.grad[0, 0, 0, 1] == 0.0


# ------------------------------------------------------------------------------------------
# mask
# ------------------------------------------------------------------------------------------
def test_mask_golden_by_hand():
    # scale 0 (2x2) and scale 1 (1x1); channel 0 = ŷ_P, channel 1 = ŷ_S
    p0 = torch.tensor([[[[0.8, 0.3], [0.6, 0.1]], [[0.2, 0.9], [0.5, 0.4]]]])
    p1 = torch.tensor([[[[0.7]], [[0.25]]]])
    y_p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    y_s = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    ln = math.log
    s0 = -(ln(0.8) + ln(0.7) + ln(0.6) + ln(0.9)) / 4 - (ln(0.8) + ln(0.9) + ln(0.5) + ln(0.4)) / 4
    s1 = -ln(0.7) - ln(0.75)  # nearest downsample takes the top-left target: y_P = 1, y_S = 0
    got = mask_loss({0: p0, 1: p1}, y_p, y_s)
    assert got.item() == pytest.approx((s0 + s1) / 2, rel=1e-6)


def test_mask_gradient_reaches_probabilities():
    p = torch.full((1, 2, 2, 2), 0.5, requires_grad=True)
    mask_loss({0: p}, torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).backward()
    # d BCE / dp = -(y/p) + (1-y)/(1-p) -> -2 for y=1, +2 for y=0, / 4 pixels
    torch.testing.assert_close(p.grad[:, 0], torch.full((1, 2, 2), -0.5))
    torch.testing.assert_close(p.grad[:, 1], torch.full((1, 2, 2), 0.5))


def test_binarise_straight_through_and_stop_gradient():
    p = torch.tensor([0.2, 0.5, 0.7], requires_grad=True)
    hard = binarise(p, 0.5, straight_through=True)
    assert hard.tolist() == [0.0, 0.0, 1.0]
    (hard * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert p.grad.tolist() == [1.0, 2.0, 3.0]  # identity backward
    assert not binarise(p.detach(), 0.5).requires_grad


# ------------------------------------------------------------------------------------------
# ts
# ------------------------------------------------------------------------------------------
def test_ts_feature_golden_by_hand():
    # k = s4: C=2, 1x2 pixels; k = s8: C=1, 1x1 pixel
    a4 = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]])
    g4 = torch.tensor([[[[0.0, 2.0]], [[2.0, 1.0]]]])
    a8 = torch.tensor([[[[3.0]]]])
    g8 = torch.tensor([[[[1.0]]]])
    # s4: pixel 0: (1 + 4) / 2 = 2.5, pixel 1: 0 -> mean 1.25; s8: 4 / 1 = 4
    assert ts_feature_loss([a4, a8], [g4, g8]).item() == pytest.approx(5.25)


def test_ts_feature_gradient_stops_at_teacher():
    a = torch.ones(1, 2, 1, 1, requires_grad=True)
    g = torch.zeros(1, 2, 1, 1, requires_grad=True)
    ts_feature_loss([a], [g]).backward()
    torch.testing.assert_close(a.grad, torch.ones(1, 2, 1, 1))  # 2 (a - g) / C
    assert g.grad is None


def test_ts_response_golden_by_hand():
    d = torch.tensor([[[[1.0, math.e], [2.0, 4.0]]]])
    d_p = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])
    y_p = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    conf = torch.tensor([[[[1.0, 0.5], [1.0, 1.0]]]])
    # over the 3 pixels with y_P = 1: (0 + 0.5 * 1 + ln 2) / 3
    want = (0.5 + math.log(2.0)) / 3
    assert ts_response_loss(d, d_p, y_p, conf).item() == pytest.approx(want, rel=1e-6)
    assert ts_response_loss(d, d_p, y_p).item() == pytest.approx((1.0 + math.log(2.0)) / 3, rel=1e-6)
    assert ts_response_loss(d, d_p, torch.zeros_like(y_p)).item() == 0.0


def test_proxy_form_log1p_l1_and_its_deprecated_alias():
    d, proxy, m = torch.tensor([[[[3.0, 1.0]]]]), torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2)
    want = math.log(3.0) / 2  # log(1 + |3 - 1|) on one of two pixels
    assert proxy_loss([d], proxy, [m], form="log1p_l1").item() == pytest.approx(want, rel=1e-6)
    assert proxy_loss([d], proxy, [m], form="log_l1").item() == pytest.approx(want, rel=1e-6)
    from stereodistill_plugins.selective.strategy import SelectiveStrategy

    assert SelectiveStrategy(proxy_form="log_l1").proxy_form == "log1p_l1"
