"""Stage.reset_schedule: continuing stages share the optimiser state and one LR schedule."""
import math

import pytest
import torch

from harness import Stage
from harness.errors import HarnessError
from harness.pipeline.schedule import fill_schedulers, plan_stages

COSINE = [dict(type="CosineAnnealingLR", by_epoch=True, eta_min=1e-5)]


def test_plan_chains_continuing_stages():
    stages = [Stage("A"), Stage("B", reset_schedule=False), Stage("C", reset_schedule=False), Stage("D")]
    plans = plan_stages(stages, [2, 3, 1, 4], [10, 5, 5, 7], [1e-3, 1e-3, 1e-3, 5e-4])
    a, b, c, d = plans
    assert (a.offset_epochs, a.span_epochs, a.continues) == (0, 6, None)
    assert (b.offset_epochs, b.offset_iters, b.span_epochs, b.continues) == (2, 20, 6, "A")
    assert (c.offset_epochs, c.offset_iters, c.span_iters, c.continues) == (5, 35, 40, "B")
    assert (d.offset_epochs, d.span_epochs, d.continues, d.lr) == (0, 4, None, 5e-4)
    assert fill_schedulers(COSINE, b)[0]["end"] == 6
    assert fill_schedulers([dict(COSINE[0], by_epoch=False)], b)[0]["end"] == 40


def test_first_stage_always_starts_a_chain():
    (a,) = plan_stages([Stage("A", reset_schedule=False)], [3], [4], [1e-3])
    assert a.continues is None and a.span_epochs == 3


def test_continuing_stage_with_its_own_lr_is_refused():
    with pytest.raises(HarnessError, match="stage 'B': reset_schedule=False continues .* 'A'"):
        plan_stages([Stage("A"), Stage("B", lr=1e-4, reset_schedule=False)], [1, 1], [1, 1], [1e-3, 1e-4])


def _last_ckpt_step(stage_dir):
    ckpt = torch.load(stage_dir / "epoch_1.pth", map_location="cpu", weights_only=False)
    return {s["step"].item() if torch.is_tensor(s["step"]) else s["step"] for s in ckpt["optimizer"]["state"].values()}


@pytest.mark.slow
def test_reset_schedule_false_continues_adamw_state_and_lr(tmp_path, monkeypatch):
    from harness.config.loader import build_run_config
    from harness.host.manager import PluginHost
    from harness.pipeline.run import run
    from tests.plugins import two_stage_method

    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    cfg = build_run_config(method="two_stage", method_config=None, quick=True, cfg_options=[
        "evaluate.teacher=False", "evaluate.mean_depth=False", "progress=False"])
    result, _ = run(cfg, PluginHost(extra_plugins=[two_stage_method]), work_dir=tmp_path / "work",
                    results_dir=tmp_path / "results")
    a, b = result["stages"]["A"], result["stages"]["B"]
    steps = {s: _last_ckpt_step(tmp_path / "work" / s) for s in "AB"}
    (n_a,) = steps["A"]
    # by-epoch cosine: epoch k of a chain of T epochs trains at eta + (lr - eta)(1 + cos(pi k / T)) / 2
    assert a["epoch_lr"] == [pytest.approx(1e-3)]
    # one AdamW state (step counts add up) and one cosine over both stages
    assert steps["B"] == {2 * n_a}
    assert b["epoch_lr"] == pytest.approx([1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi / 2)) / 2])
    assert not b["reset_schedule"] and b["continues"] == "A" and b["schedule_epochs"] == [1, 2, 2]
    assert a["optimizer"]["type"] == "AdamW" and a["optimizer"]["lr"] == 1e-3
