"""A NaN/Inf loss term stops training with one line naming the term and the step (exit 1) and
leaves the last good checkpoint as the newest one."""
from __future__ import annotations

import re

import pytest
import torch

from harness.pipeline.checkpoint import is_complete
from harness.errors import RunFailure
from harness.pipeline.loss_guard import LossGuard, first_non_finite
from tests.reliability.conftest import error_line, run_cli


def _losses(**terms):
    out = {"term." + k: torch.tensor(v) for k, v in terms.items()}
    out["loss"] = sum(out.values())
    return out


def test_first_non_finite_names_the_term_not_the_total():
    assert first_non_finite(_losses(gt=1.0, photo=2.0)) is None
    assert first_non_finite(_losses(gt=1.0, photo=float("nan")))[0] == "photo"
    assert first_non_finite(_losses(gt=float("inf"), photo=1.0)) == ("gt", float("inf"))
    only_total = {"term.gt": torch.tensor(1.0), "loss": torch.tensor(float("-inf"))}
    assert first_non_finite(only_total) == ("loss", float("-inf"))
    assert first_non_finite({"term.map": torch.tensor([1.0, float("nan")]), "loss": torch.tensor(1.0)})[0] == "map"


def test_guard_message_has_term_position_and_checkpoint(tmp_path):
    guard = LossGuard("student", tmp_path)

    class _Runner:
        epoch, iter = 1, 116

    guard.before_train_iter(_Runner(), batch_idx=36)
    with pytest.raises(RunFailure) as err:
        guard.check(_losses(photo=float("nan"), gt=1.0))
    assert str(err.value) == ("loss term 'photo' is NaN at epoch 2 step 37 (iteration 117) of stage 'student'; "
                              "last good checkpoint: none (no epoch finished yet)")
    assert err.value.exit_code == 1
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_1.pth"))
    with pytest.raises(RunFailure, match=r"the total loss is \+Inf .*last good checkpoint: .*epoch_1\.pth$"):
        guard.check({"term.gt": torch.tensor(1.0), "loss": torch.tensor(float("inf"))})
    guard.check(_losses(gt=1.0))  # finite: no error


@pytest.mark.slow
def test_nan_in_a_run_exits_1_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, sample_plugins):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    line = error_line(run_cli(capsys, "run", "--method", "nan_at", "--quick", "--results", tmp_path / "results",
                              "--work-dir", work, "--cfg-options", "schedule.epochs=3", "method.nan_epoch=2",
                              "method.nan_step=2", "evaluate.teacher=False", "progress=False"), 1)
    m = re.fullmatch(r"harness: error: loss term 'photo' is NaN at epoch 2 step 2 \(iteration (\d+)\) of stage "
                     r"'student'; last good checkpoint: (.+)", line)
    assert m, line
    assert int(m.group(1)) > 2  # counted over epochs
    assert m.group(2) == str(work / "student" / "epoch_1.pth") and is_complete(m.group(2))
    assert sorted(p.name for p in (work / "student").glob("*.pth")) == ["epoch_1.pth"]
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.json"))
