"""Mask targets on a constructed stereo pair where the proxy is right on one half and wrong on
the other (and the student the opposite), canonical and mirrored."""
from __future__ import annotations

import pytest
import torch

from stereodistill_plugins.selective.strategy import SelectiveStrategy, mask_targets

H, W, D = 16, 48, 4  # true disparity 4 px everywhere
FB = 2.0  # fx * baseline


def textured(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g, dtype=torch.float64)


def constructed_batch():
    """Left image I, right image with I_r(u) = I(u + D) (a fronto-parallel scene at disparity D),
    proxy right (D) on the left half and wrong (D + 3) on the right half, student wrong (D + 2)
    on the left half and right (D) on the right half."""
    left = textured(H, W, 0)
    right = torch.cat([left[..., D:], textured(H, D, 1)], dim=-1)
    half = torch.arange(W, dtype=torch.float64) < W // 2
    proxy = torch.where(half, float(D), float(D + 3)).to(torch.float64).expand(1, 1, H, W).clone()
    student_disp = torch.where(half, float(D + 2), float(D)).to(torch.float64).expand(1, 1, H, W).clone()
    K = torch.eye(3, dtype=torch.float64)[None].clone()
    K[0, 0, 0] = FB
    batch = dict(image=left, image_right=right, K=K, baseline=torch.ones(1, dtype=torch.float64),
                 meta=dict(flipped=torch.tensor([False]), swapped=torch.tensor([False]), side=["l"]))
    return batch, proxy, FB / student_disp


# columns where the 3x3 SSIM window sees one half only and no warp samples outside the image
LEFT_COLS = slice(D + 4, W // 2 - 2)
RIGHT_COLS = slice(W // 2 + 2, W - 1)


def interior(y):
    return y[..., 1:-1, LEFT_COLS], y[..., 1:-1, RIGHT_COLS]


def test_targets_choose_proxy_where_it_is_right_and_self_elsewhere():
    batch, proxy, depth = constructed_batch()
    s = SelectiveStrategy()
    y_p, y_s, extra = s.mask_targets_for(batch, depth, proxy, proxy > 0)
    assert extra is None
    yp_l, yp_r = interior(y_p)
    ys_l, ys_r = interior(y_s)
    assert yp_l.min() == 1 and yp_r.max() == 0  # proxy wins on the left half only
    assert ys_l.max() == 0 and ys_r.min() == 1  # own estimate wins on the right half only
    assert float((y_p * y_s).sum()) == 0.0  # never both


def test_targets_of_a_mirrored_sample_are_the_mirrored_targets():
    batch, proxy, depth = constructed_batch()
    s = SelectiveStrategy()
    y_p, y_s, _ = s.mask_targets_for(batch, depth, proxy, proxy > 0)
    flip = lambda t: torch.flip(t, dims=[-1])  # noqa: E731
    mirrored = dict(batch, image=flip(batch["image"]), image_right=flip(batch["image_right"]),
                    meta=dict(batch["meta"], flipped=torch.tensor([True])))
    fy_p, fy_s, _ = s.mask_targets_for(mirrored, flip(depth), flip(proxy), flip(proxy) > 0)
    torch.testing.assert_close(fy_p, flip(y_p))
    torch.testing.assert_close(fy_s, flip(y_s))
    # ignoring the mirror flag warps towards the wrong side: the proxy no longer wins
    wrong = dict(mirrored, meta=dict(batch["meta"]))
    wy_p, _, _ = s.mask_targets_for(wrong, flip(depth), flip(proxy), flip(proxy) > 0)
    assert float((wy_p != fy_p).double().mean()) > 0.25


def test_invalid_proxy_pixels_never_become_proxy_targets():
    batch, proxy, depth = constructed_batch()
    valid = torch.ones_like(proxy, dtype=torch.bool)
    valid[..., : W // 4] = False
    s = SelectiveStrategy()
    y_p, y_s, _ = s.mask_targets_for(batch, depth, proxy, valid)
    assert y_p[..., : W // 4].max() == 0
    assert y_p[..., 1:-1, W // 4 + 2: W // 2 - 2].min() == 1  # still chosen where valid
    # without a proxy the own estimate competes with the identity only
    _, y_s_alone, _ = s.mask_targets_for(batch, depth, proxy, torch.zeros_like(valid))
    torch.testing.assert_close(y_s[..., : W // 4], y_s_alone[..., : W // 4])
    assert 0 < float(y_s_alone.mean()) < 1


def test_identity_wins_gives_neither_target():
    e_id = torch.tensor([0.1, 0.5, 0.5, 0.5, 0.2])
    e_p = torch.tensor([0.2, 0.1, 0.3, 0.3, 0.1])
    e_s = torch.tensor([0.3, 0.2, 0.1, 0.3, 0.1])
    y_p, y_s = mask_targets(e_p, e_s, e_id)
    # identity best -> (0, 0); proxy best -> (1, 0); self best -> (0, 1); ties go to self
    assert y_p.tolist() == [0, 1, 0, 0, 0]
    assert y_s.tolist() == [0, 0, 1, 1, 1]
    y_p, y_s = mask_targets(e_p, e_s, e_id, proxy_valid=torch.tensor([True, False, True, True, True]))
    assert y_p.tolist() == [0, 0, 0, 0, 0] and y_s.tolist() == [0, 1, 1, 1, 1]


def ramp_batch():
    """A left-to-right intensity ramp (per-pixel photometric error grows with the disparity
    error, so wrong-by-1 always beats wrong-by-3) seen at disparity D."""
    cols = torch.arange(W + D, dtype=torch.float64)
    rows = torch.arange(H, dtype=torch.float64)[:, None]
    scene = torch.stack([(cols / (W + D)) * k + 0.01 * rows for k in (0.5, 0.7, 0.9)])[None]
    batch, _, _ = constructed_batch()
    batch = dict(batch, image=scene[..., :W].clone(), image_right=scene[..., D:].clone())
    return batch


@pytest.mark.parametrize("wrong_side", ["left", "right"])
def test_interpretation_b_marks_each_proxy_valid_where_it_explains_the_pair(wrong_side):
    """B: mask 0 = left proxy validity, mask 1 = right-view proxy (seen from the left) validity."""
    from harness import DepthOutput

    batch = ramp_batch()
    depth = torch.full((1, 1, H, W), FB / (D + 1), dtype=torch.float64)  # student off by 1 px
    cols = torch.arange(W)
    bad = cols < W // 2 if wrong_side == "left" else cols >= W // 2
    left_proxy = torch.full((1, 1, H, W), float(D), dtype=torch.float64)
    # right-view proxy: right pixel u sees left pixel u + D; off by 3 px where that pixel is "bad"
    bad_r = torch.zeros(W, dtype=torch.bool)
    bad_r[: W - D] = bad[D:]
    right_proxy = torch.where(bad_r, float(D + 3), float(D)).to(torch.float64).expand(1, 1, H, W).clone()
    s = SelectiveStrategy(mask_targets="B", target_margin=0.0, target_window=1)  # the per-pixel rule
    t_out = DepthOutput(disp={0: left_proxy}, aux={"disp_right": right_proxy})
    y0, y1, (depth_r, valid_r) = s.mask_targets_for(batch, depth, left_proxy, left_proxy > 0, t_out)
    l0, r0 = interior(y0)
    assert l0.min() == 1 and r0.min() == 1  # the left proxy is right everywhere
    l1, r1 = interior(y1)
    good1, bad1 = (r1, l1) if wrong_side == "left" else (l1, r1)
    assert good1.min() == 1 and bad1.max() == 0
    assert valid_r.min() == 1
    expected = torch.where(bad, FB / (D + 3), FB / D).to(torch.float64).expand(1, 1, H, W)
    torch.testing.assert_close(depth_r[..., D:], expected[..., D:])


def test_targets_do_not_collapse_to_proxy_once_the_student_copies_it():
    # the student has copied the proxy: both are the true disparity up to jitter of the same
    # size, so E_S ~ E_P. Without a margin the proxy target was a coin flip per pixel (~half the
    # pixels), which the MaskDecoder learnt as "proxy almost everywhere"; with the default margin
    # the ties go to the student
    batch, _, _ = constructed_batch()
    g = torch.Generator().manual_seed(0)
    proxy = D + 0.05 * torch.randn(1, 1, H, W, generator=g, dtype=torch.float64)
    depth = FB / (D + 0.05 * torch.randn(1, 1, H, W, generator=g, dtype=torch.float64))
    y_p, y_s, _ = SelectiveStrategy().mask_targets_for(batch, depth, proxy, proxy > 0)
    inner = (slice(None), slice(None), slice(1, -1), slice(D + 4, W - 1))
    assert float(y_p[inner].mean()) < 0.1
    assert float(y_s[inner].mean()) > 0.9
    plain_p, _, _ = SelectiveStrategy(target_margin=0.0, target_window=1).mask_targets_for(batch, depth, proxy, proxy > 0)
    assert 0.2 < float(plain_p[inner].mean()) < 0.8  # the coin flip the margin removes
    # a clearly better proxy still wins with the margin (the constructed halves)
    batch, proxy, depth = constructed_batch()
    y_p, _, _ = SelectiveStrategy().mask_targets_for(batch, depth, proxy, proxy > 0)
    assert interior(y_p)[0].min() == 1 and interior(y_p)[1].max() == 0
    with pytest.raises(ValueError):
        mask_targets(torch.ones(1), torch.ones(1), torch.ones(1), margin=1.0)
    with pytest.raises(ValueError):
        mask_targets(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), window=2)
