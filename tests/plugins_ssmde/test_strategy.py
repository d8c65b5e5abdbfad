"""The SSMDEStrategy step: its terms per stage, gradients, options and registration."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import stereodistill_plugins.ssmde as plugin
from harness import HarnessError, StepContext
from harness.config.loader import load_file
from harness.host.manager import PluginHost
from stereodistill_plugins.ssmde import SSMDEStrategy

from .helpers import make, tiny_batch


def step(strategy, student, teacher, batch):
    s_out = strategy.student_forward(student, batch)
    t_out = strategy.teacher_forward(teacher, batch, s_out)
    return strategy.compute_loss(batch, s_out, t_out, StepContext()), s_out, t_out


def test_declarations():
    s = SSMDEStrategy()
    assert s.required_batch_keys == frozenset({"image", "frames", "K"})
    assert "pseudo_depth" not in s.required_batch_keys and s.precompute == {"pseudo_depth": "depth"}
    assert s.teacher_mode == "snapshot" and s.eval_scale_policy == "median"
    assert s.default_loss_weights == {"photo": 1.0, "geo": 0.1, "pseudo": 1.0, "kd": 1.0}
    assert [(st.name, st.epochs_fraction) for st in s.stages()] == [("A", 0.5), ("B", 0.5)]
    assert SSMDEStrategy(teacher_update="ema").teacher_mode == "ema"
    assert SSMDEStrategy(pseudo=False).precompute == {}


def test_student_forward_splits_the_three_frames():
    student, s = make()
    batch = tiny_batch()
    out = s.student_forward(student, batch)
    assert set(out) == {"clean", "prev", "next"}
    assert set(out["clean"].depth) == {0, 1, 2, 3}
    student.eval()
    with torch.no_grad():
        ref = student(batch["frames"][1]).depth[0]
        assert torch.allclose(s.student_forward(student, batch)["next"].depth[0], ref, atol=1e-5)


def test_stage_terms_and_gradients():
    student, s = make(total_epochs=4)
    batch = tiny_batch()
    stage_a, stage_b = s.stages()
    assert s.on_stage_start(stage_a, student, None) is None
    s.on_epoch_start(0)
    loss, _, t_out = step(s, student, None, batch)
    assert t_out is None and set(loss.terms) == {"photo", "geo", "pseudo"}
    assert all(torch.isfinite(v) for v in loss.terms.values())
    assert loss.total.item() == pytest.approx(sum(v.item() for v in loss.terms.values()), rel=1e-5)
    loss.total.backward()
    for name, module in (("student", student), ("pose", s.pose_net)):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name

    teacher = s.on_stage_start(stage_b, student, None)
    s.on_epoch_start(0)
    loss, _, t_out = step(s, student, teacher, batch)
    assert set(t_out.aux) == {"depth_prev", "depth_next"}
    assert set(loss.terms) == {"photo", "geo", "pseudo", "kd"}
    assert loss.terms["kd"].item() >= 0
    student.zero_grad()
    loss.total.backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_pseudo_term_is_scaled_by_the_forgetting_factor():
    student, s = make(total_epochs=10)
    batch = tiny_batch()
    s.on_stage_start(s.stages()[0], student, None)
    student.eval()  # deterministic BN so both evaluations see the same depth
    s.on_epoch_start(0)
    torch.manual_seed(5)
    p0 = step(s, student, None, batch)[0].terms["pseudo"].item()
    s.on_epoch_start(3)
    torch.manual_seed(5)
    p3 = step(s, student, None, batch)[0].terms["pseudo"].item()
    assert p0 > 0 and p3 == pytest.approx(p0 * 0.9**3, rel=1e-5)


def test_pseudo_depth_is_required_unless_disabled():
    student, s = make()
    s.on_stage_start(s.stages()[0], student, None)
    with pytest.raises(HarnessError, match="pseudo_depth"):
        step(s, student, None, tiny_batch(pseudo=False))
    student, s = make(pseudo=False)
    s.on_stage_start(s.stages()[0], student, None)
    loss = step(s, student, None, tiny_batch(pseudo=False))[0]
    assert set(loss.terms) == {"photo", "geo"}


def test_weights_and_options_switch_terms():
    student, s = make(loss_weights={"pseudo": 0.0}, min_over="all", scales=(0,), ssim_window=3)
    s.on_stage_start(s.stages()[0], student, None)
    assert set(step(s, student, None, tiny_batch())[0].terms) == {"photo", "geo"}
    student, s = make(refiner=True, teacher_update="ema")
    teacher = s.on_stage_start(s.stages()[1], student, None)
    loss = step(s, student, teacher, tiny_batch())[0]
    loss.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in s.refiner.parameters())


@pytest.mark.parametrize("bad", [dict(scales=(1, 2)), dict(min_over="best"), dict(teacher_update="online"),
                                 dict(kd_align="mean"), dict(forgetting="cosine"), dict(pseudo_weights={"nm": 1})])
def test_bad_options_are_refused(bad):
    with pytest.raises(HarnessError):
        SSMDEStrategy(**bad)


def test_registration_config_and_paper():
    host = PluginHost(autoload=False, extra_plugins=[plugin])
    entry = host.catalog.get("methods", "ssmde")
    assert entry.obj is SSMDEStrategy
    cfg = load_file(entry.extra["config"], "config")
    method = dict(cfg.method)
    assert method.pop("type") == "ssmde"
    SSMDEStrategy(**method)  # every config key is an accepted option
    paper = json.loads(Path(entry.extra["paper"]).read_text())
    kitti, nyu = paper["results"]["kitti"]["metrics"], paper["results"]["nyu"]["metrics"]
    assert (kitti["a1"], kitti["abs_rel"], nyu["a1"], nyu["abs_rel"]) == (0.87, 0.111, 0.89, 0.102)


def test_stage_b_continues_stage_a_and_ranking_space_is_validated():
    s = SSMDEStrategy()
    assert [st.reset_schedule for st in s.stages()] == [True, False]  # B continues A's optimiser state
    assert s.rank_space == "log" and SSMDEStrategy(rank_space="depth").rank_space == "depth"
    with pytest.raises(HarnessError, match="rank_space"):
        SSMDEStrategy(rank_space="disp")
