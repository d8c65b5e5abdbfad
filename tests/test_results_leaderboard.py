"""Result files (atomic, validated) and the leaderboard built only from them."""
import json
import os

import pytest

from harness.errors import HarnessError
from harness.report.leaderboard import render
from harness.report.results import atomic_write_text, check_writable_dir, load_results, write_result


def _result(method, seed, abs_rel, pid="p1", profile="synth_benchmark", extra=None):
    metrics = {"student": {"abs_rel": abs_rel, "sq_rel": 0.1, "rmse": 1.0, "rmse_log": 0.2,
                           "a1": 0.9, "a2": 0.95, "a3": 0.99},
               "mean_depth": {"abs_rel": 0.5, "sq_rel": 1, "rmse": 5, "rmse_log": 0.6, "a1": 0.3, "a2": 0.5, "a3": 0.7}}
    if extra:
        metrics["student"].update(extra)
    return {"schema_version": 1, "method": method, "seed": seed, "profile": profile,
            "protocol": {"id": pid, "dataset": "synth", "split": "test", "crop": "none",
                         "min_depth": 0.001, "max_depth": 80.0, "scale": "none", "resolution": [96, 320]},
            "datasets": {"test": {"name": "synth"}}, "metrics": metrics}


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_unwritable_results_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(HarnessError, match="option --results .*not writable"):
        check_writable_dir(f / "sub", "--results")


def test_leaderboard_aggregates_seeds_and_groups_protocols(tmp_path):
    for seed, v in [(0, 0.10), (1, 0.12), (2, 0.14)]:
        write_result(_result("baseline", seed, v), tmp_path)
    write_result(_result("other", 0, 0.08), tmp_path)
    write_result(_result("baseline", 0, 0.333, pid="p2", profile="quick"), tmp_path)
    text = render(load_results(tmp_path), "github")
    assert "protocol p1" in text and "protocol p2" in text
    p1 = text.split("protocol p2")[0] if text.index("protocol p1") < text.index("protocol p2") else text.split("protocol p1")[1]
    assert "0.120 ± 0.020" in p1  # mean ± sample std over 3 seeds
    rows = [ln for ln in p1.splitlines() if ln.startswith("| ")][1:]
    # ranked by abs_rel within the protocol, but a 1-seed row never above a 3-seed one, and marked
    assert [r.split("|")[1].strip() for r in rows[:2]] == ["baseline", "other"]
    assert rows[1].split("|")[3].strip() == "1*"
    assert "0.333" not in p1 and "0.333" in text  # a different protocol is never ranked with p1


def test_missing_cells_are_marked_not_averaged(tmp_path):
    write_result(_result("m", 0, 0.1, extra={"silog": 10.0}), tmp_path)
    write_result(_result("m", 1, 0.1), tmp_path)
    text = render(load_results(tmp_path), "github", metric="silog")
    row = next(ln for ln in text.splitlines() if ln.startswith("| m "))
    assert "–" in row


def test_formats(tmp_path):
    write_result(_result("baseline", 0, 0.1), tmp_path)
    res = load_results(tmp_path)
    assert "\\toprule" in render(res, "latex")
    csv_text = render(res, "csv")
    assert csv_text.splitlines()[0].startswith("protocol,method,profile,seeds,abs_rel,abs_rel_std")
    with pytest.raises(HarnessError, match="option --format"):
        render(res, "html5")
    with pytest.raises(HarnessError, match="option --metric"):
        render(res, "github", metric="nope")


def test_bad_result_files_are_named_and_skipped(tmp_path):
    write_result(_result("baseline", 0, 0.1), tmp_path)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.warns(UserWarning, match="x.json: not a readable result JSON.*skipped"):
        assert [r["method"] for r in load_results(tmp_path)] == ["baseline"]
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.warns(UserWarning, match="x.json: not a stereodistill result"):
        assert len(load_results(tmp_path)) == 1
