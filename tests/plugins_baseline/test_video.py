"""supervision="video": the like-for-like control of ssmde (same pose net, same photometric +
geometry terms, no pseudo-depth, no self-distillation)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness import HarnessError, StepContext
from harness.config.loader import load_file
from harness.models.student import MonoStudent
from stereodistill_plugins.baseline.strategy import BaselineStrategy
from stereodistill_plugins.ssmde import SSMDEStrategy

CONFIGS = Path(__file__).resolve().parents[2] / "plugins"


def _batch(b=2, h=64, w=64):
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[40.0, 0.0, (w - 1) / 2], [0.0, 40.0, (h - 1) / 2], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    return {"image": torch.rand(b, 3, h, w, generator=g),
            "frames": {-1: torch.rand(b, 3, h, w, generator=g), 1: torch.rand(b, 3, h, w, generator=g)}, "K": K}


def test_declarations():
    s = BaselineStrategy(supervision="video")
    assert s.required_batch_keys == frozenset({"image", "frames", "K"})
    assert s.eval_scale_policy == "median" and BaselineStrategy().eval_scale_policy == "none"
    assert sum(p.numel() for p in s.pose_net.parameters()) > 0  # strategy-owned, trained with the student
    assert BaselineStrategy(supervision="gt").pose_net is None
    with pytest.raises(HarnessError, match="min_over"):
        BaselineStrategy(supervision="video", min_over="best")


def test_video_terms_are_exactly_ssmde_stage_a_without_pseudo_and_gradients_reach_the_pose_net():
    torch.manual_seed(0)
    student = MonoStudent(num_layers=18, base_width=8)
    ssmde = SSMDEStrategy(pseudo=False)
    ssmde.build(student, None)
    base = BaselineStrategy(supervision="video")
    base.pose_net.load_state_dict(ssmde.pose_net.state_dict())
    batch = _batch()
    s_out = base.student_forward(student, batch)
    loss = base.compute_loss(batch, s_out, None, StepContext())
    ref = ssmde.compute_loss(batch, ssmde.student_forward(student, batch), None, StepContext(stage="A"))
    assert set(loss.terms) == {"photo", "geo"}
    for k in ("photo", "geo"):
        assert loss.terms[k].item() == pytest.approx(ref.terms[k].item(), rel=1e-6)
    loss.total.backward()
    assert base.pose_net.head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_video_profile_matches_ssmde_options():
    profile = load_file(CONFIGS / "baseline" / "configs" / "synth_small_video.py", "--config")
    ssmde = load_file(CONFIGS / "ssmde" / "configs" / "ssmde_resnet18_synth.py", "--config").method
    assert profile.method["supervision"] == "video" and profile.method["eval_scale"] == "median"
    for key in ("scales", "ssim_window", "min_over"):
        assert tuple(profile.method[key]) if key == "scales" else profile.method[key] == \
            (tuple(ssmde[key]) if key == "scales" else ssmde[key])
    assert profile.method["loss_weights"]["geo"] == ssmde["loss_weights"]["geo"]
    assert profile.schedule["epochs"] == load_file(CONFIGS.parent / "harness" / "config" / "configs" / "synth_small.py",
                                                   "--config").schedule["epochs"]


@pytest.mark.slow
def test_video_baseline_quick_run(tmp_path, monkeypatch):
    from harness.config.loader import build_run_config
    from harness.host.manager import PluginHost
    from harness.pipeline.run import run

    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost()
    cfg = build_run_config(method="baseline", method_config=host.catalog.get("methods", "baseline").extra["config"],
                           config_file=str(CONFIGS / "baseline" / "configs" / "synth_small_video.py"), quick=True,
                           cfg_options=["progress=False", "evaluate.teacher=False", "evaluate.mean_depth=False"])
    result, _ = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    assert result["config"]["method"]["supervision"] == "video" and result["protocol"]["scale"] == "median"
    assert set(result["losses"]["student"]) == {"loss", "photo", "geo"}
    assert 0 < result["metrics"]["student"]["abs_rel"] < 10
