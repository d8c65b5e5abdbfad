"""The CLI contract: listing, end-to-end quick runs, resume, and one-line errors (exit 2)."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(*args, env=None, cwd=None, timeout=600):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("kind, expected", [
    ("methods", "baseline"), ("datasets", "synth"), ("teachers", "sgbm"), ("students", "resnet"),
    ("metrics", "abs_rel"), ("plugins", "core"),
])
def test_list(kind, expected):
    out = harness("list", kind)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith(expected))
    assert len(line.split()) >= 2  # name + description (or source)


def _one_error_line(out, *fragments, code=2):
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("harness: error: ")
    assert "Traceback" not in out.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_unknown_method(tmp_path):
    _one_error_line(harness("run", "--method", "nope", "--results", str(tmp_path)), "unknown method 'nope'", "baseline")


def test_bad_cfg_options(tmp_path):
    _one_error_line(harness("run", "--method", "baseline", "--quick", "--results", str(tmp_path),
                            "--cfg-options", "schedule.epochs"), "--cfg-options", "key=value")
    _one_error_line(harness("run", "--method", "baseline", "--quick", "--results", str(tmp_path),
                            "--cfg-options", "schedul.epochs=2"), "unknown config key 'schedul'")


def test_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_error_line(harness("run", "--method", "baseline", "--quick", "--results", str(blocker / "r")),
                    "option --results", "not writable")


def test_missing_data_root(tmp_path):
    _one_error_line(harness("run", "--method", "baseline", "--quick", "--results", str(tmp_path),
                            "--data-root", str(tmp_path / "absent")), "option --data-root", "no such directory")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path, cache):
    _one_error_line(harness("run", "--method", "baseline", "--quick", "--device", "cuda", "--results", str(tmp_path),
                            "--work-dir", str(tmp_path / "w"), env={"STEREODISTILL_CACHE": cache}), "--device cuda",
                    code=1)  # a runtime failure (the machine lacks a GPU), not a usage error


def test_argparse_errors_are_one_line_exit_2():
    _one_error_line(harness("run"), "--method")
    _one_error_line(harness("list", "things"), "invalid choice")


def test_debug_shows_traceback(tmp_path):
    out = harness("--debug", "run", "--method", "nope", "--results", str(tmp_path))
    assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.slow
def test_quick_run_end_to_end_then_resume_and_leaderboard(tmp_path, cache):
    env = {"STEREODISTILL_CACHE": cache}
    res, work = tmp_path / "results", tmp_path / "work"
    out = harness("run", "--method", "baseline", "--quick", "--results", str(res), "--work-dir", str(work),
                  "--cfg-options", "schedule.epochs=2", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    files = list(res.glob("*.json"))
    assert [f.name for f in files] == ["baseline__synth__quick__seed0.json"]
    r = json.loads(files[0].read_text())
    assert r["schema_version"] == 1 and r["method"] == "baseline" and r["seed"] == 0
    assert set(r["metrics"]) >= {"student", "teacher", "mean_depth"}
    for role in ("student", "teacher", "mean_depth"):
        assert 0 < r["metrics"][role]["abs_rel"] < 5
        assert r["metrics"][role]["num_images"] == r["datasets"]["test"]["frames"]
    assert set(r["losses"]["student"]) >= {"loss", "gt"}
    assert r["protocol"]["id"] and r["protocol"]["resolution"] == [64, 192]
    assert r["config"]["schedule"]["epochs"] == 2
    assert {"torch", "mmengine", "stereodistill"} <= set(r["versions"])
    assert r["timings"]["total_s"] > 0 and r["teacher"]["cached"] is False
    assert (work / "student" / "epoch_2.pth").is_file()

    # save -> resume -> load: continue the finished 2-epoch run to 3 epochs from its checkpoint
    out2 = harness("run", "--method", "baseline", "--quick", "--results", str(res), "--work-dir", str(work),
                   "--cfg-options", "schedule.epochs=3", "--resume", env=env)
    assert out2.returncode == 0, out2.stderr[-3000:]
    r2 = json.loads(files[0].read_text())
    assert r2["config"]["schedule"]["epochs"] == 3 and r2["teacher"]["cached"] is True
    assert (work / "student" / "epoch_3.pth").is_file()
    latest = sorted((work / "student").glob("*/*.log"))[-1].read_text()  # the resumed run's log
    epochs = {int(e) for e in re.findall(r"Epoch\(train\)\s+\[(\d+)\]", latest)}
    assert epochs == {3}, f"resume retrained epochs {sorted(epochs)}"

    board = harness("leaderboard", "--results", str(res))
    assert board.returncode == 0, board.stderr
    assert "| baseline" in board.stdout and "mean_depth" in board.stdout


def test_data_synth_cli(tmp_path):
    out = harness("data", "synth", "--out", str(tmp_path / "s"), "--frames", "6", "--height", "64", "--width", "96",
                  "--frames-per-drive", "3")
    assert out.returncode == 0, out.stderr
    assert "frames/s" in out.stdout
    root = tmp_path / "s"
    assert (root / "synth.json").is_file()
    assert list(root.glob("*/*_sync/image_02/data/*.png"))
    assert list(root.glob("*/*_sync/velodyne_points/data/*.bin"))
    _one_error_line(harness("data", "synth", "--out", str(root), "--frames", "2"), "--out", "not empty")
    _one_error_line(harness("data", "synth", "--out", str(tmp_path / "t"), "--height", "50"), "multiples of 32")
