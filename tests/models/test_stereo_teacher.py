"""StereoTeacher: shapes, specs, depth formula, gradients, and that it actually learns."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.models.stereo_teacher import StereoTeacher
from harness.types import DepthOutput, FeatureSpec

FX, BASELINE = 50.0, 0.5


def texture(b: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Random texture: smooth (half-resolution) noise plus some fine noise, in [0, 1]."""
    coarse = torch.rand(b, 3, h // 2, w // 2, generator=g)
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return 0.7 * smooth + 0.3 * torch.rand(b, 3, h, w, generator=g)


def stereo_batch(disps: list[int], h: int, w: int, g: torch.Generator) -> dict:
    """Rectified pairs whose true disparity is the constant ``disps[i]`` for sample ``i``.

    ``left[x] = right[x - d]``: both are crops of one wider texture, the right one ``d`` px
    further along.
    """
    tex = texture(len(disps), h, w + max(disps), g)
    left = tex[..., :w]
    right = torch.stack([tex[i, :, :, d:d + w] for i, d in enumerate(disps)])
    b = len(disps)
    K = torch.eye(3).repeat(b, 1, 1)
    K[:, 0, 0] = FX
    return {"image": left.contiguous(), "image_right": right.contiguous(), "K": K,
            "baseline": torch.full((b,), BASELINE)}


def depth_gt_for(disps: list[int], h: int, w: int) -> torch.Tensor:
    d = torch.tensor(disps, dtype=torch.float32).view(-1, 1, 1, 1)
    return (FX * BASELINE / d).expand(-1, 1, h, w).clone()


@pytest.fixture(scope="module")
def batch() -> dict:
    return stereo_batch([8, 12], 64, 128, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cost", ["correlation", "concat"])
def test_shapes_and_specs(batch, cost):
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=32, base_width=8, cost=cost)
    out = teacher(batch)
    assert isinstance(out, DepthOutput)
    assert out.disp_units == "px" and out.depth_kind == "metric"
    assert out.disp[0].shape == (2, 1, 64, 128) and out.depth[0].shape == (2, 1, 64, 128)
    # correlation volumes have one level per full-resolution pixel of disparity (sub-pixel
    # shifted right features); concat volumes one level per 4 px
    levels = 32 if cost == "correlation" else 8
    assert out.aux["cost_volume_s4"].shape == (2, levels, 16, 32)
    specs = teacher.feature_specs()
    assert all(isinstance(s, FeatureSpec) for s in specs)
    assert [s.name for s in specs] == ["dec_s4", "dec_s8", "dec_s16", "dec_s32"]
    assert set(out.features) == {s.name for s in specs}
    for s in specs:
        assert out.features[s.name].shape == (2, s.channels, 64 // s.stride, 128 // s.stride)
    assert torch.all(out.disp[0] >= 0)


def test_class_attributes():
    assert StereoTeacher.mode == "frozen"
    assert StereoTeacher.trainable is True
    assert StereoTeacher.input_keys == frozenset({"image", "image_right", "K", "baseline"})


def test_depth_is_fx_baseline_over_disp(batch):
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=32, base_width=8, min_depth=0.5, max_depth=20.0)
    b = dict(batch, K=batch["K"].clone(), baseline=torch.tensor([0.5, 0.25]))
    b["K"][1, 0, 0] = 80.0
    out = teacher(b)
    fb = torch.tensor([50.0 * 0.5, 80.0 * 0.25]).view(2, 1, 1, 1)
    expected = (fb / out.disp[0].clamp(min=1e-6)).clamp(0.5, 20.0)
    torch.testing.assert_close(out.depth[0], expected)


def test_missing_keys_and_bad_sizes(batch):
    teacher = StereoTeacher(max_disp=32, base_width=8)
    with pytest.raises(KeyError, match="baseline"):
        teacher({k: v for k, v in batch.items() if k != "baseline"})
    with pytest.raises(ValueError, match="divisible by 32"):
        crop = batch["image"][..., :48, :]
        teacher(dict(batch, image=crop, image_right=crop))
    with pytest.raises(ValueError, match="cost"):
        StereoTeacher(cost="sad")


@pytest.mark.parametrize("cost", ["correlation", "concat"])
def test_supervised_gradients_reach_every_parameter(batch, cost):
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=32, base_width=8, cost=cost)
    b = dict(batch, depth_gt=depth_gt_for([8, 12], 64, 128))
    b["depth_gt"][:, :, :4] = 0  # some invalid GT
    out = teacher(b)
    terms = teacher.self_loss(b, out)
    assert set(terms) == {"disp_l1", "disp_rel"}
    sum(terms.values()).backward()
    for name, p in teacher.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_supervised_loss_handles_gt_resolution_and_empty_mask(batch):
    teacher = StereoTeacher(max_disp=32, base_width=8)
    out = DepthOutput(disp={0: torch.full((2, 1, 64, 128), 8.0, requires_grad=True)})
    # GT at twice the input resolution: disparity is compared in input-resolution pixels.
    b = dict(batch, depth_gt=depth_gt_for([8, 8], 128, 256))
    terms = teacher.self_loss(b, out)
    assert terms["disp_l1"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["disp_rel"].item() == pytest.approx(0.0, abs=1e-6)
    b["depth_gt_mask"] = torch.zeros(2, 1, 128, 256, dtype=torch.bool)
    loss = sum(teacher.self_loss(b, out).values())
    assert loss.item() == 0.0
    loss.backward()


def test_silog_loss_switch_golden_and_gradients(batch):
    teacher = StereoTeacher(max_disp=32, base_width=8)
    assert teacher.train_losses == ("smooth_l1_rel", "silog")
    b = dict(batch, depth_gt=depth_gt_for([8, 12], 64, 128))
    exact = DepthOutput(disp={0: torch.tensor([8.0, 12.0]).view(2, 1, 1, 1).expand(2, 1, 64, 128).clone()})
    assert teacher.self_loss(b, exact, loss="silog")["silog"].item() == pytest.approx(0.0, abs=1e-5)
    # a disparity 2x too large everywhere is a pure scale error: SILog (lambda 0.85) gives
    # 10 sqrt(g^2 - 0.85 g^2) with g = log 2
    twice = DepthOutput(disp={0: 2 * exact.disp[0]})
    want = 10 * (0.15 * torch.log(torch.tensor(2.0)) ** 2).sqrt().item()
    assert teacher.self_loss(b, twice, loss="silog")["silog"].item() == pytest.approx(want, rel=1e-4)
    out = teacher(b)
    terms = teacher.self_loss(b, out, loss="silog")
    assert set(terms) == {"silog"}
    terms["silog"].backward()
    assert teacher.logit_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="teacher_train.loss"):
        teacher.self_loss(b, out, loss="l2")


def test_self_supervised_loss_prefers_true_disparity(batch):
    teacher = StereoTeacher(max_disp=32, base_width=8)
    b = stereo_batch([8, 8], 64, 128, torch.Generator().manual_seed(3))

    def loss_at(d: float) -> dict:
        return teacher.self_loss(b, DepthOutput(disp={0: torch.full((2, 1, 64, 128), d)}))

    true = loss_at(8.0)
    assert set(true) == {"photo", "smooth"}
    assert true["photo"] < 0.05
    for wrong in (4.0, 7.0, 9.5, 16.0):
        assert true["photo"] < 0.5 * loss_at(wrong)["photo"], wrong
        assert sum(true.values()) < sum(loss_at(wrong).values())


def test_self_supervised_gradients(batch):
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=32, base_width=8)
    out = teacher(batch)
    terms = teacher.self_loss(batch, out)
    sum(terms.values()).backward()
    grads = [p.grad for p in teacher.parameters()]
    assert all(g is not None for g in grads)
    assert terms["smooth"] >= 0


@pytest.fixture
def single_thread():
    """Tiny 32 x 64 training loops gain nothing from intra-op threads, and on a shared 2-core
    machine two spinning OpenMP threads slow down several-fold when another process runs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _val_error(teacher: StereoTeacher, val: dict, disps: list[int]) -> float:
    teacher.eval()
    with torch.no_grad():
        disp = teacher(val).disp[0]
    teacher.train()
    true = torch.tensor(disps, dtype=torch.float32).view(-1, 1, 1, 1)
    # Interior: away from the left border, where pixels have no match in the right view.
    return (disp[..., 4:-4, 24:-4] - true).abs().mean().item()


def _train(teacher: StereoTeacher, supervised: bool, steps: int = 150) -> tuple[float, float]:
    """Train on random textures with per-pair constant disparities in 4..20 px.

    The disparity differs between pairs, so a constant output cannot fit it: the network has
    to match. Returns the mean absolute disparity error on unseen textures before and after.
    """
    h, w, choices = 32, 64, torch.tensor([4, 8, 12, 16, 20])
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    val_disps = [4, 8, 16, 20]
    val = stereo_batch(val_disps, h, w, torch.Generator().manual_seed(99))
    before = _val_error(teacher, val, val_disps)
    for _ in range(steps):
        disps = choices[torch.randint(0, len(choices), (4,), generator=g)].tolist()
        b = stereo_batch(disps, h, w, g)
        if supervised:
            b["depth_gt"] = depth_gt_for(disps, h, w)
        loss = sum(teacher.self_loss(b, teacher(b)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, _val_error(teacher, val, val_disps)


@pytest.mark.slow
@pytest.mark.parametrize("cost", ["correlation", "concat"])
def test_learns_disparity_supervised(cost, single_thread):
    """150 Adam steps of the supervised loss (~4 s on one core)."""
    torch.manual_seed(0)
    before, after = _train(StereoTeacher(max_disp=32, base_width=8, cost=cost), supervised=True)
    assert after < 0.35 * before and after < 1.5, (before, after)


@pytest.mark.slow
def test_learns_disparity_self_supervised(single_thread):
    """150 Adam steps of the photometric loss alone (no GT) also recover the disparity."""
    torch.manual_seed(0)
    before, after = _train(StereoTeacher(max_disp=32, base_width=8), supervised=False)
    assert after < 0.35 * before and after < 1.5, (before, after)


def test_subpixel_correlation_volume_peaks_at_the_true_full_resolution_disparity():
    # right(x) = left(x + 5): 5 px = one stride-4 step plus a 1 px sub-step, invisible to a
    # volume sampled every 4 px; the sub-pixel volume must peak exactly at level 5.
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=32, base_width=8).eval()
    texture = torch.rand(1, 3, 64, 160)
    left, right = texture[..., :128], texture[..., 5:133]
    K = torch.tensor([[[100.0, 0, 64], [0, 100.0, 32], [0, 0, 1]]])
    with torch.no_grad():
        cost = teacher({"image": left, "image_right": right, "K": K, "baseline": torch.tensor([0.5])}).aux["cost_volume_s4"]
    votes = torch.bincount(cost[0, :, 4:-4, 8:-4].argmax(0).flatten(), minlength=32)
    # untrained features: the unnormalised correlation is noisy, but level 5 must win clearly
    assert votes.argmax() == 5 and votes[5] > 0.35 * votes.sum() and votes[5] > 5 * votes[4] and votes[5] > 5 * votes[6]
