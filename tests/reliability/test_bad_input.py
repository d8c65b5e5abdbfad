"""The bad-input catalogue of docs/reliability.md: one ``harness: error:`` line on stderr naming
the file or option, exit 2 for usage errors and 1 for runtime failures, no traceback.
Cases already covered elsewhere are listed in the doc with their test."""
from __future__ import annotations

import errno
import json
import os
import types

import numpy as np
import pytest

import harness.pipeline.run  # noqa: F401 (monkeypatched)

from harness.report import results
from harness.errors import RunFailure
from tests.data_real import fixtures
from tests.reliability.conftest import error_line, run_cli

RUN = ["run", "--method", "baseline", "--quick"]


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti")
    fixtures.write_kitti(root)
    empty = root / "empty_split.txt"
    empty.write_text("")
    return root, empty


# (id, argv after the common prefix, expected fragments); every case is a usage error: exit 2
USAGE = [
    ("unknown-method", ["run", "--method", "nope"], ["unknown method 'nope'", "baseline"]),
    ("unknown-dataset", [*RUN, "--dataset", "nope"], ["unknown dataset 'nope'", "synth"]),
    ("unknown-corruption", [*RUN, "--corruption", "rain"], ["unknown corruption 'rain'"]),
    ("bad-severity", [*RUN, "--severity", "9"], ["severit"]),
    ("cfg-option-no-value", [*RUN, "--cfg-options", "schedule.epochs"], ["--cfg-options", "key=value"]),
    ("cfg-option-bad-key", [*RUN, "--cfg-options", "schedule..epochs=2"], ["--cfg-options", "dotted config key"]),
    ("cfg-option-unknown-key", [*RUN, "--cfg-options", "schedul.epochs=2"], ["unknown config key 'schedul'"]),
    ("cfg-option-method-type", [*RUN, "--cfg-options", "method.type=adu"], ["method.type cannot be changed"]),
    ("missing-method-option", ["run"], ["--method"]),
    ("non-integer-seed", [*RUN, "--seed", "abc"], ["--seed", "invalid int value"]),
    ("unknown-list-kind", ["list", "things"], ["invalid choice"]),
]


@pytest.mark.parametrize("argv, fragments", [c[1:] for c in USAGE], ids=[c[0] for c in USAGE])
def test_usage_errors(capsys, tmp_path, argv, fragments):
    extra = ["--results", tmp_path / "r", "--work-dir", tmp_path / "w"] if argv[0] == "run" and len(argv) > 1 else []
    error_line(run_cli(capsys, *argv, *extra), 2, *fragments)


def test_config_file_with_a_syntax_error(capsys, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("schedule = dict(epochs=\n")
    error_line(run_cli(capsys, *RUN, "--config", broken, "--results", tmp_path), 2,
               f"option --config {broken}: cannot be read as an mmengine config")
    error_line(run_cli(capsys, *RUN, "--config", tmp_path / "absent.py", "--results", tmp_path), 2,
               f"option --config {tmp_path / 'absent.py'}: no such file")


def test_missing_data_root_and_unwritable_dirs(capsys, tmp_path):
    error_line(run_cli(capsys, *RUN, "--data-root", tmp_path / "absent", "--results", tmp_path), 2,
               f"option --data-root {tmp_path / 'absent'}: no such directory")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    error_line(run_cli(capsys, *RUN, "--results", blocker / "r"), 2, "option --results", "not writable")
    error_line(run_cli(capsys, *RUN, "--results", tmp_path / "r", "--work-dir", blocker / "w"), 2,
               "option --work-dir", "not writable")


def test_empty_split(capsys, tmp_path, kitti):
    root, empty = kitti
    np.savez(tmp_path / "p.npz", depth=np.ones((1, 8, 8), np.float32))
    error_line(run_cli(capsys, "eval", "--dataset", "kitti", "--data-root", root, "--split-file", empty,
                       "--predictions", tmp_path / "p.npz"), 2, f"{empty}: split file has no lines")
    error_line(run_cli(capsys, *RUN, "--dataset", "kitti", "--data-root", root, "--results", tmp_path / "r",
                       "--work-dir", tmp_path / "w", "--cfg-options", f"data.test.split={empty}"), 2,
               f"{empty}: split file has no lines")


def _good_result(seed):
    return {"schema_version": 1, "method": "baseline", "seed": seed, "profile": "quick",
            "protocol": {"id": "p", "dataset": "synth", "split": "test"}, "datasets": {"test": {"name": "synth"}},
            "metrics": {"student": {"abs_rel": 0.1 + seed / 100, "a1": 0.9}}}


def test_results_folder_with_foreign_and_corrupt_json_is_skipped_with_warnings(capsys, tmp_path):
    results.write_result(_good_result(0), tmp_path)
    results.write_result(_good_result(1), tmp_path)
    (tmp_path / "package.json").write_text(json.dumps({"name": "not-ours", "version": "1.0"}))
    (tmp_path / "cut.json").write_text(json.dumps(_good_result(2))[:40])  # a torn write from another tool
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "future.json").write_text(json.dumps(dict(_good_result(3), schema_version=99)))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    code, out, err = run_cli(capsys, "leaderboard", "--results", tmp_path, "--no-cost")
    assert code == 0, err
    warnings = err.strip().splitlines()
    assert len(warnings) == 5 and all(w.startswith("harness: warning: ") and w.endswith("; skipped")
                                      for w in warnings), err
    for name in ("package.json", "cut.json", "list.json", "future.json", "binary.json"):
        assert sum(name in w for w in warnings) == 1, (name, err)
    assert "| baseline" in out and "| 2 " in out  # both good seeds are in the table


def test_results_folder_with_only_bad_files(capsys, tmp_path):
    (tmp_path / "x.json").write_text("{")
    code, _, err = run_cli(capsys, "leaderboard", "--results", tmp_path)
    assert code == 2 and "harness: warning: " in err and "harness: error: no result files found" in err
    error_line(run_cli(capsys, "leaderboard", "--results", tmp_path / "absent"), 2, "option --results", "no such directory")


class _FullDiskFile:
    """A text file whose write stores half the data and then fails with ENOSPC."""

    def __init__(self, f):
        self.f = f

    def write(self, text):
        self.f.write(text[: len(text) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """``harness.report.results`` sees a disk that fills up during the next write."""
    fake = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    fake.fdopen = lambda fd, *a, **k: _FullDiskFile(os.fdopen(fd, *a, **k))
    monkeypatch.setattr(results, "os", fake)


def test_disk_full_while_writing_a_result_keeps_the_old_file(tmp_path, full_disk):
    path = tmp_path / results.result_filename(_good_result(0))
    path.write_text("previous result\n")
    with pytest.raises(RunFailure, match=f"cannot write result {path}: No space left on device") as err:
        results.write_result(_good_result(0), tmp_path)
    assert err.value.exit_code == 1
    assert path.read_text() == "previous result\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


@pytest.mark.slow
def test_disk_full_at_the_end_of_a_run_is_one_line_exit_1(capsys, tmp_path, monkeypatch, full_disk, sample_plugins):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(harness.pipeline.run, "write_run_record", lambda *a, **k: None)  # the disk fills up later
    res = tmp_path / "results"
    line = error_line(run_cli(capsys, "run", "--method", "noisy", "--quick", "--results", res, "--work-dir",
                              tmp_path / "w", "--cfg-options", "evaluate.teacher=False", "evaluate.mean_depth=False",
                              "progress=False"), 1, "cannot write result", "No space left on device")
    assert str(res / "noisy__synth__quick__seed0.json") in line
    assert list(res.iterdir()) == []


def test_an_os_error_mid_command_is_one_line_exit_1(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    error_line(run_cli(capsys, "data", "synth", "--out", blocker / "synth", "--frames", "1", "--height", "32",
                       "--width", "32"), 1, str(blocker / "synth"), "Not a directory")


@pytest.mark.slow
def test_disk_full_before_training_names_the_run_record(capsys, tmp_path, monkeypatch, full_disk, sample_plugins):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    line = error_line(run_cli(capsys, "run", "--method", "noisy", "--quick", "--results", tmp_path / "results",
                              "--work-dir", tmp_path / "w", "--cfg-options", "progress=False"),
                      1, "cannot write the run record", "No space left on device")
    assert str(tmp_path / "w" / "run_config.json") in line
