"""The ``recursive`` strategy: stages, named terms per stage, gradients, flip fusion, its config under every profile."""
from __future__ import annotations

import pytest
import torch

from harness import HarnessError, StepContext
from harness.config.loader import CONFIG_DIR, build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.train import stage_epochs
from stereodistill_plugins.recursive.losses import (
    feature_loss,
    mono_self_terms,
    nonlocal_loss,
    output_loss,
    scale_pyramid,
    stereo_self_terms,
)
from stereodistill_plugins.recursive.models import RSDMonoNet, RSDStereoNet
from stereodistill_plugins.recursive.modules import edge_aware_flip_fusion
from stereodistill_plugins.recursive.strategy import (
    DISTILL_WEIGHTS,
    FEATURE_NAMES,
    JOINT_WEIGHTS,
    RecursiveStrategy,
)

H, W = 64, 96
SELF = {"mono_ap", "mono_lr", "mono_sm", "stereo_ap", "stereo_lr", "stereo_sm"}


def make_batch(b=2, flipped=(False, False), swapped=(False, False)):
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[50.0, 0, 47.5], [0, 50, 31.5], [0, 0, 1]]).expand(b, 3, 3).clone()
    return {
        "image": torch.rand(b, 3, H, W, generator=g),
        "image_right": torch.rand(b, 3, H, W, generator=g),
        "K": K,
        "baseline": torch.full((b,), 0.54),
        "meta": {"flipped": torch.tensor(flipped), "swapped": torch.tensor(swapped)},
    }


def setup(**kw):
    torch.manual_seed(0)
    strategy = RecursiveStrategy(augment=False, **kw)
    student, teacher = RSDMonoNet(base_width=8), RSDStereoNet(base_width=8)
    strategy.build(student, teacher)
    return strategy, student, teacher


def step(strategy, student, teacher, batch, stage):
    s_out = strategy.student_forward(student, batch)
    t_out = strategy.teacher_forward(teacher, batch, s_out)
    return s_out, t_out, strategy.compute_loss(batch, s_out, t_out, StepContext(stage=stage))


def test_stages_split_epochs_and_set_distill_lr_batch():
    s = RecursiveStrategy(distill_lr=5e-4, distill_batch_size=4)
    joint, distill = s.stages()
    assert (joint.name, distill.name) == ("joint", "distill")
    assert joint.train == {"student", "teacher"} and distill.train == {"student", "teacher", "strategy"}
    assert (stage_epochs(joint, 6), stage_epochs(distill, 6)) == (3, 3)
    assert (distill.lr, distill.batch_size, distill.reset_schedule) == (5e-4, 4, True)
    assert joint.lr is None and joint.batch_size is None
    assert [st.name for st in RecursiveStrategy(joint_fraction=1.0).stages()] == ["joint"]
    assert RecursiveStrategy(distill_train_teacher=False).stages()[1].train == {"student", "strategy"}
    assert RecursiveStrategy.teacher_mode == "online"
    with pytest.raises(HarnessError, match="unknown term"):
        RecursiveStrategy(loss_weights={"photo": 1.0})


def test_joint_stage_terms_and_weighted_total():
    strategy, student, teacher = setup()
    batch = make_batch()
    s_out, t_out, loss = step(strategy, student, teacher, batch, "joint")
    assert set(loss.terms) == SELF  # no distillation in stage 1
    lp, rp = scale_pyramid(batch["image"], 4), scale_pyramid(batch["image_right"], 4)
    mono = mono_self_terms(s_out["clean"].disp, lp, rp)
    stereo = stereo_self_terms(RSDStereoNet.iteration_disps(t_out), t_out.disp, lp, rp)
    for k, v in mono.items():
        assert loss.terms[f"mono_{k}"].item() == pytest.approx(JOINT_WEIGHTS[f"mono_{k}"] * v.item(), rel=1e-5)
    for k, v in stereo.items():
        assert loss.terms[f"stereo_{k}"].item() == pytest.approx(JOINT_WEIGHTS[f"stereo_{k}"] * v.item(), rel=1e-5)
    assert loss.total.item() == pytest.approx(sum(v.item() for v in loss.terms.values()), rel=1e-6)


def test_distill_stage_terms_golden_against_the_loss_functions():
    strategy, student, teacher = setup()
    batch = make_batch()
    s_out, t_out, loss = step(strategy, student, teacher, batch, "distill")
    assert set(loss.terms) == SELF | {"out", "feat", "nl"}
    m = s_out["clean"]
    assert loss.terms["out"].item() == pytest.approx(DISTILL_WEIGHTS["out"] * output_loss(m.disp, t_out.disp).item())
    assert loss.terms["feat"].item() == pytest.approx(
        DISTILL_WEIGHTS["feat"] * feature_loss(m.features, t_out.features, FEATURE_NAMES).item())
    assert loss.terms["nl"].item() == pytest.approx(
        DISTILL_WEIGHTS["nl"] * nonlocal_loss(m.aux, t_out.aux, ("affinity_s16", "affinity_s8")).item())
    # configured weights override the defaults, per stage; 0 switches a term off
    s2 = RecursiveStrategy(augment=False, loss_weights={"nl": 0.0, "out": 2.0}, joint_loss_weights={"mono_sm": 0.0})
    s2.build(student, teacher)
    l2 = s2.compute_loss(batch, s_out, t_out, StepContext(stage="distill"))
    assert "nl" not in l2.terms and l2.terms["out"].item() == pytest.approx(2 * loss.terms["out"].item())
    assert "mono_sm" not in s2.compute_loss(batch, s_out, t_out, StepContext(stage="joint")).terms


def _grads(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_gradients_output_space_never_reaches_the_teacher():
    only = {k: 0.0 for k in DISTILL_WEIGHTS}
    strategy, student, teacher = setup(loss_weights=dict(only, out=1.0))
    _, _, loss = step(strategy, student, teacher, make_batch(), "distill")
    loss.total.backward()
    assert _grads(student) > 0 and _grads(teacher) == 0


@pytest.mark.parametrize("stop", [True, False])
def test_gradients_feature_space_stop_grad_flag(stop):
    only = {k: 0.0 for k in DISTILL_WEIGHTS}
    strategy, student, teacher = setup(loss_weights=dict(only, feat=1.0), feat_stop_grad=stop)
    _, _, loss = step(strategy, student, teacher, make_batch(), "distill")
    loss.total.backward()
    assert _grads(student) > 0
    assert (_grads(teacher) == 0) == stop


def test_gradients_stereo_terms_train_the_teacher_and_reach_the_student():
    only = {k: 0.0 for k in JOINT_WEIGHTS}
    strategy, student, teacher = setup(joint_loss_weights=dict(only, stereo_ap=1.0))
    _, _, loss = step(strategy, student, teacher, make_batch(), "joint")
    loss.total.backward()
    assert _grads(teacher) > 0 and _grads(student) > 0  # through the Stereo-Net's input [C]


def test_training_step_records_calibration_and_refuses_mirrored_only_samples():
    strategy, student, teacher = setup()
    step(strategy, student, teacher, make_batch(), "joint")
    assert student.focal_baseline.item() == pytest.approx(50 * 0.54 / W)
    assert teacher.focal_baseline.item() == pytest.approx(50 * 0.54 / W)
    step(strategy, student, teacher, make_batch(flipped=(True, False), swapped=(True, False)), "joint")  # swap: ok
    with pytest.raises(HarnessError, match="flip_mode='swap'"):
        step(strategy, student, teacher, make_batch(flipped=(True, False)), "joint")


def test_augmentation_only_in_training_and_same_pair_for_both_nets():
    torch.manual_seed(0)
    strategy = RecursiveStrategy(augment=True, augment_prob=1.0)
    student, teacher = RSDMonoNet(base_width=8), RSDStereoNet(base_width=8)
    strategy.build(student, teacher)
    batch = make_batch()
    strategy.student_forward(student, batch)
    assert not torch.equal(batch["rsd_left"], batch["image"])
    student.eval()
    batch = make_batch()
    strategy.student_forward(student, batch)
    assert torch.equal(batch["rsd_left"], batch["image"])


@pytest.mark.parametrize("fusion", ["none", "mean", "edge"])
def test_predict_flip_fusion_and_metric_depth(fusion):
    strategy, student, teacher = setup(flip_fusion=fusion)
    student.observe_calibration(make_batch()["K"], torch.full((2,), 0.54), W)
    img = make_batch()["image"]
    student.train()
    depth = strategy.predict(student, img)
    assert student.training  # mode restored
    with torch.no_grad():
        student.eval()
        d = student(img).disp[0][:, :1]
        d_f = torch.flip(student(torch.flip(img, dims=[-1])).disp[0][:, :1], dims=[-1])
    if fusion == "none":
        want = d
    elif fusion == "mean":
        from harness.eval.protocol import flip_post_process

        want = flip_post_process(d, torch.flip(d_f, dims=[-1]))
    else:
        want = edge_aware_flip_fusion(d, d_f)
    assert torch.allclose(depth, student.focal_baseline.item() / want, rtol=1e-4)


def test_teacher_predict_runs_the_stereo_net_on_the_students_output():
    strategy, student, teacher = setup()
    batch = make_batch()
    depth = strategy.teacher_predict(teacher, student, batch)
    with torch.no_grad():
        want = teacher(batch, student(batch["image"])).depth[0]
    assert depth.shape == (2, 1, H, W) and torch.allclose(depth, want)


def test_build_refuses_other_models_and_adapts_widths():
    s = RecursiveStrategy()
    with pytest.raises(HarnessError, match="rsd_stereo"):
        s.build(RSDMonoNet(base_width=8), None)
    from harness.models.stereo_teacher import StereoTeacher

    with pytest.raises(HarnessError, match="rsd_stereo"):
        s.build(RSDMonoNet(base_width=8), StereoTeacher(max_disp=16, base_width=8))
    s.build(RSDMonoNet(base_width=8), RSDStereoNet(base_width=16))  # different widths: 1x1 adapters
    assert set(s.adapters) == set(FEATURE_NAMES)


@pytest.mark.parametrize("profile", [None, "synth_small", "quick", "kitti"])
def test_the_rsd_models_and_swap_flips_hold_under_every_profile(profile):
    core = PluginHost().catalog
    cfg = build_run_config(method="recursive", method_config=core.get("methods", "recursive").extra["config"],
                           config_file=str(CONFIG_DIR / "synth_small.py") if profile == "synth_small" else None,
                           dataset_config=core.get("datasets", "kitti").extra["config"] if profile == "kitti" else None,
                           quick=profile == "quick")
    assert cfg.student.type == "rsd_mono" and cfg.teacher.type == "rsd_stereo"
    assert "num_layers" not in cfg.student and "max_disp" not in cfg.teacher
    assert cfg.data.train.flip_mode == "swap"


@pytest.mark.parametrize("teacher_better", [True, False])
def test_teacher_gate_refuses_to_distil_from_a_worse_stereo_net(teacher_better, capsys):
    strategy, student, teacher = setup()
    stage_joint, stage_distill = strategy.stages()
    batch = make_batch()
    calls = []

    def score_val(predict_batch):  # stands in for the harness's val scoring: who is asked, in order
        depth = predict_batch(batch)
        assert depth.shape == (2, 1, H, W)
        calls.append(len(calls))
        student_abs, teacher_abs = 0.20, (0.15 if teacher_better else 0.25)
        return {"abs_rel": student_abs if len(calls) == 1 else teacher_abs}

    strategy.on_stage_end(stage_distill, student, teacher, score_val)  # only the joint stage is gated
    assert calls == [] and strategy.notes == {}
    strategy.on_stage_end(stage_joint, student, teacher, score_val)
    gate = strategy.notes["teacher_gate"]
    assert gate["distilled"] is teacher_better
    assert gate["teacher_val_abs_rel"] == (0.15 if teacher_better else 0.25)
    _, _, loss = step(strategy, student, teacher, batch, "distill")
    err = capsys.readouterr().err
    if teacher_better:
        assert {"out", "feat", "nl"} <= set(loss.terms) and "warning" not in gate and err == ""
    else:
        assert not {"out", "feat", "nl"} & set(loss.terms)  # the distillation terms are off
        assert SELF <= set(loss.terms)
        assert err.count("\n") == 1 and "does not beat the Mono-Net" in err and gate["warning"] in err
    off = RecursiveStrategy(augment=False, teacher_gate=False)
    off.on_stage_end(stage_joint, student, teacher, score_val)
    assert off.notes == {}


def test_teacher_gate_is_silent_when_nothing_is_distilled(capsys):
    off = dict(stereo_ap=0.0, stereo_lr=0.0, stereo_sm=0.0, out=0.0, feat=0.0, nl=0.0)
    strategy, student, teacher = setup(joint_loss_weights=off, loss_weights=off)  # the control
    strategy.on_stage_end(strategy.stages()[0], student, teacher, lambda f: pytest.fail("scored"))
    assert strategy.notes == {} and capsys.readouterr().err == ""
