"""Golden values of every named loss term of the structure method (photo, smooth, dsc, ltd,
graph), each against a hand calculation or an independent slow implementation."""
import math

import numpy as np
import pytest
import torch

from harness import DepthOutput, HarnessError, StepContext
from harness.distill.geometry import pose_vec_to_mat
from stereodistill_plugins.structure.modules import IsoGraph
from stereodistill_plugins.structure.strategy import StructureStrategy, structure_consistency


# --------------------------------------------------------------------------------------------
# photo: Monodepth2 min-reprojection with auto-mask, against loops over pixels
# --------------------------------------------------------------------------------------------
def _reflect(i: int, n: int) -> int:
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


def _slow_pe(a: np.ndarray, b: np.ndarray, alpha: float = 0.85) -> np.ndarray:
    """0.85 * clip((1 - SSIM_3x3) / 2, 0, 1) + 0.15 * |a - b|, mean over channels (C x H x W)."""
    c1, c2 = 0.01**2, 0.03**2
    C, H, W = a.shape
    out = np.zeros((H, W))
    for c in range(C):
        for y in range(H):
            for x in range(W):
                pa = [a[c, _reflect(y + dy, H), _reflect(x + dx, W)] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                pb = [b[c, _reflect(y + dy, H), _reflect(x + dx, W)] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                ma, mb = sum(pa) / 9, sum(pb) / 9
                va = sum(v * v for v in pa) / 9 - ma * ma
                vb = sum(v * v for v in pb) / 9 - mb * mb
                cov = sum(u * v for u, v in zip(pa, pb)) / 9 - ma * mb
                s = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
                dssim = min(max((1 - s) / 2, 0.0), 1.0)
                out[y, x] += (alpha * dssim + (1 - alpha) * abs(a[c, y, x] - b[c, y, x])) / C
    return out


def _shift(src: np.ndarray, s: int) -> np.ndarray:
    """out[..., u] = src[..., clamp(u + s)] (border padding)."""
    W = src.shape[-1]
    idx = np.clip(np.arange(W) + s, 0, W - 1)
    return src[..., idx]


def test_photo_golden_against_slow_min_reprojection():
    H, W = 4, 6
    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    frames = {-1: torch.rand(1, 3, H, W, generator=g, dtype=torch.float64),
              1: torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)}
    f = 3.0
    K = torch.tensor([[[f, 0.0, 2.5], [0.0, f, 1.5], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    # constant depth + pure x translation t: the warp samples the source at u + f t / D
    zero = torch.zeros(1, 3, dtype=torch.float64)
    poses = {-1: pose_vec_to_mat(zero, torch.tensor([[1.0, 0, 0]], dtype=torch.float64)),
             1: pose_vec_to_mat(zero, torch.tensor([[-1.0, 0, 0]], dtype=torch.float64))}
    depths = {0: 3.0, 1: 1.5}  # shifts of 1 px (scale 0) and 2 px (scale 1, upsampled)
    view = DepthOutput(depth={0: torch.full((1, 1, H, W), depths[0], dtype=torch.float64),
                              1: torch.full((1, 1, H // 2, W // 2), depths[1], dtype=torch.float64)})
    st = StructureStrategy(scales=(0, 1))
    got = st.view_photometric(img, frames, poses, K, view, st.identity_errors(img, frames))

    a = img[0].numpy()
    srcs = {s: frames[s][0].numpy() for s in (-1, 1)}
    ident = [_slow_pe(srcs[s], a) for s in (-1, 1)]
    per_scale = []
    for i, D in depths.items():
        shift = int(round(f * 1.0 / D))
        errs = [_slow_pe(_shift(srcs[-1], shift), a), _slow_pe(_shift(srcs[1], -shift), a)]
        per_scale.append(np.minimum.reduce(errs + ident).mean())
    assert got.item() == pytest.approx(float(np.mean(per_scale)), abs=1e-6)

    # without the auto-mask only the warped errors compete
    st_nomask = StructureStrategy(scales=(0,), automask=False)
    got = st_nomask.view_photometric(img, frames, poses, K, view, st_nomask.identity_errors(img, frames))
    errs = [_slow_pe(_shift(srcs[-1], 1), a), _slow_pe(_shift(srcs[1], -1), a)]
    assert got.item() == pytest.approx(float(np.minimum(*errs).mean()), abs=1e-6)


# --------------------------------------------------------------------------------------------
# smooth: edge-aware first-order smoothness, by hand
# --------------------------------------------------------------------------------------------
def test_smooth_golden_by_hand():
    disp = torch.tensor([[[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]]])  # mean 2 -> d* steps of 0.5 along x
    img = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]).expand(1, 3, 2, 3)  # edge between cols 1, 2
    st = StructureStrategy(scales=(0,))
    got = st.view_smoothness(img, DepthOutput(disp={0: disp}))
    # |dx d*| = 0.5 at both column pairs; weights exp(-0) = 1 and exp(-1); dy d* = 0
    assert got.item() == pytest.approx(0.5 * (1 + math.exp(-1)) / 2, abs=1e-6)
    # a second scale is divided by 2^i and the scales are averaged
    st2 = StructureStrategy(scales=(0, 1))
    got2 = st2.view_smoothness(img, DepthOutput(disp={0: disp, 1: disp}))
    assert got2.item() == pytest.approx((1 + 0.5) / 2 * 0.5 * (1 + math.exp(-1)) / 2, abs=1e-6)


# --------------------------------------------------------------------------------------------
# dsc / ltd: the structure consistency, by hand, and through compute_loss
# --------------------------------------------------------------------------------------------
def test_structure_consistency_by_hand():
    clean = torch.ones(1, 1, 2, 2)
    aug = torch.exp(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))  # log ramp along x
    # |a - c| mean = 0.5; dx differences: 1 (both rows) -> 1; dy: 0
    assert structure_consistency(aug, clean).item() == pytest.approx(1.5, abs=1e-6)
    assert structure_consistency(aug, clean, grad_weight=0.5).item() == pytest.approx(1.0, abs=1e-6)
    assert structure_consistency(aug, clean, grad_weight=0.0).item() == pytest.approx(0.5, abs=1e-6)
    # the log makes it scale-free in the sense of ratios: D~ = 2 D everywhere -> log 2
    assert structure_consistency(2 * aug, aug).item() == pytest.approx(math.log(2), abs=1e-6)
    per = structure_consistency(torch.cat([aug, 2 * clean]), torch.cat([clean, clean]), reduction="none")
    assert per.tolist() == pytest.approx([1.5, math.log(2)], abs=1e-6)


def _view(depth: torch.Tensor, **aux) -> DepthOutput:
    return DepthOutput(depth={0: depth}, disp={0: 1.0 / depth}, aux=aux)


def _loss_batch(b=2, h=8, w=8):
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[4.0, 0, 3.5], [0, 4.0, 3.5], [0, 0, 1]]).expand(b, 3, 3)
    return {"image": torch.rand(b, 3, h, w, generator=g),
            "frames": {-1: torch.rand(b, 3, h, w, generator=g), 1: torch.rand(b, 3, h, w, generator=g)}, "K": K}


def test_dsc_and_ltd_terms_golden_split_mode():
    batch = _loss_batch()
    clean = torch.full((2, 1, 8, 8), 2.0)
    x = torch.arange(8.0).view(1, 1, 1, 8)
    aug = torch.cat([clean[:1] * math.exp(0.3), 2.0 * torch.exp(0.1 * x).expand(1, 1, 8, 8)])
    st = StructureStrategy(scales=(0,), pose_width=4, loss_weights=dict(ltd=2.0))
    s_out = {"clean": _view(clean), "aug": _view(aug, ltd_sample=torch.tensor([0.0, 1.0]))}
    loss = st.compute_loss(batch, s_out, None, StepContext())
    assert loss.terms["dsc"].item() == pytest.approx(0.3, abs=1e-5)  # image 0: perturbed
    # image 1: masked; |a - c| = 0.1 x averaged over x = 0..7 -> 0.35; dx diff 0.1; dy 0
    assert loss.terms["ltd"].item() == pytest.approx(2.0 * 0.45, abs=1e-5)
    assert set(loss.terms) == {"photo", "smooth", "dsc", "ltd"}
    assert loss.total.item() == pytest.approx(sum(v.item() for v in loss.terms.values()), rel=1e-6)


def test_dsc_and_ltd_terms_golden_separate_mode():
    batch = _loss_batch()
    clean = torch.full((2, 1, 8, 8), 2.0)
    st = StructureStrategy(scales=(0,), pose_width=4, aug_mode="separate")
    s_out = {"clean": _view(clean), "perturbed": _view(clean * math.exp(-0.2)), "masked": _view(clean * math.exp(0.7))}
    loss = st.compute_loss(batch, s_out, None, StepContext())
    assert loss.terms["dsc"].item() == pytest.approx(0.2, abs=1e-5)
    assert loss.terms["ltd"].item() == pytest.approx(0.7, abs=1e-5)


def test_photo_term_averages_views_and_uses_clean_images():
    """photo = mean over the predictions of their photometric loss; all against the clean image."""
    batch = _loss_batch()
    st = StructureStrategy(scales=(0,), pose_width=4, photo_weighting="mean")
    d1, d2 = torch.full((2, 1, 8, 8), 5.0), torch.full((2, 1, 8, 8), 9.0)
    s_out = {"clean": _view(d1), "aug": _view(d2, ltd_sample=torch.tensor([0.0, 1.0]))}
    loss = st.compute_loss(batch, s_out, None, StepContext())
    with torch.no_grad():
        poses = st.predict_poses(batch["image"], batch["frames"])
        ident = st.identity_errors(batch["image"], batch["frames"])
        p1 = st.view_photometric(batch["image"], batch["frames"], poses, batch["K"], _view(d1), ident)
        p2 = st.view_photometric(batch["image"], batch["frames"], poses, batch["K"], _view(d2), ident)
    assert loss.terms["photo"].item() == pytest.approx(((p1 + p2) / 2).item(), rel=1e-5)


def test_photo_term_gives_the_clean_pass_full_weight():
    """photo = photo(clean) + photo_aux_weight * mean over the other predictions (default 0.5)."""
    batch = _loss_batch()
    d1, d2, d3 = (torch.full((2, 1, 8, 8), v) for v in (5.0, 9.0, 2.0))
    s_out = {"clean": _view(d1), "fused": _view(d3), "aug": _view(d2, ltd_sample=torch.tensor([0.0, 1.0]))}
    for weight in (0.5, 0.0):
        st = StructureStrategy(scales=(0,), pose_width=4, photo_aux_weight=weight)
        loss = st.compute_loss(batch, s_out, None, StepContext())
        with torch.no_grad():
            poses = st.predict_poses(batch["image"], batch["frames"])
            ident = st.identity_errors(batch["image"], batch["frames"])
            p = [st.view_photometric(batch["image"], batch["frames"], poses, batch["K"], _view(d), ident)
                 for d in (d1, d3, d2)]
        assert loss.terms["photo"].item() == pytest.approx((p[0] + weight * (p[1] + p[2]) / 2).item(), rel=1e-5)
    with pytest.raises(HarnessError, match="photo_weighting"):
        StructureStrategy(photo_weighting="sum")


def test_consistency_terms_ramp_in_after_the_warmup():
    batch = _loss_batch()
    clean = torch.full((2, 1, 8, 8), 2.0)
    aug = clean * math.exp(0.3)
    st = StructureStrategy(scales=(0,), pose_width=4, aug_warmup=0.2, consistency_ramp=0.4)
    s_out = {"clean": _view(clean), "aug": _view(aug, ltd_sample=torch.tensor([0.0, 1.0]))}
    got = {}
    for step in (20, 30, 40, 60, 90):  # of 100: warm-up to 20, ramp 20 -> 60
        loss = st.compute_loss(batch, s_out, None, StepContext(step=step, total_steps=100))
        got[step] = (loss.terms["dsc"].item(), loss.terms["ltd"].item())
        assert st.consistency_factor(StepContext(step=step, total_steps=100)) == pytest.approx(
            min(max((step - 20) / 40, 0.0), 1.0))
    assert got[20] == pytest.approx((0.0, 0.0), abs=1e-7)
    assert got[40] == pytest.approx((0.15, 0.15), abs=1e-5)  # half-way: half of 0.3
    assert got[60] == pytest.approx((0.3, 0.3), abs=1e-5) and got[90] == pytest.approx(got[60])
    assert StructureStrategy(consistency_ramp=0.0).consistency_factor(StepContext(step=0)) == 1.0
    with pytest.raises(HarnessError, match="consistency_ramp"):
        StructureStrategy(consistency_ramp=1.5)


# --------------------------------------------------------------------------------------------
# graph: isomorphic graphs, against plain-Python arithmetic
# --------------------------------------------------------------------------------------------
def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def _slow_graph(xs, xt, topk=None):
    n, d = len(xs), len(xs[0])
    dot = lambda a, b: sum(u * v for u, v in zip(a, b))  # noqa: E731
    ls = [[dot(xs[i], xs[j]) / math.sqrt(d) for j in range(n)] for i in range(n)]
    lt = [[dot(xt[i], xt[j]) / math.sqrt(d) for j in range(n)] for i in range(n)]
    keep = [[True] * n for _ in range(n)]
    if topk is not None:
        keep = [[lt[i][j] >= sorted(lt[i], reverse=True)[topk - 1] for j in range(n)] for i in range(n)]

    def soft(logits, i):
        kept = [logits[i][j] for j in range(n) if keep[i][j]]
        p = _softmax(kept)
        it = iter(p)
        return [next(it) if keep[i][j] else 0.0 for j in range(n)]

    a_s = [soft(ls, i) for i in range(n)]
    a_t = [soft(lt, i) for i in range(n)]
    rel = sum(sum(a_t[i][j] * (math.log(a_t[i][j]) - math.log(a_s[i][j])) for j in range(n) if a_t[i][j] > 0)
              for i in range(n)) / n
    agg = [[sum(a_t[i][j] * xs[j][c] for j in range(n)) for c in range(d)] for i in range(n)]
    hs = [[xs[i][c] + max(0.0, agg[i][c]) for c in range(d)] for i in range(n)]
    cos = lambda a, b: dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))  # noqa: E731
    node = sum(1 - cos(hs[i], xt[i]) for i in range(n)) / n
    return rel, node, hs


def _identity_graph(n_ch=2, topk=None):
    g = IsoGraph(n_ch, n_ch, dim=n_ch, topk=topk)
    with torch.no_grad():
        for lin in (g.proj_s, g.proj_t, g.q_s, g.k_s, g.q_t, g.k_t, g.gcn):
            lin.weight.copy_(torch.eye(n_ch))
            if lin.bias is not None:
                lin.bias.zero_()
    return g


@pytest.mark.parametrize("topk", [None, 2])
def test_graph_losses_golden(topk):
    xs = [[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5]]
    xt = [[1.0, 1.0], [-1.0, 0.5], [0.3, -0.2]]
    f_s = torch.tensor(xs).t().reshape(1, 2, 1, 3)  # one row of three nodes
    f_t = torch.tensor(xt).t().reshape(1, 2, 1, 3)
    out = _identity_graph(topk=topk)(f_s, f_t, (1, 3))
    rel, node, hs = _slow_graph(xs, xt, topk)
    assert out.rel.item() == pytest.approx(rel, abs=1e-6)
    assert out.node.item() == pytest.approx(node, abs=1e-6)
    assert out.h_s[0].tolist() == [pytest.approx(r, abs=1e-6) for r in hs]


def test_graph_nodes_are_adaptive_average_pooled_on_a_shared_grid():
    f = torch.arange(16.0).view(1, 1, 4, 4)
    nodes = IsoGraph.nodes(f, (2, 2))
    assert nodes.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]  # means of the 2x2 blocks, row-major


def test_graph_term_in_compute_loss_is_weighted_mean_over_strides():
    batch = _loss_batch()
    st = StructureStrategy(scales=(0,), pose_width=4)
    aux = {"rel_s16": torch.tensor(0.2), "node_s16": torch.tensor(0.3),
           "rel_s32": torch.tensor(0.4), "node_s32": torch.tensor(0.1)}
    s_out = {"clean": _view(torch.full((2, 1, 8, 8), 2.0)), "graph": DepthOutput(aux=aux)}
    loss = st.compute_loss(batch, s_out, None, StepContext())
    assert loss.terms["graph"].item() == pytest.approx(0.1 * 0.5, abs=1e-7)  # default weight 0.1
