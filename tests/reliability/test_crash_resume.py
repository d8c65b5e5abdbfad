"""``kill -9`` during training, then ``--resume``: the same final metrics and weights as an
uninterrupted run; two runs with the same seed and config are bitwise identical (CPU)."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest
import torch

from tests.reliability.conftest import REPO, harness_cmd, run_harness, subprocess_env

EPOCHS = 3
RESULT = "noisy__synth__quick__seed0.json"


def _args(tmp, name):
    # noisy draws a dropout mask every step: resume equality needs per-epoch reseeding
    return ["run", "--method", "noisy", "--quick", "--deterministic", "--results", tmp / f"{name}-results",
            "--work-dir", tmp / f"{name}-work", "--cfg-options", f"schedule.epochs={EPOCHS}",
            "evaluate.teacher=False", "progress=False"]


def _student_weights(tmp, name):
    return torch.load(tmp / f"{name}-work" / "student" / f"epoch_{EPOCHS}.pth", map_location="cpu",
                      weights_only=False)["state_dict"]


def _metrics(tmp, name):
    return json.loads((tmp / f"{name}-results" / RESULT).read_text())["metrics"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"weights differ bitwise: {differ[:5]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    env = subprocess_env(tmp / "cache")
    out = run_harness(*_args(tmp, "ref"), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp, env


@pytest.mark.slow
def test_same_seed_same_config_is_bitwise_identical(reference):
    tmp, env = reference
    out = run_harness(*_args(tmp, "again"), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _metrics(tmp, "again") == _metrics(tmp, "ref")
    _assert_same_weights(_student_weights(tmp, "again"), _student_weights(tmp, "ref"))


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(reference):
    tmp, env = reference
    work = tmp / "killed-work" / "student"
    proc = subprocess.Popen(harness_cmd(*_args(tmp, "killed")), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (work / "epoch_1.pth").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    assert not (work / f"epoch_{EPOCHS}.pth").exists(), "killed too late: training had finished"
    assert not (tmp / "killed-results" / RESULT).exists()

    out = run_harness(*_args(tmp, "killed"), "--resume", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _metrics(tmp, "killed") == _metrics(tmp, "ref")
    _assert_same_weights(_student_weights(tmp, "killed"), _student_weights(tmp, "ref"))
    assert not list(work.glob("*.tmp")) and not list(work.glob(".*.tmp"))
    resumed_log = sorted(work.glob("*/*.log"))[-1].read_text()
    trained = {int(e) for e in re.findall(r"Epoch\(train\)\s+\[(\d+)\]", resumed_log)}
    assert 1 not in trained and EPOCHS in trained, f"the resumed run trained epochs {sorted(trained)}"


@pytest.mark.slow
def test_resume_skips_a_truncated_last_checkpoint(reference):
    tmp, env = reference
    import shutil

    shutil.copytree(tmp / "ref-work", tmp / "cut-work")
    last = tmp / "cut-work" / "student" / f"epoch_{EPOCHS}.pth"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # as a crash mid-write would leave it
    out = run_harness(*_args(tmp, "cut"), "--resume", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    warning = [ln for ln in out.stderr.splitlines() if ln.startswith("harness: warning: ")]
    assert any(f"epoch_{EPOCHS}.pth is truncated or unreadable" in ln for ln in warning), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert _metrics(tmp, "cut") == _metrics(tmp, "ref")  # retrained the last epoch from epoch_{EPOCHS-1}
    _assert_same_weights(_student_weights(tmp, "cut"), _student_weights(tmp, "ref"))
