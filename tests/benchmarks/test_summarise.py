"""The README's benchmark table is generated from pytest-benchmark JSON."""
import json

from tests.benchmarks import summarise


def _report():
    return {
        "datetime": "2026-11-21T14:00:00",
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}, "python_version": "3.11.7"},
        "benchmarks": [
            {"name": "test_overhead", "stats": {"median": 1.5},
             "extra_info": {"step_ratio": 1.01234, "epoch_end_s": 0.13, "rounds": [{"bare_s": 1.0}]}},
            {"name": "test_model", "stats": {"median": 2.0},
             "extra_info": {"images_per_s": 123.456, "loader_over_model": {"0": 32.1}}},
        ],
    }


def test_table_rows_and_figures():
    out = summarise.table(_report())
    lines = out.splitlines()
    assert lines[0] == "2026-11-21, Test CPU, Python 3.11.7"
    assert "| `test_overhead` | 1.5000 | harness/bare step 1.0123; epoch-end s 0.1300 |" in lines
    assert "| `test_model` | 2.0000 | images/s 123.5; loader/model 0: 32.1 |" in lines
    assert "bare_s" not in out  # per-round detail stays in the JSON


def test_main_reads_a_file_and_reports_bad_ones(tmp_path, capsys):
    good = tmp_path / "b.json"
    good.write_text(json.dumps(_report()))
    assert summarise.main([str(good)]) == 0
    assert "test_model" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert summarise.main([str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "not a readable pytest-benchmark JSON" in err[0]
    assert summarise.main([]) == 2


def test_step_cost_table():
    report = _report()
    report["benchmarks"].append({
        "name": "test_method_step_cost_vs_baseline[adu]", "params": {"method": "adu"}, "stats": {"median": 1.0},
        "extra_info": {"ratio": 1.5, "step_s": 0.9, "baseline_step_s": 0.6, "stage": "student",
                       "parts": {"student": 0.2, "teacher": 0.3, "strategy modules": 0.01, "losses": 0.04,
                                 "backward": 0.3, "optimizer": 0.05}}})
    lines = summarise.step_cost_table(report).splitlines()
    assert lines[0].startswith("| method (stage) | step / baseline |")
    assert lines[2] == "| adu (student) | 1.50 | 0.900 | 0.600 | 0.200 | 0.300 | 0.010 | 0.040 | 0.300 | 0.050 |"
    assert summarise.step_cost_table(_report()) == ""
