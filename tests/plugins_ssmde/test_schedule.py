"""Forgetting factor phi(e): its forms, its epoch count across stages A -> B, the config hook."""
from __future__ import annotations

import pytest
import torch

from harness import HarnessError, RunInfo, Stage
from stereodistill_plugins.ssmde import SSMDEStrategy, forgetting_factor


def test_forgetting_factor_forms():
    assert [forgetting_factor(e) for e in range(4)] == pytest.approx([1.0, 0.9, 0.81, 0.729])
    assert forgetting_factor(10) == pytest.approx(0.9**10)  # ~0.35 after 10 epochs (docs/methods.md 5.4(c))
    assert forgetting_factor(50) == pytest.approx(0.00515, abs=1e-5)
    assert forgetting_factor(2, phi0=0.5, decay=0.5) == pytest.approx(0.125)
    # linear: E_f = 0.5 * 12 = 6 epochs
    lin = [forgetting_factor(e, "linear", total_epochs=12) for e in (0, 3, 6, 9)]
    assert lin == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert forgetting_factor(5, "constant", phi0=0.3) == 0.3
    with pytest.raises(ValueError):
        forgetting_factor(1, "linear")
    with pytest.raises(ValueError):
        forgetting_factor(1, "cosine")


def run_schedule(strategy, epochs_per_stage):
    """phi at every epoch start, driven like the harness drives it (epochs restart per stage)."""
    seen = []
    for stage, n in zip(strategy.stages(), epochs_per_stage):
        strategy.on_stage_start(stage, _Dummy(), None)
        for e in range(n):
            strategy.on_epoch_start(e)
            seen.append((stage.name, strategy.global_epoch, strategy.phi))
    return seen


class _Dummy(torch.nn.Linear):
    """Stands in for the student (stage B snapshots it)."""

    def __init__(self):
        super().__init__(1, 1)


def test_phi_keeps_decaying_through_stage_b():
    s = SSMDEStrategy(total_epochs=6)
    seen = run_schedule(s, (3, 3))
    assert [g for _, g, _ in seen] == [0, 1, 2, 3, 4, 5]
    assert [p for _, _, p in seen] == pytest.approx([0.9**e for e in range(6)])
    # without total_epochs the offset comes from the epochs seen in stage A
    s = SSMDEStrategy()
    assert [g for _, g, _ in run_schedule(s, (2, 2))] == [0, 1, 2, 3]


def test_phi_offset_uses_stage_lengths_on_resume():
    # a resumed run may skip stage A's epochs entirely: stage B still starts at global epoch 3
    s = SSMDEStrategy(total_epochs=6)
    s.on_stage_start(Stage("B", epochs_fraction=0.5), _Dummy(), None)
    s.on_epoch_start(1)
    assert s.global_epoch == 4 and s.phi == pytest.approx(0.9**4)


def test_linear_schedule():
    s = SSMDEStrategy(total_epochs=8, forgetting="linear")  # E_f = 4
    assert [p for _, _, p in run_schedule(s, (4, 4))] == pytest.approx([1, 0.75, 0.5, 0.25, 0, 0, 0, 0])
    s = SSMDEStrategy(forgetting="linear")
    s.on_stage_start(s.stages()[0], _Dummy(), None)
    with pytest.raises(HarnessError, match="total_epochs"):
        s.on_epoch_start(0)


def test_run_info_gives_total_epochs_and_stage_offsets():
    s = SSMDEStrategy()
    stages = tuple(s.stages())
    s.on_run_start(RunInfo(stages=stages, stage_epochs=(4, 3)))
    assert s.total_epochs == 7
    s.on_stage_start(stages[1], _Dummy(), None)  # a resumed run: stage B starts at epoch 4
    s.on_epoch_start(0)
    assert s.global_epoch == 4 and s.phi == pytest.approx(0.9**4)
    explicit = SSMDEStrategy(total_epochs=3)  # an explicit value wins
    explicit.on_run_start(RunInfo(stages=stages, stage_epochs=(4, 3)))
    assert explicit.total_epochs == 3
