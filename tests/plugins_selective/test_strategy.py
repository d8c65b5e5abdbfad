"""The ``selective`` strategy: construction, teacher canonicalisation, gradients, prediction,
precomputed proxies and the config hook."""
from __future__ import annotations

import pytest
import torch

import stereodistill_plugins.selective as plugin
from harness import HarnessError, RunInfo, StepContext
from harness.models.sgbm import SGBMTeacher
from harness.models.stereo_teacher import StereoTeacher
from harness.models.student import MonoStudent
from harness.host.manager import PluginHost
from harness.distill.flips import partner_on_left
from stereodistill_plugins.selective.strategy import SelectiveStrategy

B, H, W = 2, 64, 128
TERMS = {"photo", "smooth", "proxy", "mask", "ts"}


def make_batch(flipped=(False, True), seed=0):
    g = torch.Generator().manual_seed(seed)
    b = len(flipped)
    K = torch.tensor([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]]).expand(b, 3, 3).clone()
    return dict(
        image=torch.rand(b, 3, H, W, generator=g), image_right=torch.rand(b, 3, H, W, generator=g),
        K=K, baseline=torch.full((b,), 0.54),
        meta=dict(flipped=torch.tensor(flipped), swapped=torch.zeros(b, dtype=torch.bool), side=["l"] * b),
    )


def models(teacher="stereo"):
    torch.manual_seed(0)
    student = MonoStudent(base_width=8)
    t = StereoTeacher(max_disp=32, base_width=8) if teacher == "stereo" else SGBMTeacher(max_disp=32)
    return student, t.eval().requires_grad_(False)


def step(strategy, student, teacher, batch):
    s_out = strategy.student_forward(student, batch)
    t_out = strategy.teacher_forward(teacher, batch, s_out)
    return s_out, t_out, strategy.compute_loss(batch, s_out, t_out, StepContext())


# ------------------------------------------------------------------------------------------
def test_partner_side_truth_table():
    batch = make_batch((False, True, True, False))
    batch["meta"]["swapped"] = torch.tensor([False, False, True, False])
    batch["meta"]["side"] = ["l", "l", "l", "r"]
    assert partner_on_left(batch).tolist() == [False, True, False, True]
    assert partner_on_left({"image": torch.zeros(3, 3, 4, 4)}).tolist() == [False] * 3


def test_build_widens_decoder_and_creates_owned_modules():
    student, teacher = models()
    s = SelectiveStrategy()
    assert s.teacher_mode == "frozen" and s.precompute == {} and s.eval_scale_policy == "none"
    assert "proxy_disp" not in s.required_batch_keys
    s.build(student, teacher)
    assert student.extra_channels == {16: 2, 8: 2, 4: 2, 2: 2, 1: 2}
    assert s.ts_kind == "feature" and set(s.adapters) == {"enc_s4", "enc_s8"}
    assert s.encoder_pass == "shared"
    own = sum(p.numel() for p in s.parameters())
    assert own > 0 and len(s.param_groups(student, teacher, s.stages()[0])) == 2


def test_online_loss_has_every_term_and_teacher_stays_frozen():
    student, teacher = models()
    s = SelectiveStrategy()
    s.build(student, teacher)
    _, t_out, loss = step(s, student, teacher, make_batch())
    assert set(loss.terms) == TERMS and torch.isfinite(loss.total)
    loss.total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in s.adapters.parameters())
    assert s.mask_decoder.heads["0"].conv.weight.grad.abs().sum() > 0
    assert student.encoder.conv1.weight.grad.abs().sum() > 0


def test_photo_term_of_the_step_is_the_reference_photo_loss():
    from stereodistill_plugins.selective.strategy import photo_loss

    student, teacher = models()
    s = SelectiveStrategy()
    s.build(student, teacher)
    batch = make_batch()
    s_out, _, loss = step(s, student, teacher, batch)
    depths = [torch.nn.functional.interpolate(s_out["clean"].depth[i], size=(H, W), mode="bilinear",
                                              align_corners=False) if i else s_out["clean"].depth[0]
              for i in (0, 1, 2, 3)]
    sign = torch.tensor([1.0, -1.0]).view(-1, 1, 1, 1)  # the second sample is mirrored
    ref = photo_loss(batch["image"], batch["image_right"], depths, s.focal_baseline(batch), sign)
    torch.testing.assert_close(loss.terms["photo"], ref.detach())


def test_teacher_runs_on_the_canonical_pair_and_outputs_are_mirrored_back():
    student, teacher = models()
    s = SelectiveStrategy()
    s.build(student, teacher)
    batch = make_batch((False, True))
    t_out = s.teacher_forward(teacher, batch, {})
    flip = lambda t: torch.flip(t, dims=[-1])  # noqa: E731
    canon = dict(batch, image=flip(batch["image"][1:]), image_right=flip(batch["image_right"][1:]),
                 K=batch["K"][1:], baseline=batch["baseline"][1:])
    ref = teacher(canon)
    close = dict(rtol=1e-4, atol=1e-4)  # batch of 2 vs batch of 1: float summation order only
    torch.testing.assert_close(t_out.disp[0][1:], flip(ref.disp[0]), **close)
    torch.testing.assert_close(t_out.features["dec_s8"][1:], flip(ref.features["dec_s8"]), **close)
    ref0 = teacher(dict(batch, image=batch["image"][:1], image_right=batch["image_right"][:1],
                        K=batch["K"][:1], baseline=batch["baseline"][:1]))
    torch.testing.assert_close(t_out.disp[0][:1], ref0.disp[0], **close)


def test_masks_get_no_depth_gradient_by_default_and_straight_through_when_joint():
    batch = make_batch()
    for joint in (False, True):
        student, teacher = models()
        s = SelectiveStrategy(joint_mask_grad=joint, loss_weights={"mask": 0.0, "ts": 0.0})
        s.build(student, teacher)
        # the widened decoder inputs start at zero weight (no gradient to the masks yet); give
        # them the values a trained network would have
        for stage in student.stages.values():
            torch.nn.init.normal_(stage.conv1.conv.conv.weight, std=0.1)
        _, _, loss = step(s, student, teacher, batch)
        assert "mask" not in loss.terms
        loss.total.backward()
        g = s.mask_decoder.heads["0"].conv.weight.grad
        assert (g is not None and g.abs().sum() > 0) == joint


def test_sgbm_teacher_uses_confidence_and_response_fallback():
    student, teacher = models("sgbm")
    s = SelectiveStrategy()
    s.build(student, teacher)
    assert s.ts_kind == "response" and len(s.adapters) == 0
    _, t_out, loss = step(s, student, teacher, make_batch())
    assert "confidence" in t_out.aux and set(loss.terms) == TERMS
    with pytest.raises(HarnessError, match="ts_mode='feature'"):
        SelectiveStrategy(ts_mode="feature").build(*models("sgbm"))


def test_precomputed_proxies_from_the_batch():
    student, _ = models()
    s = SelectiveStrategy(proxy_source="precomputed", proxy_conf=True)
    assert s.teacher_mode == "precomputed"
    assert s.precompute == {"proxy_disp": "disp", "proxy_conf": "aux:confidence"}
    assert not set(s.precompute) & set(s.required_batch_keys)
    s.build(student, None)
    assert s.ts_kind == "response"
    batch = make_batch()
    batch["proxy_disp"] = torch.full((B, 1, H, W), 3.0)
    batch["proxy_conf"] = torch.ones(B, 1, H, W)
    s_out = s.student_forward(student, batch)
    assert s.teacher_forward(None, batch, s_out) is None
    loss = s.compute_loss(batch, s_out, None, StepContext())
    assert set(loss.terms) == TERMS
    # zero confidence everywhere: no valid proxy -> no proxy / ts terms
    batch["proxy_conf"] = torch.zeros(B, 1, H, W)
    loss = s.compute_loss(batch, s.student_forward(student, batch), None, StepContext())
    assert loss.terms["proxy"] == 0 and loss.terms["ts"] == 0
    assert SelectiveStrategy(proxy_source="precomputed", proxy_conf=False).precompute == {"proxy_disp": "disp"}
    with pytest.raises(HarnessError, match="no 'proxy_disp'"):
        s.compute_loss(make_batch(), s_out, None, StepContext())


def test_predict_is_the_mask_conditioned_student_and_both_encoder_passes_agree():
    student, teacher = models()
    s = SelectiveStrategy()
    s.build(student, teacher)
    student.train()
    image = make_batch()["image"]
    d = s.predict(student, image)
    assert d.shape == (B, 1, H, W) and student.training  # mode restored
    with torch.no_grad():
        student.eval()
        torch.testing.assert_close(s._run_student(student, image).depth[0], d)
        s.encoder_pass = "twice"
        torch.testing.assert_close(s._run_student(student, image).depth[0], d)
    with pytest.raises(ValueError, match="need cond"):
        student.predict(image)  # the widened decoder cannot run without masks


def test_option_validation():
    with pytest.raises(HarnessError, match="proxy_source"):
        SelectiveStrategy(proxy_source="disk")
    with pytest.raises(HarnessError, match="mask_targets='B'"):
        SelectiveStrategy(proxy_source="precomputed", mask_targets="B")
    with pytest.raises(HarnessError, match="scales must contain 0"):
        SelectiveStrategy(scales=(1, 2))
    with pytest.raises(TypeError):
        SelectiveStrategy(no_such_option=1)


def test_baseline_norm_sets_stereo_factor_policy_and_checks_the_batch():
    s = SelectiveStrategy(baseline_norm=0.1)
    assert s.eval_scale_policy == "stereo_factor"
    batch = make_batch()
    torch.testing.assert_close(s.focal_baseline(batch).flatten(), torch.full((B,), 6.0))
    batch["baseline"] = torch.full((B,), 0.3)
    with pytest.raises(HarnessError, match="eval_baseline"):
        s.focal_baseline(batch)


def test_run_start_resolves_confidence_and_the_stereo_factor_reaches_the_protocol():
    s = SelectiveStrategy(proxy_source="precomputed", proxy_conf="auto", baseline_norm=0.1, eval_baseline=0.54)
    s.on_run_start(RunInfo(stages=tuple(s.stages()), stage_epochs=(1,), teacher="sgbm"))
    assert s.proxy_conf is True and s.precompute == {"proxy_disp": "disp", "proxy_conf": "aux:confidence"}
    assert s.eval_scale_policy == "stereo_factor" and s.eval_stereo_factor == pytest.approx(5.4)
    s = SelectiveStrategy(proxy_source="precomputed", proxy_conf="auto")
    s.on_run_start(RunInfo(stages=tuple(s.stages()), stage_epochs=(1,), teacher="stereo"))
    assert s.proxy_conf is False and "proxy_conf" not in s.precompute
    assert SelectiveStrategy().eval_stereo_factor is None


def test_registered_through_the_plugin_host():
    host = PluginHost(extra_plugins=[plugin])
    entry = host.catalog.get("methods", "selective")
    assert entry.extra["config"].endswith("selective_resnet18_synth.py")
    strategy = host.catalog.build("methods", "selective", proxy_source="online")
    assert isinstance(strategy, SelectiveStrategy)
    assert strategy.default_loss_weights == {"photo": 1.0, "smooth": 1e-3, "proxy": 1.0, "mask": 0.1, "ts": 0.1}
