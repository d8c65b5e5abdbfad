"""ADUStrategy on the real (tiny) student and stereo teacher: build, loss terms, gradients,
warm-up, flip handling and config."""
from __future__ import annotations

import pytest
import torch

from harness import HarnessError, Strategy, StepContext
from harness.config.loader import build_run_config, section
from harness.models.stereo_teacher import StereoTeacher
from harness.models.student import MonoStudent
from harness.host.manager import PluginHost
from stereodistill_plugins import adu
from harness.distill.flips import flip_where as flip_samples
from harness.distill.flips import partner_on_left as mirrored_only
from stereodistill_plugins.adu.strategy import ADUStrategy, hard_region_weight, resp_term

H, W = 64, 96


def make_models(seed=0):
    torch.manual_seed(seed)
    student = MonoStudent(num_layers=18, base_width=8)
    teacher = StereoTeacher(max_disp=16, base_width=8)
    teacher.eval()
    return student, teacher


def make_batch(b=2, flipped=None, swapped=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[40.0, 0.0, 47.5], [0.0, 40.0, 31.5], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    depth = 5 + 40 * torch.rand(b, 1, H, W, generator=g)
    return {
        "image": torch.rand(b, 3, H, W, generator=g),
        "image_right": torch.rand(b, 3, H, W, generator=g),
        "K": K,
        "baseline": torch.full((b,), 0.54),
        "depth_gt": depth,
        "depth_gt_mask": depth > 10,
        "meta": {
            "flipped": torch.tensor(flipped if flipped is not None else [False] * b),
            "swapped": torch.tensor(swapped if swapped is not None else [False] * b),
        },
    }


def built(**kw):
    student, teacher = make_models()
    strat = ADUStrategy(**kw)
    strat.build(student, teacher)
    return strat, student, teacher


def step(strat, student, teacher, batch):
    s_out = strat.student_forward(student, batch)
    t_out = strat.teacher_forward(teacher, batch, s_out)
    return strat.compute_loss(batch, s_out, t_out, StepContext()), s_out, t_out


# ------------------------------------------------------------------------------------------
def test_declarations_and_build():
    strat, student, teacher = built()
    assert strat.teacher_mode == "frozen" and strat.eval_scale_policy == "none"
    assert type(strat).predict is Strategy.predict  # evaluated student = plain resnet student
    assert strat.required_batch_keys == {"image", "image_right", "meta", "depth_gt", "depth_gt_mask"}
    assert strat.student_needs.features == {"dec_s8", "dec_s16", "enc_s32", "dec_s1"}
    assert strat.teacher_needs.features == {"dec_s8", "dec_s16", "dec_s32"}
    assert set(strat.adapters) == {"dec_s8", "dec_s16", "enc_s32"}
    assert strat.adapters["enc_s32"].conv.in_channels == 64
    assert strat.adapters["enc_s32"].conv.out_channels == 32
    assert strat.adapters["dec_s8"].conv.out_channels == 16
    assert strat.unc_head.conv1.in_channels == student.dec_channels[1]
    assert ADUStrategy(loss_weights={"gt": 0.0}).required_batch_keys == {"image", "image_right", "meta"}


def test_bad_configuration_is_refused():
    student, teacher = make_models()
    with pytest.raises(HarnessError, match="strides differ"):
        ADUStrategy(feature_pairs={"dec_s8": "dec_s16"}).build(student, teacher)
    with pytest.raises(HarnessError, match="feature_pairs"):
        ADUStrategy(feature_pairs={"dec_s32": "dec_s32"}).build(student, teacher)
    with pytest.raises(HarnessError, match="uncertainty_mode"):
        ADUStrategy(uncertainty_mode="suppress")
    with pytest.raises(HarnessError, match="focal_mode"):
        ADUStrategy(focal_mode="x")
    with pytest.raises(HarnessError, match="unknown term"):
        ADUStrategy(loss_weights={"photo": 1.0})


def test_terms_total_and_gradients():
    strat, student, teacher = built()
    strat.on_epoch_start(1)  # after warm-up: w from the head is used
    loss, _, t_out = step(strat, student, teacher, make_batch())
    assert set(loss.terms) == {"gt", "feat", "resp", "unc"}
    assert loss.total.item() == pytest.approx(sum(v.item() for v in loss.terms.values()), rel=1e-5)
    assert all(torch.isfinite(v) for v in loss.terms.values())
    assert not any(t.requires_grad for t in t_out.features.values()) and not t_out.depth[0].requires_grad
    loss.total.backward()
    # the frozen teacher receives no gradient, even with requires_grad left on
    assert all(p.grad is None for p in teacher.parameters())
    for name, p in strat.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_weight_is_stop_gradient_head_learns_only_from_unc():
    strat, student, teacher = built(loss_weights={"unc": 0.0})
    strat.on_epoch_start(1)
    loss, _, _ = step(strat, student, teacher, make_batch())
    assert "unc" not in loss.terms
    loss.total.backward()
    assert all(p.grad is None for p in strat.unc_head.parameters())
    assert all(p.grad is not None for p in strat.adapters.parameters())


def test_unc_detach_input_keeps_nll_out_of_the_student():
    strat, student, teacher = built(loss_weights={"gt": 0.0, "feat": 0.0, "resp": 0.0, "unc": 1.0},
                                    unc_detach_input=True)
    loss, _, _ = step(strat, student, teacher, make_batch())
    loss.total.backward()
    assert all(p.grad is None for p in student.parameters())
    assert all(p.grad is not None for p in strat.unc_head.parameters())
    strat2, student2, teacher2 = built(loss_weights={"gt": 0.0, "feat": 0.0, "resp": 0.0, "unc": 1.0})
    step(strat2, student2, teacher2, make_batch())[0].total.backward()
    assert any(p.grad is not None for p in student2.parameters())


def test_warmup_uses_unit_weight_then_the_heads_weight():
    strat, student, teacher = built()
    batch = make_batch()
    strat.on_epoch_start(0)
    assert not strat.weighting_active
    loss0, s_out, t_out = step(strat, student, teacher, batch)
    d_s, d_t = s_out["clean"].depth[0], t_out.depth[0]
    assert loss0.terms["resp"].item() == pytest.approx(resp_term(d_s, d_t).item(), rel=1e-6)
    strat.on_epoch_start(1)
    assert strat.weighting_active
    with torch.no_grad():
        strat.unc_head.conv2.weight.normal_(std=0.5)  # make w clearly non-uniform
    loss1, s_out, t_out = step(strat, student, teacher, batch)
    s = strat.unc_head(s_out["clean"].features["dec_s1"])
    w = hard_region_weight(s)
    assert float(w.min()) != pytest.approx(float(w.max()))
    expected = resp_term(s_out["clean"].depth[0], t_out.depth[0], w).item()
    assert loss1.terms["resp"].item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------
# flips (docs/methods.md 1.3)
# ------------------------------------------------------------------------------------------
def test_mirrored_only_reads_meta():
    b = make_batch(3, flipped=[True, True, False], swapped=[False, True, False])
    assert mirrored_only(b, 3).tolist() == [True, False, False]
    assert mirrored_only({"image": None}, 2).tolist() == [False, False]
    x = torch.arange(6.0).view(2, 1, 1, 3)
    assert flip_samples(x, torch.tensor([False, True])).flatten().tolist() == [0, 1, 2, 5, 4, 3]


def test_teacher_sees_canonical_pairs_and_outputs_are_mirrored_back():
    strat, student, teacher = built()
    canon = make_batch(3)
    flip = torch.tensor([True, True, False])
    batch = dict(canon)
    batch["image"] = flip_samples(canon["image"], flip)
    batch["image_right"] = flip_samples(canon["image_right"], flip)
    K = canon["K"].clone()
    K[:2, 0, 2] = W - 1 - K[:2, 0, 2]
    batch["K"] = K
    # sample 0: mirrored only -> must be un-mirrored; sample 1: "swapped" (treated as canonical)
    batch["meta"] = {"flipped": torch.tensor([True, True, False]), "swapped": torch.tensor([False, True, False])}
    seen = {}

    class Recorder(torch.nn.Module):
        def feature_specs(self):
            return teacher.feature_specs()

        def forward(self, b, student_out=None):
            seen.update(b)
            return teacher(b)

    out = strat.teacher_forward(Recorder(), batch, {})
    torch.testing.assert_close(seen["image"][0], canon["image"][0])
    torch.testing.assert_close(seen["image_right"][0], canon["image_right"][0])
    torch.testing.assert_close(seen["image"][1], batch["image"][1])  # swapped pair passes as is
    assert seen["K"][0, 0, 2].item() == pytest.approx(47.5) and seen["K"][1, 0, 2].item() == pytest.approx(W - 1 - 47.5)
    with torch.no_grad():
        ref0 = teacher({k: (v[:1] if torch.is_tensor(v) else v) for k, v in canon.items()})
    torch.testing.assert_close(out.depth[0][0], ref0.depth[0][0].flip(-1), rtol=1e-4, atol=1e-4)
    for name in ("dec_s8", "dec_s16", "dec_s32"):
        torch.testing.assert_close(out.features[name][0], ref0.features[name][0].flip(-1), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        ref2 = teacher(canon)
    torch.testing.assert_close(out.depth[0][2], ref2.depth[0][2], rtol=1e-4, atol=1e-4)


def test_feat_kd_on_flipped_switch():
    batch = make_batch(2, flipped=[True, True], swapped=[False, False])
    on, s1, t1 = built()
    off, s2, t2 = built(feat_kd_on_flipped=False)
    assert step(on, s1, t1, batch)[0].terms["feat"].item() > 0
    assert step(off, s2, t2, batch)[0].terms["feat"].item() == 0.0


def test_alternative_modes_run():
    for kw in ({"uncertainty_mode": "attenuate"}, {"focal_mode": "depth_range"}, {"gt_scales": (0,)}):
        strat, student, teacher = built(**kw)
        strat.on_epoch_start(1)
        loss, _, _ = step(strat, student, teacher, make_batch())
        assert torch.isfinite(loss.total)
        loss.total.backward()


# ------------------------------------------------------------------------------------------
# registration and config
# ------------------------------------------------------------------------------------------
def test_registered_with_config_that_builds():
    host = PluginHost(extra_plugins=[adu])
    entry = host.catalog.get("methods", "adu")
    cfg = build_run_config(method="adu", method_config=entry.extra["config"])
    spec = section(cfg, "method")
    assert spec.pop("type") == "adu"
    strat = host.catalog.build("methods", "adu", **spec)
    assert isinstance(strat, ADUStrategy)
    assert strat.loss_weights == {"gt": 1.0, "feat": 1.0, "resp": 1.0, "unc": 0.1}
    assert strat.feature_pairs == {"dec_s8": "dec_s8", "dec_s16": "dec_s16", "enc_s32": "dec_s32"}
    assert strat.gt_scales == (0, 1, 2, 3) and strat.uncertainty_mode == "emphasise"
    assert strat.focal_mode == "focal" and strat.feat_kd_on_flipped and strat.warmup_epochs == 1
    with pytest.raises(HarnessError):
        host.catalog.build("methods", "adu", focal="focal")  # misspelt option


def test_lr_consistency_golden():
    from stereodistill_plugins.adu.strategy import lr_consistent

    d_l = torch.full((1, 1, 4, 12), 2.0)
    d_r = torch.full((1, 1, 4, 12), 2.0)
    d_r[..., 6:] = 5.0  # right pixels 6.. disagree: left pixels 8.. (matched at x - 2) fail
    valid = lr_consistent(d_l, d_r, threshold=1.0)
    assert valid[0, 0, 0].tolist() == [1.0] * 8 + [0.0] * 4
    assert lr_consistent(d_l, d_r, threshold=3.5).min() == 1.0


class _DispTeacher(torch.nn.Module):
    """A frozen 'stereo teacher' whose disparity is 3 px where the reference image is bright and
    1 px elsewhere: left-right consistent only where both views agree on the brightness."""

    def forward(self, b, student_out=None):
        from harness import DepthOutput

        disp = torch.where(b["image"][:, :1] > 0.5, 3.0, 1.0)
        return DepthOutput(disp={0: disp}, depth={0: 20.0 / disp}, disp_units="px", depth_kind="metric")


@pytest.mark.parametrize("flipped", [False, True])
def test_resp_mask_lr_keeps_only_consistent_teacher_pixels(flipped):
    batch = make_batch(1, flipped=[flipped], swapped=[False])
    left = torch.zeros(1, 3, H, W)
    left[..., :, : W // 2] = 1.0  # bright left half in the left view, dark in the right view
    batch["image"], batch["image_right"] = left, torch.zeros(1, 3, H, W)
    strat = ADUStrategy(resp_mask="lr")
    out = strat.teacher_forward(_DispTeacher(), batch, {})
    valid = out.aux["lr_valid"]
    # the reference view's bright half says 3 px, the dark partner view says 1 px -> inconsistent
    # there; the dark half is consistent (1 px in both views) away from the border. The mask is
    # in the batch's frame also for a mirrored sample (the teacher saw the canonical pair)
    assert valid[..., : W // 2].max() == 0 and valid[..., W // 2 + 3: W - 3].min() == 1
    # resp ignores the inconsistent pixels: a student wrong only there has resp = 0
    d_t = out.depth[0]
    d_s = torch.where(valid > 0, d_t, d_t * 2.0).requires_grad_(True)
    from stereodistill_plugins.adu.strategy import resp_term

    assert resp_term(d_s, d_t, valid).item() == 0.0
    assert resp_term(d_s, d_t, None).item() > 0.0
    with pytest.raises(HarnessError, match="resp_mask"):
        ADUStrategy(resp_mask="conf")


def test_resp_mask_lr_in_a_training_step():
    strat, student, teacher = built(resp_mask="lr")
    loss, _, t_out = step(strat, student, teacher, make_batch(2))
    assert t_out.aux["lr_valid"].shape == (2, 1, H, W) and torch.isfinite(loss.total)
    assert set(loss.terms) == {"gt", "feat", "resp", "unc"}
