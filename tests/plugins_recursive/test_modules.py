"""RSD building blocks: adaptive refinement, non-local block, flip fusion, augmentation, net shapes."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stereodistill_plugins.recursive.modules import (
    AdaptiveRefinement,
    ResASPPNet,
    disp_activation,
    edge_aware_flip_fusion,
    horizontal_edge_weight,
    nonlocal_affinity,
    nonlocal_residual,
    photometric_augment,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ------------------------------------------------------------------------------------------
# Adaptive refinement
# ------------------------------------------------------------------------------------------
def _set_golden_weights(r: AdaptiveRefinement, bias: float, w0: float, beta: float) -> None:
    with torch.no_grad():
        last = r.logits  # the conv producing z (followed by ELU in release mode)
        last.weight.zero_()
        last.bias.fill_(bias)
        r.out.weight.fill_(w0)
        r.out.bias.fill_(beta)


def test_refinement_golden_value_on_constant_disparity():
    # z = ELU(b) in all 18 channels -> kappa = 1/18; every unfolded tap = c; out conv: 18 channels x
    # 9 spatial taps of w0 -> 0.3 sigmoid(9 * 18 * w0 * c / 18 + beta) = 0.3 sigmoid(9 w0 c + beta)
    r = AdaptiveRefinement(feat_channels=3, width=8, mode="release")
    c, w0, beta = 0.12, 0.5, -0.2
    _set_golden_weights(r, bias=0.7, w0=w0, beta=beta)
    disp = torch.full((2, 2, 6, 10), c)
    feat = torch.rand(2, 3, 6, 10)
    out = r(disp, feat)
    want = 0.3 * sigmoid(9 * w0 * c + beta)
    assert out.shape == disp.shape
    assert torch.allclose(out, torch.full_like(out, want), atol=1e-7)
    kappa = r.kernels(disp, feat)
    assert torch.allclose(kappa, torch.full_like(kappa, 1 / 18))


def test_refinement_keeps_a_constant_disparity_constant_with_random_weights():
    torch.manual_seed(0)
    r = AdaptiveRefinement(feat_channels=4, width=8, mode="release")
    disp = torch.cat([torch.full((1, 1, 7, 9), 0.05), torch.full((1, 1, 7, 9), 0.2)], 1)
    feat = torch.full((1, 4, 7, 9), 0.3)  # a constant guide (the features of a constant scene)
    out = r(disp, feat)
    for ch in range(2):  # spatially constant per channel, borders included (replicate padding)
        assert torch.allclose(out[:, ch], out[:, ch, :1, :1].expand_as(out[:, ch]), atol=1e-7)
    # kernels are per-pixel distributions over the 18 taps
    k = r.kernels(disp, torch.rand(1, 4, 7, 9))
    assert torch.allclose(k.sum(1), torch.ones(1, 7, 9), atol=1e-6) and (k > 0).all()


def test_refinement_zero_padding_is_the_release_and_changes_the_border():
    torch.manual_seed(0)
    r = AdaptiveRefinement(feat_channels=1, width=8, padding="zeros", mode="release")
    _set_golden_weights(r, bias=0.7, w0=0.5, beta=-0.2)
    out = r(torch.full((1, 2, 5, 5), 0.1), torch.zeros(1, 1, 5, 5))
    interior, corner = out[0, 0, 2, 2].item(), out[0, 0, 0, 0].item()
    assert interior != pytest.approx(corner)
    with pytest.raises(ValueError):
        AdaptiveRefinement(1, padding="reflect")


def test_refinement_unfold_order_and_gradients():
    r = AdaptiveRefinement(feat_channels=2, width=8, mode="release")
    d = torch.arange(2 * 3 * 3, dtype=torch.float32).view(1, 2, 3, 3)
    patches = r.unfold(d)  # channel-major: channel c, tap (dy, dx) at c*9 + 3*dy + dx
    assert patches.shape == (1, 18, 3, 3)
    assert patches[0, :9, 1, 1].tolist() == d[0, 0].flatten().tolist()
    assert patches[0, 9:, 1, 1].tolist() == d[0, 1].flatten().tolist()
    assert patches[0, 0, 0, 0].item() == d[0, 0, 0, 0].item()  # replicated border
    disp = (0.1 * torch.rand(1, 2, 6, 6)).requires_grad_(True)
    feat = torch.rand(1, 2, 6, 6, requires_grad=True)
    r(disp, feat, disp_activation("tanh")).sum().backward()
    assert disp.grad.abs().sum() > 0 and feat.grad.abs().sum() > 0
    assert all(p.grad is not None for p in r.parameters())


def test_convex_refinement_output_follows_its_input_one_to_one():
    # the release module moved 0.0200 -> 0.01996 for constant inputs 0 .. 0.3; the convex update
    # returns every constant input exactly, for any (random) predictor weights
    torch.manual_seed(0)
    r = AdaptiveRefinement(feat_channels=4, width=8, residual=False)
    for m in r.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.3)
    feat = torch.rand(1, 4, 7, 9)
    outs = []
    for c in (0.0, 0.05, 0.1, 0.2, 0.3):
        out = r(torch.full((1, 2, 7, 9), c), feat)
        assert torch.allclose(out, torch.full_like(out, c), atol=1e-6)
        outs.append(out.mean().item())
    assert outs[-1] - outs[0] == pytest.approx(0.3, abs=1e-5)
    k = r.kernels(torch.full((1, 2, 7, 9), 0.1), feat)  # 9 taps per disparity channel sum to 1
    assert torch.allclose(k.view(1, 2, 9, 7, 9).sum(2), torch.ones(1, 2, 7, 9), atol=1e-6) and (k > 0).all()


def test_convex_refinement_starts_as_a_box_filter_and_residual_at_zero():
    r = AdaptiveRefinement(feat_channels=2, width=8)  # default: convex + residual, both zero-initialised
    d = torch.rand(1, 2, 6, 8)
    out = r(d, torch.rand(1, 2, 6, 8))
    box = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(d, (1, 1, 1, 1), mode="replicate"), 3, 1)
    assert torch.allclose(out, box, atol=1e-6)
    # the update is linear in d for fixed weights: a step of the input moves the output by it
    d2 = d + 0.05
    assert torch.allclose(r(d2, torch.rand(1, 2, 6, 8)) - out, torch.full_like(out, 0.05), atol=1e-6)
    disp = d.clone().requires_grad_(True)
    r(disp, torch.rand(1, 2, 6, 8)).sum().backward()
    assert disp.grad.abs().sum() > 0 and r.residual.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        AdaptiveRefinement(1, mode="bilateral")


# ------------------------------------------------------------------------------------------
# Non-local block
# ------------------------------------------------------------------------------------------
def test_nonlocal_affinity_and_residual_golden():
    # C = 2, H x W = 1 x 2: pixel features x0 = (1, 0), x1 = (1, 1)
    x = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]]])
    a = nonlocal_affinity(x)
    # X^T X = [[1, 1], [1, 2]] -> rows softmax
    e = math.e
    want = torch.tensor([[[0.5, 0.5], [1 / (1 + e), e / (1 + e)]]])
    assert torch.allclose(a, want, atol=1e-6)
    y = nonlocal_residual(x, a, weight=0.01)
    # pixel 0 adds 0.01 * (0.5 x0 + 0.5 x1) = 0.01 * (1, 0.5); pixel 1 adds 0.01 * (1, e/(1+e))
    want_y = x.clone()
    want_y[0, :, 0, 0] += 0.01 * torch.tensor([1.0, 0.5])
    want_y[0, :, 0, 1] += 0.01 * torch.tensor([1.0, e / (1 + e)])
    assert torch.allclose(y, want_y, atol=1e-7)


def test_nonlocal_affinity_flattens_channels_properly():
    x = torch.randn(2, 5, 3, 4)
    a = nonlocal_affinity(x)
    X = x.reshape(2, 5, 12)
    i = 7
    logits_row = torch.stack([X[1, :, i] @ X[1, :, k] for k in range(12)])
    assert torch.allclose(a[1, i], torch.softmax(logits_row, 0), atol=1e-6)
    assert torch.allclose(a.sum(-1), torch.ones(2, 12), atol=1e-6)


# ------------------------------------------------------------------------------------------
# resASPPNet
# ------------------------------------------------------------------------------------------
def test_resasppnet_shapes_ranges_and_affinities():
    net = ResASPPNet(3, base_width=8, nonlocal_residual=True)
    out = net(torch.rand(2, 3, 64, 96))
    assert {i: tuple(d.shape) for i, d in out["disp"].items()} == {
        0: (2, 2, 64, 96), 1: (2, 2, 32, 48), 2: (2, 2, 16, 24), 3: (2, 2, 8, 12)}
    assert all(((d > 0) & (d < 0.3)).all() for d in out["disp"].values())
    for name, f in out["features"].items():
        stride = int(name.split("_s")[1])
        assert f.shape[-2:] == (64 // stride, 96 // stride), name
    assert out["features"]["dec_s1"].shape[1] == 2
    assert out["affinity"][16].shape == (2, 24, 24) and out["affinity"][8].shape == (2, 96, 96)
    assert out["features"]["enc_s32"].shape[1] == net.enc_channels[32] == 5 * 4 * 8
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.rand(1, 3, 48, 96))


def test_aspp_uses_dilations_6_12_18_and_global_pool():
    net = ResASPPNet(3, base_width=4)
    dil = sorted(m.dilation[0] for m in net.aspp.branches if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert dil == [6, 12, 18]
    assert any(isinstance(m, nn.ELU) for m in net.modules())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in net.modules())


# ------------------------------------------------------------------------------------------
# Edge-aware flip fusion
# ------------------------------------------------------------------------------------------
def test_horizontal_edge_weight_golden_step():
    d = torch.tensor([0.0, 0, 0, 1, 1, 1, 1]).view(1, 1, 1, 7)
    w = horizontal_edge_weight(d, kernel=3)  # p = 1: g(x) = d[x-1] - d[x+1] -> [0,0,-1,-1,0,0,1]
    s = sigmoid(16.0)
    want = torch.tensor([0.5, 0.5, 1 - s, 1 - s, 0.5, 0.5, s]).view(1, 1, 1, 7)
    assert torch.allclose(w, want, atol=1e-6)


def test_flip_fusion_identity_borders_and_constant():
    torch.manual_seed(0)
    d = 0.1 + 0.1 * torch.rand(2, 1, 4, 40)
    assert torch.allclose(edge_aware_flip_fusion(d, d), d, atol=1e-7)
    c = torch.full((1, 1, 3, 40), 0.2)
    assert torch.allclose(edge_aware_flip_fusion(c, c * 1.0), c)
    a, b = torch.full((1, 1, 2, 200), 0.1), torch.full((1, 1, 2, 200), 0.3)
    fused = edge_aware_flip_fusion(a, b)
    assert fused[..., 0].allclose(b[..., 0]) and fused[..., -1].allclose(a[..., -1])  # border strips
    # constant inputs: no edges -> equal weights in the middle
    assert fused[..., 100].allclose(torch.tensor(0.2))
    assert ((fused >= 0.1 - 1e-7) & (fused <= 0.3 + 1e-7)).all()


def test_flip_fusion_prefers_the_reliable_side_of_an_edge():
    # direct prediction d (foreground on the right half, x >= 50); the mirrored-input prediction
    # differs by a constant. Right of a drop (g > 0) the direct one dominates; left of a rise,
    # the mirrored one.
    w = 100
    base = torch.zeros(1, 1, 1, w)
    base[..., 50:] = 0.2
    direct, other = base + 0.01, base + 0.03
    fused = edge_aware_flip_fusion(direct, other, kernel=11)
    # left of the rise at x = 50 (the direct map's g < 0 there) -> closer to the mirrored one
    assert (fused[..., 45] - other[..., 45]).abs() < (fused[..., 45] - direct[..., 45]).abs()


# ------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------
def test_photometric_augment_same_draw_for_both_views_and_clipped():
    g = torch.Generator().manual_seed(3)
    left = torch.rand(4, 3, 5, 6)
    out_l, out_r = photometric_augment(left, left.clone(), prob=1.0, generator=g)
    assert torch.equal(out_l, out_r)
    assert (out_l >= 0).all() and (out_l <= 1).all() and not torch.equal(out_l, left)
    same_l, _ = photometric_augment(left, left, prob=0.0)
    assert torch.equal(same_l, left)
    # golden: reproduce the draws in the documented order (on, gamma, brightness, colour)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    img = torch.full((1, 3, 2, 2), 0.25)
    out, _ = photometric_augment(img, img, prob=1.0, generator=g1)
    torch.rand(1, generator=g2)
    gamma = 0.8 + 0.4 * torch.rand(1, 1, 1, 1, generator=g2)
    bright = 0.5 + 1.5 * torch.rand(1, 1, 1, 1, generator=g2)
    col = 0.8 + 0.4 * torch.rand(1, 3, 1, 1, generator=g2)
    assert torch.allclose(out, ((0.25 ** gamma) * bright * col).clamp(0, 1))


def test_head_bias_golden_and_initial_disparity():
    from stereodistill_plugins.recursive.modules import head_bias

    assert head_bias(0.15) == pytest.approx(0.0)
    assert head_bias(0.02) == pytest.approx(math.log((0.02 / 0.3) / (1 - 0.02 / 0.3)))
    assert 0.3 * sigmoid(head_bias(0.02)) == pytest.approx(0.02)
    with pytest.raises(ValueError):
        head_bias(0.3)
    net = ResASPPNet(3, base_width=8, init_disp=0.02)
    assert all(torch.allclose(h.bias, torch.full_like(h.bias, head_bias(0.02))) for h in net.heads.values())
    r = AdaptiveRefinement(2, 8, init_disp=0.02, mode="release")
    assert torch.allclose(r.out.bias, torch.full_like(r.out.bias, head_bias(0.02)))
    # the centred tanh activation maps the initial bias to a zero increment
    act = disp_activation("tanh", centre=head_bias(0.02))
    assert act(torch.tensor(head_bias(0.02))).item() == pytest.approx(0.0)
