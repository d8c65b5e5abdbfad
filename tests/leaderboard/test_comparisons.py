"""Leaderboard comparisons: Δ vs control from per-frame data, per-drive tables, seed and budget
rules, reference rows once per table, --metrics, cost columns never bold."""
import csv
import io

import pytest

from harness.errors import HarnessError
from harness.report.compare import NO_CONTROL_ROW, NO_PER_FRAME
from harness.report.leaderboard import build_tables, parse_metrics, render
from harness.report.stats import paired_delta

from .helpers import COST, fake_result

FRAMES = [f"2000_01_01/2000_01_01_drive_{d:04d}_sync/{i:010d}" for d in (1, 2, 3) for i in (1, 2)]


def _with_frames(result, values, control=None):
    result["per_frame"] = {"test": {"frames": list(FRAMES), "abs_rel": list(values)}}
    result["control"] = control
    result["metrics"]["student"]["abs_rel"] = sum(values) / len(values)
    return result


def _rows(table):
    return {(r["cells"]["method"], r["cells"]["profile"]): r for r in table.rows}


def _pair(method_values, control_values, seeds=(0,)):
    ctl = {"method": "baseline", "profile": "synth_small"}
    return ([_with_frames(fake_result("adu", s, 0), [v + s / 100 for v in method_values], ctl) for s in seeds]
            + [_with_frames(fake_result("baseline", s, 0), control_values) for s in seeds])


def test_delta_vs_control_equals_the_paired_statistics():
    m, c = [0.10, 0.12, 0.20, 0.22, 0.11, 0.13], [0.15, 0.15, 0.21, 0.20, 0.16, 0.14]
    results = _pair(m, c, seeds=(0, 1))
    (table,) = build_tables(results)
    adu = _rows(table)[("adu", "synth_small")]
    expected = paired_delta([dict(zip(FRAMES, [v + s / 100 for v in m])) for s in (0, 1)],
                            [dict(zip(FRAMES, c))] * 2)
    assert adu["cells"]["delta"] == pytest.approx((expected["delta"], *expected["ci"]))
    assert adu["cells"]["delta_p"] == pytest.approx(expected["p"])
    assert adu["cells"]["control"] == "baseline/synth_small"
    assert _rows(table)[("baseline", "synth_small")]["cells"]["delta"] is None  # the control itself
    line = next(ln for ln in render(results, "github").splitlines() if ln.startswith("| adu "))
    assert f"{expected['delta']:+.3f} [{expected['ci'][0]:+.3f}, {expected['ci'][1]:+.3f}]" in line
    rows = list(csv.DictReader(io.StringIO(render(results, "csv"))))
    adu_csv = next(r for r in rows if r["method"] == "adu")
    assert float(adu_csv["delta_low"]) == pytest.approx(expected["ci"][0], abs=1e-6)


def test_old_files_and_missing_controls_are_marked():
    old = [fake_result("adu", 0, 0.1), fake_result("baseline", 0, 0.2)]  # no per_frame, no control
    (table,) = build_tables(old)
    assert {r["cells"]["delta"] for r in table.rows if r["role"] == "student"} == {NO_PER_FRAME}
    assert NO_PER_FRAME in render(old, "github") and "per drive" not in render(old, "github", per_drive=True)
    lonely = [_with_frames(fake_result("adu", 0, 0), [0.1] * 6, {"method": "baseline", "profile": "synth_small"})]
    assert _rows(build_tables(lonely)[0])[("adu", "synth_small")]["cells"]["delta"] == NO_CONTROL_ROW


def test_per_drive_table_flags_an_outlier_drive():
    results = _pair([0.1, 0.1, 0.8, 0.8, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    text = render(results, "github", per_drive=True)
    per_drive = text.split("**per drive:")[1]
    header = next(ln for ln in per_drive.splitlines() if ln.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")][2:] == ["0001", "0002", "0003"]
    adu = next(ln for ln in per_drive.splitlines() if ln.startswith("| adu "))
    assert "0.800*" in adu and "0.100*" not in adu
    page = render(results, "html")
    assert page.count('class="flag"') == 1 and "per drive" in page  # always on the html page


def test_fewer_seeds_are_marked_and_never_ranked_above_more():
    results = [fake_result("adu", 0, 0.05)] + [fake_result("baseline", s, 0.2) for s in range(3)]
    (table,) = build_tables(results)
    students = [r for r in table.rows if r["role"] == "student"]
    assert [r["cells"]["method"] for r in students] == ["baseline", "adu"]
    assert students[1]["unranked"] and "seeds" in students[1]["flags"]
    line = next(ln for ln in render(results, "github").splitlines() if ln.startswith("| adu "))
    assert "| 1*" in line
    assert "\\textbf{0.050}" not in render(results, "latex")  # not bold either


def test_budgets_are_separate_tables_that_state_their_budget():
    six, twelve = fake_result("adu", 0, 0.2), fake_result("baseline", 0, 0.1)
    six["config"]["schedule"] = {"epochs": 6, "batch_size": 8}
    twelve["config"]["schedule"] = {"epochs": 12, "batch_size": 8}
    tables = build_tables([six, twelve])
    assert len(tables) == 2 and {t.key for t in tables} == {"p1"}
    assert sorted("6 epochs" in t.title for t in tables) == [False, True]
    assert all(len([r for r in t.rows if r["role"] == "student"]) == 1 for t in tables)


def test_cached_teacher_and_mean_depth_once_per_table():
    results = []
    for profile in ("synth_small", "synth_small_stereo"):
        for s in range(3):
            r = fake_result("baseline", s, 0.2 + s / 100, profile=profile)
            r["teacher"] = {"type": "stereo", "key": "k0", "cached": s > 0}
            r["metrics"]["mean_depth"] = {"abs_rel": 0.23}
            r["datasets"]["train"] = {"fingerprint": "f0", "frames": 10}
            results.append(r)
    (table,) = build_tables(results)
    refs = [r for r in table.rows if r["role"] != "student"]
    assert [r["cells"]["method"] for r in refs] == ["teacher:stereo", "mean_depth"]
    assert all(r["cells"]["seeds"] is None for r in refs)
    assert refs[0]["cells"]["abs_rel"] == (pytest.approx(0.05), None)  # no "± 0.000"
    assert refs[0]["cells"]["profile"] == "synth_small, synth_small_stereo"
    ref_lines = [ln for ln in render(results, "github").splitlines() if ln.startswith(("| teacher", "| mean_depth"))]
    assert len(ref_lines) == 2 and not any("±" in ln for ln in ref_lines)


def test_metrics_option_chooses_columns_extra_metrics_included():
    results = [fake_result("adu", 0, 0.1), fake_result("baseline", 0, 0.2)]
    for r in results:
        r["metrics"]["student"]["silog"] = 12.0
    (table,) = build_tables(results, metrics=parse_metrics("silog, abs_rel"))
    assert [c.key for c in table.columns if c.kind == "stat"] == ["silog", "abs_rel"]
    (ranked,) = build_tables(results, metric="a1", metrics=["silog"])
    assert [c.key for c in ranked.columns if c.kind == "stat"] == ["a1", "silog"]
    with pytest.raises(HarnessError, match="option --metrics: 'nope' not in the results"):
        build_tables(results, metrics=["abs_rel", "nope"])
    with pytest.raises(HarnessError, match="option --metrics"):
        parse_metrics(" , ")


def test_cost_columns_are_never_bold():
    results = [fake_result("adu", 0, 0.1, cost=COST),
               fake_result("baseline", 0, 0.2, cost=dict(COST, student=dict(COST["student"], params=5)))]
    (table,) = build_tables(results, costs=lambda r: r.get("cost"))
    assert all(c.better is None for c in table.columns if c.key in ("params", "gflops", "cpu_ms", "peak_mb"))


def test_cli_metrics_and_per_drive(tmp_path, capsys):
    from harness.cli import main as cli

    from .helpers import write

    for r in _pair([0.1, 0.1, 0.8, 0.8, 0.1, 0.1], [0.1] * 6):
        r["metrics"]["student"]["silog"] = 11.0
        write(tmp_path, r)
    assert cli.main(["leaderboard", "--results", str(tmp_path), "--no-cost", "--metrics", "silog,abs_rel",
                     "--per-drive"]) == 0
    out = capsys.readouterr().out
    header = next(ln for ln in out.splitlines() if ln.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")][3:5] == ["silog", "abs_rel"]
    assert "**per drive:" in out
    assert cli.main(["leaderboard", "--results", str(tmp_path), "--metrics", "abs_rel,nope"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("harness: error: option --metrics") and "'nope'" in err[0]
