"""`harness leaderboard` / `harness run --seeds` at the command line (in-process, no training)."""
import json

import pytest

from harness.cli import main as cli

from .helpers import COST, fake_result, write


def _stderr_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_corrupt_and_foreign_json_are_skipped_with_one_warning_each(tmp_path, capsys):
    write(tmp_path, fake_result("adu", 0, 0.1, cost=COST))
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"name": "some other tool's file"}))
    (tmp_path / "list.json").write_text("[1, 2]")
    assert cli.main(["leaderboard", "--results", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    warnings = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(warnings) == 3 and all(w.startswith("harness: warning: ") and w.endswith("; skipped") for w in warnings)
    assert any("corrupt.json: not a readable result JSON" in w for w in warnings)
    assert any("foreign.json: not a stereodistill result" in w for w in warnings)
    assert "| adu " in captured.out and "Traceback" not in captured.err


def test_out_writes_each_format(tmp_path, capsys):
    res = tmp_path / "results"
    res.mkdir()
    for seed in (0, 1):
        write(res, fake_result("adu", seed, 0.1 + seed / 10, cost=COST))
    for fmt, suffix, marker in (("github", "md", "| adu"), ("latex", "tex", "\\toprule"), ("csv", "csv", "protocol,method"),
                                ("html", "html", "<table class=\"lb\"")):
        out = res / f"leaderboard.{suffix}"
        assert cli.main(["leaderboard", "--results", str(res), "--format", fmt, "--out", str(out)]) == 0
        assert marker in out.read_text()
        assert [p.name for p in res.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert "GFLOPs" in (res / "leaderboard.md").read_text()  # recorded cost used, nothing measured
    assert cli.main(["leaderboard", "--results", str(res), "--no-cost"]) == 0
    assert "GFLOPs" not in capsys.readouterr().out


def test_leaderboard_usage_errors_are_one_line(tmp_path, capsys):
    write(tmp_path, fake_result("adu", 0, 0.1, cost=COST))
    assert cli.main(["leaderboard", "--results", str(tmp_path), "--out", str(tmp_path / "no" / "lb.md")]) == 2
    (line,) = _stderr_lines(capsys)
    assert line.startswith("harness: error: option --out") and "does not exist" in line
    assert cli.main(["leaderboard", "--results", str(tmp_path / "absent")]) == 2
    (line,) = _stderr_lines(capsys)
    assert "option --results" in line and "no such directory" in line
    assert cli.main(["leaderboard", "--results", str(tmp_path), "--format", "pdf"]) == 2
    (line,) = _stderr_lines(capsys)
    assert "option --format" in line


@pytest.mark.parametrize("value, fragment", [("0,x", "comma-separated list"), ("1,1", "distinct"), ("-1", "non-negative"),
                                              ("", "comma-separated list")])
def test_bad_seeds_are_usage_errors(value, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--method", "baseline", "--seeds", value])
    assert exc.value.code == 2
    (line,) = _stderr_lines(capsys)
    assert line.startswith("harness: error: ") and "--seeds" in line and fragment in line


def test_seed_and_seeds_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--method", "baseline", "--seed", "1", "--seeds", "0,1"])
    assert exc.value.code == 2 and "not allowed with" in _stderr_lines(capsys)[0]


def test_seeds_run_each_seed_in_turn_with_its_own_work_dir(tmp_path, monkeypatch, capsys):
    import harness.pipeline.run

    calls = []

    def fake_run(cfg, host, *, work_dir, results_dir, resume=False):
        calls.append((int(cfg.seed), work_dir, cfg.schedule["epochs"]))
        cfg.schedule["epochs"] = 99  # a run that changes its config must not leak into the next seed
        result = {"metrics": {"student": {"abs_rel": 0.5}}, "timings": {"total_s": 1.0}}
        return result, results_dir / f"seed{cfg.seed}.json"

    monkeypatch.setattr(harness.pipeline.run, "run", fake_run)
    argv = ["run", "--method", "baseline", "--quick", "--seeds", "2,0", "--results", str(tmp_path / "r"),
            "--work-dir", str(tmp_path / "w")]
    assert cli.main(argv) == 0
    assert [(seed, wd) for seed, wd, _ in calls] == [(2, tmp_path / "w" / "seed2"), (0, tmp_path / "w" / "seed0")]
    assert calls[0][2] == calls[1][2] != 99
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("baseline seed 2: student abs_rel 0.5000") and out[1].startswith("baseline seed 0:")
    calls.clear()
    assert cli.main(["run", "--method", "baseline", "--quick", "--seed", "3", "--results", str(tmp_path / "r"),
                     "--work-dir", str(tmp_path / "one")]) == 0
    assert [(seed, wd) for seed, wd, _ in calls] == [(3, tmp_path / "one")]  # one seed: --work-dir as given


def test_bad_robustness_reference_is_one_line(tmp_path, capsys):
    code = cli.main(["leaderboard", "--results", str(tmp_path), "--robustness", "--robustness-reference", "baseline:"])
    lines = _stderr_lines(capsys)
    assert code != 0 and len(lines) == 1 and "option --robustness-reference" in lines[0]
    assert "Traceback" not in lines[0]
