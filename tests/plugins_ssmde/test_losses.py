"""Golden-value and gradient tests of every SS-MDE loss piece (plugins/ssmde/losses.py)."""
from __future__ import annotations

import math

import pytest
import torch

from stereodistill_plugins.ssmde import losses as L
from harness.distill.geometry import depth_to_normals

from .conftest import plane_shift_scene


def t(*rows):
    """A ``1 x 1 x 1 x N`` map from a list of values."""
    return torch.tensor(rows, dtype=torch.float64).view(1, 1, 1, -1)


def pair(pe, color, identity, dd, inside):
    return L.PairTerms(t(*pe), t(*color), t(*identity), t(*dd), t(*inside))


# Hand-made per-pixel maps (3 pixels) of two forward and two backward warps.
F1 = pair([0.2, 0.4, 0.6], [0.1, 0.3, 0.2], [0.5, 0.5, 0.1], [0.1, 0.0, 0.5], [1, 1, 1])
F2 = pair([0.3, 0.1, 0.9], [0.2, 0.1, 0.4], [0.5, 0.5, 0.5], [0.2, 0.5, 0.0], [1, 1, 0])
B1 = pair([0.5, 0.5, 0.5], [0.15, 0.15, 0.15], [0.2, 0.0, 0.2], [0.0, 0.0, 0.0], [1, 1, 1])
B2 = pair([0.4, 0.4, 0.4], [0.12, 0.12, 0.12], [0.2, 0.2, 0.2], [0.5, 0.5, 0.5], [0, 1, 1])


# ------------------------------------------------------------------------------------------
# (a) photometric + geometry consistency
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode, automask, dyn, photo, geo",
    [
        # target view picks F1, F2, F1 (F2 is outside at pixel 2): pe*(1-dd) = .18, .05, (.3 auto-masked);
        # B1 valid at pixels 0, 2 (pe .5); B2 valid at 1, 2 (pe .4 * .5 = .2)
        ("sources", True, True, (0.18 + 0.05 + 0.5 + 0.5 + 0.2 + 0.2) / 6, (0.1 + 0.5 + 0 + 0 + 0.5 + 0.5) / 6),
        # SC-Depth's code: one choice over all four maps -> F1, F2, B2
        ("all", True, True, (0.18 + 0.05 + 0.2) / 3, (0.1 + 0.5 + 0.5) / 3),
        # no selection: every valid entry of every map
        ("none", True, True, (0.18 + 0.4 + 0.24 + 0.05 + 0.5 + 0.5 + 0.2 + 0.2) / 8,
         (0.1 + 0.0 + 0.2 + 0.5 + 0 + 0 + 0.5 + 0.5) / 8),
        # no auto-mask, no dynamic weighting: valid = inside, raw pe
        ("sources", False, False, (0.2 + 0.1 + 0.6 + 1.5 + 0.8) / 8, (0.1 + 0.5 + 0.5 + 0 + 1.0) / 8),
    ],
)
def test_photo_geo_loss_golden(mode, automask, dyn, photo, geo):
    p, g = L.photo_geo_loss([F1, F2], [B1, B2], min_over=mode, automask=automask, dynamic_weight=dyn)
    assert p.item() == pytest.approx(photo, abs=1e-12)
    assert g.item() == pytest.approx(geo, abs=1e-12)


def test_photo_geo_loss_rejects_unknown_mode():
    with pytest.raises(ValueError, match="min_over"):
        L.photo_geo_loss([F1], [B1], min_over="best")


def test_pair_terms_exact_warp_is_zero_error(plane_scene):
    target, source, D, T, K = plane_scene
    p = L.pair_terms(target, source, D, D, T, K, ssim_window=7)
    # column 0 projects to column -1 (outside), everything else inside
    assert p.inside[..., 0].eq(0).all() and p.inside[..., 1:].eq(1).all()
    # the warped source equals the target; SSIM windows (radius 3) that avoid column 0 are exact
    assert p.pe[..., 4:].abs().max().item() < 1e-9
    assert p.color[..., 1:].abs().max().item() < 1e-12
    assert torch.allclose(p.identity, (target - source).abs().mean(1, keepdim=True))
    # the plane does not move in depth: projected depth == interpolated source depth
    assert p.diff_depth.abs().max().item() < 1e-12
    # loss of the pair on its own: only pixel columns 1..3 (SSIM touches column 0) contribute
    photo, geo = L.photo_geo_loss([p], [], automask=False)
    expected = p.pe[..., 1:].mean().item()
    assert photo.item() == pytest.approx(expected, abs=1e-12) and abs(geo.item()) < 1e-12


def test_pair_terms_gradcheck_depth():
    target, source, D, T, K = plane_shift_scene(h=6, w=8, seed=3)
    depth = (D + torch.rand(D.shape, generator=torch.Generator().manual_seed(1), dtype=D.dtype)).requires_grad_()
    depth_s = D.clone() + 0.5

    def f(d):
        p = L.pair_terms(target, source, d, depth_s, T, K, ssim_window=3)
        return p.pe.sum() + p.diff_depth.sum()

    assert torch.autograd.gradcheck(f, (depth,), eps=1e-6, atol=1e-5)


def test_photo_loss_gradient_reaches_depth_and_pose():
    target, source, D, T, K = plane_shift_scene(h=16, w=20, seed=2, dtype=torch.float32)
    depth = (D * 1.3).requires_grad_()
    shift = torch.zeros(3, requires_grad=True)
    T2 = T.clone()
    T2[0, :3, 3] = T2[0, :3, 3] + shift
    fwd = [L.pair_terms(target, source, depth, D, T2, K)]
    photo, geo = L.photo_geo_loss(fwd, [], automask=False)
    (photo + geo).backward()
    assert torch.isfinite(depth.grad).all() and depth.grad.abs().sum() > 0
    assert torch.isfinite(shift.grad).all() and shift.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------
# (b) dynamic / static split
# ------------------------------------------------------------------------------------------
def test_dynamic_reliability_golden():
    # F1 valid at pixels 0, 1; F2 valid at 0, 1 (pixel 2: F1 auto-masked, F2 outside) -> dd := 0 there
    m = L.dynamic_reliability([F1, F2])
    expected = [1 - (0.1 + 0.2) / 2, 1 - (0.0 + 0.5) / 2, 1.0]
    assert m.flatten().tolist() == pytest.approx(expected)
    m_no = L.dynamic_reliability([F1, F2], automask=False)  # F1 counts at pixel 2 now
    assert m_no.flatten().tolist() == pytest.approx([0.85, 0.75, 1 - 0.5 / 2])


def test_lowest_fraction_per_image():
    m = torch.tensor([[0.9, 0.3, 0.5, 0.1], [0.2, 0.8, 0.7, 0.6]]).view(2, 1, 2, 2)
    low = L.lowest_fraction(m, 0.25)
    assert low.view(2, 4).tolist() == [[False, False, False, True], [True, False, False, False]]
    low = L.lowest_fraction(m, 0.5)
    assert low.view(2, 4).tolist() == [[False, True, False, True], [True, False, False, True]]
    assert not L.lowest_fraction(m, 0.0).any()
    # SS-MDE: 20 % of each image
    big = torch.rand(3, 1, 10, 10)
    assert L.lowest_fraction(big, 0.2).view(3, -1).sum(1).tolist() == [20, 20, 20]


# ------------------------------------------------------------------------------------------
# (c) pseudo supervision
# ------------------------------------------------------------------------------------------
def test_relative_depth_median():
    P = torch.tensor([[2.0, 4.0], [0.0, 6.0], [2.0, 4.0], [6.0, 8.0]]).view(2, 1, 2, 2)
    rel, valid = L.relative_depth(P)
    assert rel[0].flatten().tolist() == pytest.approx([0.5, 1.0, 0.0, 1.5])  # median 4
    assert rel[1].flatten().tolist() == pytest.approx([0.4, 0.8, 1.2, 1.6])  # median (4+6)/2
    assert valid[0].flatten().tolist() == [True, True, False, True]


def test_erode():
    m = torch.ones(1, 1, 4, 5, dtype=torch.bool)
    m[0, 0, 1, 2] = False
    e = L.erode(m)
    expect = torch.ones(4, 5, dtype=torch.bool)
    expect[0:3, 1:4] = False
    assert torch.equal(e[0, 0], expect)


def test_normal_matching_golden():
    n_pred = torch.zeros(1, 3, 2, 2)
    n_pred[:, 2] = -1.0
    n_ref = n_pred.clone()
    n_ref[0, :, 0, 0] = torch.tensor([0.0, 0.6, -0.8])
    assert L.normal_matching(n_pred, n_ref).item() == pytest.approx((0.6 + 0.2) / 3 / 4)
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = False
    assert L.normal_matching(n_pred, n_ref, mask).item() == 0.0


def test_normal_matching_gradcheck_through_normals():
    g = torch.Generator().manual_seed(0)
    depth = (2 + torch.rand(1, 1, 5, 6, generator=g, dtype=torch.float64)).requires_grad_()
    K_inv = torch.linalg.inv(torch.tensor([[4.0, 0, 2.5], [0, 4.0, 2.0], [0, 0, 1]], dtype=torch.float64))[None]
    n_ref = depth_to_normals(2 + torch.rand(1, 1, 5, 6, generator=g, dtype=torch.float64), K_inv)
    assert torch.autograd.gradcheck(lambda d: L.normal_matching(depth_to_normals(d, K_inv), n_ref), (depth,))


def test_normal_ranking_from_pairs_golden():
    n_pred = torch.tensor([[0, 0, -1], [1, 0, 0], [0, 0.6, -0.8], [0, 0, -1]], dtype=torch.float64).t().reshape(1, 3, 1, 4)
    n_ref = torch.zeros(1, 3, 1, 4, dtype=torch.float64)
    n_ref[:, 2] = -1
    ia, ib = torch.tensor([[0, 1, 2]]), torch.tensor([[3, 2, 3]])
    # |cos| pred: 1, 0, 0.8; reference: 1, 1, 1
    assert L.normal_ranking_from_pairs(n_pred, n_ref, ia, ib).item() == pytest.approx((0 + 1 + 0.2) / 3)
    valid = torch.tensor([True, False, True, True]).view(1, 1, 1, 4)
    assert L.normal_ranking_from_pairs(n_pred, n_ref, ia, ib, valid).item() == pytest.approx(0.1)
    pv = torch.tensor([[True, True, False]])
    assert L.normal_ranking_from_pairs(n_pred, n_ref, ia, ib, None, pv).item() == pytest.approx(0.5)


def test_edge_guided_pairs_follow_the_edge_normal():
    h, w = 16, 40
    img = torch.zeros(1, 1, h, w)
    img[..., 20:] = 1.0  # vertical step: gradient along +x, theta = 0
    gx, gy = L.sobel(img)
    edge, theta = torch.sqrt(gx**2 + gy**2), torch.atan2(gy, gx)
    g = torch.Generator().manual_seed(0)
    ia, ib, ok = L.edge_guided_pairs(edge, theta, 50, (3, 20), generator=g)
    assert ia.shape == ib.shape == ok.shape == (1, 150) and ok.all()
    ra, ca, rb, cb = ia // w, ia % w, ib // w, ib % w
    assert torch.equal(ra, rb)  # pairs run along x, across the edge
    # anchors sit on columns 19/20; the four points are at -r1, -r2, +r3, +r4 (3 <= r <= 19)
    a, b, c = ca[0, :50], ca[0, 50:100], ca[0, 100:]
    d = cb[0, 100:]
    assert ((a <= 17) & (b <= 17) & (c >= 22) & (d >= 22)).all()
    assert ((a >= 0) & (d <= 39)).all()
    # no edge at all: pairs exist but are flagged invalid
    flat = torch.zeros(1, 1, h, w)
    _, _, ok = L.edge_guided_pairs(flat, flat, 10)
    assert not ok.any()


def test_edge_guided_normal_ranking_zero_for_matching_normals():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 24, 32, generator=g)
    v, u = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    # a curved surface with one depth step (whose dilated band is excluded from sampling)
    depth = (3 + 0.2 * torch.sin(u / 2) + 0.2 * torch.cos(v / 3) + 5.0 * (u >= 24)).expand(2, 1, 24, 32)
    K_inv = torch.linalg.inv(torch.tensor([[20.0, 0, 15.5], [0, 20.0, 11.5], [0, 0, 1]]))[None].expand(2, 3, 3)
    n = depth_to_normals(depth, K_inv)
    assert L.edge_guided_normal_ranking(img, depth, n, n, num_anchors=64, generator=g).item() == pytest.approx(0.0, abs=1e-6)
    n_flat = torch.zeros_like(n)
    n_flat[:, 2] = -1
    loss = L.edge_guided_normal_ranking(img, depth, n_flat, n, num_anchors=64, generator=g)
    assert 0.0 < loss.item() <= 1.0


def test_ranking_from_pairs_golden():  # SC-DepthV3's form, on depth in metres
    rank = lambda *a, **k: L.ranking_from_pairs(*a, space="depth", **k)  # noqa: E731
    D = t(1.0, 2.0, 3.0, 4.0)
    P = t(1.0, 1.1, 2.0, 4.0)
    ia, ib = torch.tensor([[0, 1, 3, 0]]), torch.tensor([[2, 0, 2, 0]])
    ok = torch.ones(1, 4, dtype=torch.bool)
    # pair 0: P0/P2 = 0.5 -> l = -1, softplus(-2); pair 1: ratio 1.1 < 1.15 -> ignored;
    # pair 2: P3/P2 = 2 -> l = +1, softplus(-1); pair 3: same pixel -> ignored
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert rank(D, P, ia, ib, ok).item() == pytest.approx((sp(-2) + sp(-1)) / 2)
    ok[0, 2] = False
    assert rank(D, P, ia, ib, ok).item() == pytest.approx(sp(-2))
    P0 = P.clone()
    P0[..., 3] = 0.0  # invalid pseudo-depth: pair 2 dropped
    assert rank(D, P0, ia, ib, torch.ones(1, 4, dtype=torch.bool)).item() == pytest.approx(sp(-2))
    # ratio threshold 1.05: pair 1 counts now (+1: D1 - D0 = 1 -> softplus(-1))
    assert rank(D, P, ia, ib, torch.ones(1, 4, dtype=torch.bool), ratio=1.05).item() == \
        pytest.approx((sp(-2) + sp(-1) + sp(-1)) / 3)


@pytest.mark.parametrize("space", ["log", "depth"])
def test_ranking_from_pairs_gradcheck(space):
    D = (t(1.0, 2.0, 3.0, 4.0) + 0.1).requires_grad_()
    P = t(1.0, 1.1, 2.0, 4.0)
    ia, ib = torch.tensor([[0, 1, 3]]), torch.tensor([[2, 0, 2]])
    ok = torch.ones(1, 3, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda d: L.ranking_from_pairs(d, P, ia, ib, ok, space=space), (D,))


def test_ranking_is_invariant_to_a_global_depth_scale():
    # on depth in metres dL/dlog s was -0.131, -0.079, -0.034, -0.009, -0.001 at x0.25 .. x4: the
    # ranking always rewarded a larger scale; on median-normalised log depth it is 0
    g = torch.Generator().manual_seed(0)
    base = 1.0 + 20.0 * torch.rand(2, 1, 12, 16, generator=g, dtype=torch.float64)
    pseudo = base * torch.exp(0.02 * torch.randn(2, 1, 12, 16, generator=g, dtype=torch.float64))
    unreliable = L.lowest_fraction(torch.rand(2, 1, 12, 16, generator=g, dtype=torch.float64), 0.2)
    for space, invariant in (("log", True), ("depth", False)):
        grads = []
        for s in (0.25, 0.5, 1.0, 2.0, 4.0):
            log_s = torch.tensor(math.log(s), dtype=torch.float64, requires_grad=True)
            loss = L.mask_ranking(base * log_s.exp(), pseudo, unreliable, space=space,
                                  generator=torch.Generator().manual_seed(1))
            (grad,) = torch.autograd.grad(loss, log_s)
            grads.append(grad.item())
        if invariant:
            assert max(abs(x) for x in grads) < 1e-9, grads
        else:
            assert all(x < -1e-4 for x in grads), grads
    with pytest.raises(ValueError):
        L.ranking_from_pairs(base, pseudo, torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long),
                             torch.ones(2, 1, dtype=torch.bool), space="disp")


def test_mask_ranking_pairs_cover_unreliable_pixels():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(2, 1, 10, 10, generator=g)
    unrel = L.lowest_fraction(m, 0.2)
    valid = torch.ones_like(unrel)
    valid[1, 0, 0, :] = False
    ia, ib, ok = L.mask_ranking_pairs(unrel, valid, 0.1, generator=g)
    assert ia.shape == (2, 20 + 10) and ok.all()
    for b in range(2):
        assert set(ia[b, :20].tolist()) == set(unrel[b].flatten().nonzero().flatten().tolist())
        partners = ib[b, :20]
        assert not unrel[b].flatten()[partners].any() and valid[b].flatten()[partners].all()


def test_mask_ranking_end_to_end_sign():
    # the predicted depth ranks two regions against the pseudo-depth: loss falls when it agrees
    P = torch.ones(1, 1, 4, 4)
    P[..., 2:, :] = 3.0
    unrel = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    unrel[..., 3, :] = True
    agree = P * 2
    disagree = 8 - agree
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    la = L.mask_ranking(agree, P, unrel, generator=g())
    lb = L.mask_ranking(disagree, P, unrel, generator=g())
    assert la.item() < lb.item()


# ------------------------------------------------------------------------------------------
# (d, e) multi-view mask filter and depth prior
# ------------------------------------------------------------------------------------------
def test_multiview_mask_criteria(plane_scene):
    target, source, D, T, K = plane_scene
    worse_student = torch.full_like(D, 0.5)
    mmf = L.multiview_mask(target, [source], D, [D], [T], K, worse_student, tau_c=0.05)
    assert mmf.mask[..., 0].eq(0).all()  # projects outside the source
    assert mmf.mask[..., 4:].eq(1).all()  # exact teacher: consistent, auto-mask passes, better
    assert mmf.consistency[..., 1:].abs().max().item() < 1e-12
    # inconsistent teacher source depth: |10 - 20| / 30 = 1/3 >= tau_c
    bad = L.multiview_mask(target, [source], D, [2 * D], [T], K, worse_student, tau_c=0.05)
    assert bad.mask.eq(0).all()
    assert bad.consistency[..., 1:].sub(1 / 3).abs().max().item() < 1e-9
    loose = L.multiview_mask(target, [source], D, [2 * D], [T], K, worse_student, tau_c=0.5)
    assert loose.mask[..., 4:].eq(1).all()
    # a student that is photometrically better everywhere keeps the teacher out
    better_student = torch.full_like(D, -1.0)
    assert L.multiview_mask(target, [source], D, [D], [T], K, better_student).mask.eq(0).all()
    # criteria can be switched off one by one
    off = L.multiview_mask(target, [source], D, [2 * D], [T], K, better_student, photometric=False,
                           consistency=False, better=False)
    assert off.mask.eq(1).all()


def test_kd_loss_golden():
    g = torch.Generator().manual_seed(0)
    d_t = 1 + torch.rand(2, 1, 4, 5, generator=g)
    assert L.kd_loss(2 * d_t, d_t, align="median").item() == pytest.approx(0.0, abs=1e-6)
    assert L.kd_loss(2 * d_t, d_t, align="none").item() == pytest.approx(math.log(2.0), abs=1e-6)
    d_s = t(1.0, math.e, 1.0, 1.0)
    d_t1 = t(1.0, 1.0, 1.0, 1.0)
    m = t(1.0, 1.0, 0.0, 0.0)
    assert L.kd_loss(d_s, d_t1, m, align="none").item() == pytest.approx(0.5)
    assert L.kd_loss(d_s, d_t1, m, align="median").item() == pytest.approx(0.5)  # median(d_s) = 1
    with pytest.raises(ValueError):
        L.kd_loss(d_s, d_t1, m, align="mean")


@pytest.mark.parametrize("align", ["none", "median"])
def test_kd_loss_gradcheck_and_teacher_gets_no_gradient(align):
    g = torch.Generator().manual_seed(1)
    d_s = (1 + torch.rand(1, 1, 3, 4, generator=g, dtype=torch.float64)).requires_grad_()
    d_t = (1 + torch.rand(1, 1, 3, 4, generator=g, dtype=torch.float64)).requires_grad_()
    m = (torch.rand(1, 1, 3, 4, generator=g) > 0.3).double()
    if align == "none":
        assert torch.autograd.gradcheck(lambda d: L.kd_loss(d, d_t, m, align), (d_s,))
    else:  # sigma is a stop-gradient scale: same gradient as the unaligned loss on sigma * D_T
        ratio = (d_s.detach() / d_t.detach())[m.bool()]
        sigma = torch.quantile(ratio.log(), 0.5).exp().item()  # median log-ratio over the mask
        ref = torch.autograd.grad(L.kd_loss(d_s, sigma * d_t.detach(), m, "none"), d_s)[0]
        got = torch.autograd.grad(L.kd_loss(d_s, d_t, m, "median"), d_s)[0]
        assert torch.allclose(got, ref)
    L.kd_loss(d_s, d_t, m, align).backward()
    assert d_t.grad is None


def test_kd_loss_median_alignment_has_no_net_pull_on_the_student_scale():
    """The masked pixels are the nearer half, where the student is relatively too near: with
    sigma from the masked pixels the gradient along the global log-scale is zero (no drift);
    sigma from all pixels would push every step (the old, drifting alignment)."""
    g = torch.Generator().manual_seed(3)
    d_t = 1 + 9 * torch.rand(2, 1, 8, 10, generator=g)
    d_s = d_t * torch.exp(0.3 * torch.randn(2, 1, 8, 10, generator=g)) * (d_t / 5) ** -0.2
    m = (d_t < d_t.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)).float()
    log_scale = torch.zeros(2, 1, 1, 1, requires_grad=True)
    L.kd_loss(d_s * log_scale.exp(), d_t, m, "median").backward()
    assert log_scale.grad.abs().max().item() < 1e-6
    sigma_all = d_s.flatten(1).median(dim=1).values / d_t.flatten(1).median(dim=1).values
    log_scale_all = torch.zeros(2, 1, 1, 1, requires_grad=True)
    L.kd_loss(d_s * log_scale_all.exp(), sigma_all.view(-1, 1, 1, 1) * d_t, m, "none").backward()
    assert log_scale_all.grad.abs().max().item() > 0.1


def test_kd_loss_empty_mask_aligns_over_the_image():
    d_t = torch.ones(1, 1, 2, 2)
    d_s = 3 * d_t
    assert L.kd_loss(d_s, d_t, torch.zeros_like(d_t), "median").item() == pytest.approx(0.0, abs=1e-6)
