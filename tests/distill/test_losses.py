"""Golden-value tests for harness.distill.losses on tiny fixed tensors."""
from __future__ import annotations

import math

import pytest
import torch

from harness.distill.losses import (
    bce,
    channel_layernorm,
    depth_consistency,
    feature_distance,
    focal_modulation,
    kl_rows,
    laplacian_nll,
    log1p_l1,
    lr_consistency,
    masked_mean,
    min_reprojection,
    photometric_error,
    ranking_labels,
    ranking_loss,
    silog,
    smoothness,
    ssim,
)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# masked_mean
# ------------------------------------------------------------------------------------------
def test_masked_mean_golden_empty_and_nan_safe():
    x = torch.tensor([[1.0, 2.0], [3.0, float("nan")]])
    m = torch.tensor([[True, False], [True, False]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    w = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    assert masked_mean(x, w).item() == pytest.approx((1 + 6) / 4)
    z = torch.zeros(2, 2, requires_grad=True)
    out = masked_mean(z + 1.0, torch.zeros(2, 2, dtype=torch.bool))
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(z.grad).all()
    # mask broadcast over channels counts every channel
    x3 = torch.arange(6.0).view(1, 3, 1, 2)
    m1 = torch.tensor([[[[1.0, 0.0]]]])
    assert masked_mean(x3, m1).item() == pytest.approx((0 + 2 + 4) / 3)
    assert masked_mean(x3).item() == pytest.approx(2.5)


# ------------------------------------------------------------------------------------------
# Photometric terms
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", [3, 7])
def test_ssim_identical_is_one(window):
    x = rand(2, 3, 9, 11)
    s = ssim(x, x, window)
    assert s.shape == x.shape
    assert torch.allclose(s, torch.ones_like(s), atol=1e-5)


def test_ssim_golden_constant_images():
    a, b = 0.2, 0.7
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # variances are 0 -> the C2 factors cancel
    s64 = ssim(torch.full((1, 1, 5, 5), a, dtype=torch.float64), torch.full((1, 1, 5, 5), b, dtype=torch.float64))
    assert torch.allclose(s64, torch.full_like(s64, expected), atol=1e-9)
    # float32: E[x^2] - E[x]^2 rounding (~1e-8) against C2 = 9e-4 costs ~1e-4
    s = ssim(torch.full((1, 1, 5, 5), a), torch.full((1, 1, 5, 5), b))
    assert torch.allclose(s, torch.full_like(s, expected), atol=2e-4)


def test_photometric_error_golden_and_zero():
    x = rand(1, 3, 6, 7)
    assert torch.allclose(photometric_error(x, x), torch.zeros(1, 1, 6, 7), atol=1e-6)
    a, b = 0.2, 0.7
    pe = photometric_error(
        torch.full((1, 3, 4, 4), a, dtype=torch.float64), torch.full((1, 3, 4, 4), b, dtype=torch.float64)
    )
    s = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    expected = 0.85 * (1 - s) / 2 + 0.15 * abs(a - b)
    assert pe.shape == (1, 1, 4, 4)
    assert torch.allclose(pe, torch.full_like(pe, expected), atol=1e-9)


def test_min_reprojection_golden():
    e1 = torch.tensor([[[[0.5, 0.2, 0.9]]]])
    e2 = torch.tensor([[[[0.4, 0.6, 0.8]]]])
    i1 = torch.tensor([[[[0.3, 0.7, 0.95]]]])
    i2 = torch.tensor([[[[0.45, 0.1, 0.99]]]])
    loss, mask = min_reprojection([e1, e2], [i1, i2])
    assert torch.allclose(loss, torch.tensor([[[[0.3, 0.1, 0.8]]]]))
    assert torch.equal(mask, torch.tensor([[[[0.0, 0.0, 1.0]]]]))
    loss2, mask2 = min_reprojection([e1, e2])
    assert torch.allclose(loss2, torch.tensor([[[[0.4, 0.2, 0.8]]]]))
    assert torch.all(mask2 == 1)


def test_smoothness_golden():
    img = torch.zeros(1, 3, 2, 4)
    ramp = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).repeat(1, 1, 2, 1)
    assert smoothness(torch.full((1, 1, 2, 4), 3.0), img).item() == 0.0
    assert smoothness(ramp, img, order=1).item() == pytest.approx(1.0 / 2.5)  # d* = d / mean(d)
    assert smoothness(ramp, img, order=2).item() == pytest.approx(0.0, abs=1e-7)  # H=2: no dyy term
    quad = torch.tensor([0.0, 1.0, 4.0, 9.0]).view(1, 1, 1, 4).repeat(1, 1, 3, 1)
    assert smoothness(quad, torch.zeros(1, 3, 3, 4), order=2).item() == pytest.approx(2.0)
    # edge-aware: a unit image step in every channel scales the x term by exp(-1)
    step = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 1, 4).repeat(1, 3, 2, 1)
    assert smoothness(ramp, step, order=1).item() == pytest.approx(math.exp(-1) / 2.5, rel=1e-6)
    assert smoothness(ramp, img, order=1, normalise=False).item() == pytest.approx(1.0)


def test_lr_consistency():
    d = torch.full((1, 1, 4, 10), 2.0)
    assert lr_consistency(d, d).item() == pytest.approx(0.0, abs=1e-6)
    # constant but different left/right disparities: |2 - 3| twice
    assert lr_consistency(d, d + 1.0).item() == pytest.approx(2.0, abs=1e-6)
    dl = rand(1, 1, 4, 10) * 3
    dl.requires_grad_(True)
    lr_consistency(dl, torch.flip(dl, dims=[-1]).detach() * 0.5 / 10, normalised=True).backward()
    assert torch.isfinite(dl.grad).all()


def test_depth_consistency():
    a = torch.tensor([1.0, 2.0])
    assert torch.allclose(depth_consistency(a, a), torch.zeros(2))
    assert depth_consistency(torch.tensor([1.0]), torch.tensor([3.0])).item() == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------
# Depth supervision
# ------------------------------------------------------------------------------------------
def test_silog_golden_and_zero():
    gt = rand(2, 1, 4, 5) * 10 + 1
    pred = gt.clone().requires_grad_(True)
    loss = silog(pred, gt, gt > 0)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    # g = 1 everywhere -> 10 sqrt(1 - 0.85)
    assert silog(gt * math.e, gt).item() == pytest.approx(10 * math.sqrt(0.15), rel=1e-5)
    # mixed residuals, invalid pixels (gt = 0) ignored
    gt2 = torch.tensor([[[[1.0, 1.0, 0.0]]]])
    pred2 = torch.tensor([[[[math.e, 1.0, 5.0]]]])
    g = [1.0, 0.0]
    expected = 10 * math.sqrt(sum(x * x for x in g) / 2 - 0.85 * (sum(g) / 2) ** 2)
    assert silog(pred2, gt2, gt2 > 0).item() == pytest.approx(expected, rel=1e-5)


def test_log1p_l1_golden():
    pred = torch.tensor([[[[2.0, 1.0, 9.0]]]])
    target = torch.tensor([[[[0.5, 1.0, 0.0]]]])
    mask = torch.tensor([[[[True, True, False]]]])
    assert log1p_l1(pred, target, mask).item() == pytest.approx(math.log(2.5) / 2)
    assert log1p_l1(pred, pred).item() == 0.0
    assert log1p_l1(pred, target, reduction="none").shape == pred.shape


def test_laplacian_nll_golden():
    r = torch.tensor([2.0, math.e, -2.0])
    s = torch.tensor([0.0, 1.0, math.log(2.0)])
    per = laplacian_nll(r, s, reduction="none")
    assert torch.allclose(per, torch.tensor([2.0, 2.0, 1.0 + math.log(2.0)]))
    assert laplacian_nll(r, s).item() == pytest.approx((4.0 + 1.0 + math.log(2.0)) / 3)


def test_focal_modulation_golden():
    tau = 0.1
    err = torch.tensor([0.0, tau * math.log(2.0), 10.0], requires_grad=True)
    m = focal_modulation(err, tau, 2.0)
    assert torch.allclose(m, torch.tensor([0.0, 0.25, 1.0]), atol=1e-6)
    assert not m.requires_grad  # stop-gradient by default
    assert focal_modulation(err, tau, 2.0, detach=False).requires_grad


# ------------------------------------------------------------------------------------------
# Feature / relational distillation
# ------------------------------------------------------------------------------------------
def test_feature_distance_golden():
    a = torch.ones(2, 4, 3, 3)
    b = torch.zeros(2, 4, 3, 3)
    assert feature_distance(a, a).item() == 0.0
    assert feature_distance(a, b, p=2).item() == pytest.approx(1.0)
    assert feature_distance(2 * a, b, p=2).item() == pytest.approx(4.0)
    assert feature_distance(2 * a, b, p=1).item() == pytest.approx(2.0)
    x = rand(1, 8, 3, 3)
    # channel LayerNorm is invariant to per-pixel positive scale and shift
    assert feature_distance(x, 3.0 * x + 1.0, layernorm=True).item() == pytest.approx(0.0, abs=1e-6)
    ln = channel_layernorm(x)
    assert torch.allclose(ln.mean(1), torch.zeros(1, 3, 3), atol=1e-6)
    w = torch.zeros(2, 1, 3, 3)
    w[:, :, 0, 0] = 1.0
    c = b.clone()
    c[:, :, 0, 0] = 3.0
    assert feature_distance(c, b, mask=w).item() == pytest.approx(9.0)
    assert feature_distance(c, b, reduction="none").shape == (2, 1, 3, 3)


def test_kl_rows_golden_and_conventions():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    q = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    row1 = math.log(1.0 / 0.5)
    assert kl_rows(p, q).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert kl_rows(p, p).item() == pytest.approx(0.0, abs=1e-7)
    logits_p, logits_q = rand(2, 5, 5, seed=1), rand(2, 5, 5, seed=2)
    lp, lq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    a = kl_rows(lp, lq, log_p=True, log_q=True)
    b = kl_rows(lp.exp(), lq.exp())
    ref = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="sum") / 10  # 10 rows
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    assert a.item() == pytest.approx(ref.item(), rel=1e-5)


def test_ranking_loss_golden():
    a = torch.tensor([2.0, 1.0, 5.0])
    b = torch.tensor([1.0, 2.0, 5.0])
    labels = torch.tensor([1.0, 1.0, 0.0])  # third pair ignored
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2
    assert ranking_loss(a, b, labels).item() == pytest.approx(expected, rel=1e-6)
    assert ranking_loss(a, b, torch.zeros(3)).item() == 0.0
    assert torch.equal(
        ranking_labels(torch.tensor([2.0, 1.0, 1.1]), torch.tensor([1.0, 2.0, 1.0])),
        torch.tensor([1.0, -1.0, 0.0]),
    )


def test_bce_golden():
    p = torch.tensor([0.8, 0.3, 0.5])
    y = torch.tensor([1.0, 0.0, 1.0])
    m = torch.tensor([True, True, False])
    assert bce(p, y, m).item() == pytest.approx((-math.log(0.8) - math.log(0.7)) / 2, rel=1e-6)
    assert bce(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_rows_zero_target_entries_have_finite_gradients():
    p_log = torch.log(torch.tensor([[1.0, 0.0, 0.0]]))  # contains -inf
    q_logits = torch.zeros(1, 3, requires_grad=True)
    loss = kl_rows(p_log, q_logits.log_softmax(-1), log_p=True, log_q=True)
    assert loss.item() == pytest.approx(math.log(3.0), rel=1e-6)
    loss.backward()
    assert torch.isfinite(q_logits.grad).all()
