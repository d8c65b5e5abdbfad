"""Leaderboard tables: grouping by protocol, seeds as mean ± std, missing cells, paper and cost
columns, and the github / LaTeX / CSV / HTML formats."""
import csv
import io
from html.parser import HTMLParser

import pytest

from harness.errors import HarnessError
from harness.report.leaderboard import build_tables, render
from harness.report.table import MISSING

from .helpers import COST, fake_result


def _rows(table):
    return {r["cells"]["method"]: r["cells"] for r in table.rows}


def test_seeds_are_mean_and_sample_std_with_the_seed_count():
    results = [fake_result("adu", s, v) for s, v in [(0, 0.10), (1, 0.12), (2, 0.17)]]
    (table,) = build_tables(results)
    adu = _rows(table)["adu"]
    assert adu["seeds"] == 3
    mean, std = adu["abs_rel"]
    assert mean == pytest.approx(0.13) and std == pytest.approx(0.0360555, abs=1e-6)  # sample std (n - 1)
    assert "0.130 ± 0.036" in render(results, "github")
    single = _rows(build_tables([fake_result("adu", 0, 0.1)])[0])["adu"]
    assert single["seeds"] == 1 and single["abs_rel"] == (pytest.approx(0.1), None)  # no spread from one seed


def test_groups_by_protocol_and_never_ranks_protocols_together():
    results = [fake_result("adu", 0, 0.30, pid="pA"), fake_result("baseline", 0, 0.20, pid="pA"),
               fake_result("adu", 0, 0.01, pid="pB")]
    tables = {t.key: t for t in build_tables(results)}
    assert set(tables) == {"pA", "pB"}
    a_students = [r["cells"]["method"] for r in tables["pA"].rows if r["role"] == "student"]
    assert a_students == ["baseline", "adu"]  # ranked by abs_rel, lower first
    assert _rows(tables["pA"])["adu"]["abs_rel"][0] == pytest.approx(0.30)  # pB's 0.01 never mixed in
    assert _rows(tables["pB"])["adu"]["seeds"] == 1
    text = render(results, "github")
    assert text.index("protocol pA") < text.index("0.300") < text.index("protocol pB") < text.index("0.010")


def test_profiles_are_separate_rows_of_one_protocol():
    results = [fake_result("baseline", 0, 0.2, profile="synth_small"), fake_result("baseline", 0, 0.1, profile="synth_benchmark")]
    (table,) = build_tables(results)
    students = [(r["cells"]["method"], r["cells"]["profile"]) for r in table.rows if r["role"] == "student"]
    assert students == [("baseline", "synth_benchmark"), ("baseline", "synth_small")]


def test_missing_cells_are_marked_never_averaged():
    results = [fake_result("adu", 0, 0.1), fake_result("adu", 1, 0.2, drop=("rmse",)), fake_result("m", 0, 0.3, drop=("a1",))]
    (table,) = build_tables(results)
    rows = _rows(table)
    assert rows["adu"]["rmse"] is None  # one seed lacks it: not the mean of the other seed
    assert rows["adu"]["abs_rel"][0] == pytest.approx(0.15)
    assert rows["m"]["a1"] is None
    line = next(ln for ln in render(results, "github").splitlines() if ln.startswith("| adu "))
    assert MISSING in line
    non_finite = _rows(build_tables([fake_result("x", 0, float("nan"))])[0])["x"]
    assert non_finite["abs_rel"] is None


def test_reference_rows_are_deduplicated_per_seed_and_ranked_after_students():
    results = [fake_result("adu", 0, 0.1), fake_result("baseline", 0, 0.2), fake_result("baseline", 1, 0.2)]
    (table,) = build_tables(results)
    assert [r["role"] for r in table.rows] == ["student", "student", "teacher"]
    assert _rows(table)["teacher:stereo"]["seeds"] == 2  # seeds 0 and 1, seed 0 counted once


def test_latex_is_booktabs_with_the_best_student_bold_per_direction():
    results = [fake_result("adu", 0, 0.10, a1=0.80), fake_result("baseline", 0, 0.20, a1=0.90)]
    text = render(results, "latex")
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    adu = next(ln for ln in text.splitlines() if ln.startswith("adu &"))
    base = next(ln for ln in text.splitlines() if ln.startswith("baseline &"))
    assert "\\textbf{0.100}" in adu and "\\textbf{0.200}" not in base  # abs_rel: lower is better
    assert "\\textbf{0.900}" in base and "\\textbf{0.800}" not in adu  # a1: higher is better
    assert "\\textbf{0.500}" not in text  # sq_rel ties everywhere: nothing bold
    assert "abs\\_rel" in text and "teacher:stereo" in text and "$\\pm$" not in adu
    multi = render([fake_result("adu", s, 0.1 + s / 100) for s in range(2)], "latex")
    assert "0.105 $\\pm$ 0.007" in multi


def test_csv_holds_raw_means_and_stds():
    results = [fake_result("adu", 0, 0.1), fake_result("adu", 1, 0.2)]
    rows = list(csv.DictReader(io.StringIO(render(results, "csv"))))
    adu = next(r for r in rows if r["method"] == "adu")
    assert adu["protocol"] == "p1" and adu["seeds"] == "2"
    assert float(adu["abs_rel"]) == pytest.approx(0.15) and float(adu["abs_rel_std"]) == pytest.approx(0.0707107, abs=1e-6)
    teacher = next(r for r in rows if r["method"].startswith("teacher"))
    assert teacher["paper_abs_rel"] == ""  # missing: empty, not 0


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.scripts, self.links = [], [], []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"protocol": attrs.get("data-protocol"), "headers": [], "rows": []})
        elif tag == "th":
            self.tables[-1]["headers"].append(attrs.get("data-key"))
        elif tag == "tr" and self.tables and self.tables[-1]["headers"]:
            self.tables[-1]["rows"].append([])
        elif tag == "td":
            self.tables[-1]["rows"][-1].append((attrs.get("data-v"), attrs.get("class") or ""))
        elif tag == "script":
            self._in_script = True
            self.links.append(attrs.get("src"))
        elif tag in ("link", "img", "iframe"):
            self.links.append(attrs.get("href") or attrs.get("src"))

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def test_html_is_one_sortable_table_per_protocol_without_network():
    results = [fake_result("adu", 0, 0.1, pid="pA"), fake_result("baseline", 0, 0.2, pid="pA", drop=("rmse",)),
               fake_result("adu", 0, 0.3, pid="pB")]
    page = render(results, "html")
    parser = _Cells()
    parser.feed(page)
    assert [t["protocol"] for t in parser.tables] == ["pA", "pB"]
    assert parser.links == [None]  # one inline script, no external resource
    assert "http://" not in page and "https://" not in page
    assert "addEventListener(\"click\"" in "".join(parser.scripts)  # headers sort on click
    a = parser.tables[0]
    col = a["headers"].index("abs_rel")
    values = [row[col][0] for row in a["rows"]]
    assert [float(v) for v in values] == pytest.approx([0.1, 0.2, 0.05])  # numeric sort keys
    rmse = a["headers"].index("rmse")
    base = next(row for row in a["rows"] if row[0][0] == "baseline")
    assert base[rmse] == ("", "missing")  # missing sorts last (empty key)
    adu = next(row for row in a["rows"] if row[0][0] == "adu")
    assert "best" in adu[col][1]


def test_paper_numbers_only_beside_the_same_protocol():
    papers = {"adu": [{"label": "kitti", "protocol_id": "pA", "metrics": {"abs_rel": 0.097, "a1": 0.9}, "note": ""}]}
    results = [fake_result("adu", 0, 0.1, pid="pA"), fake_result("adu", 0, 0.1, pid="pB")]
    tables = {t.key: t for t in build_tables(results, papers=papers)}
    assert _rows(tables["pA"])["adu"]["paper_abs_rel"] == pytest.approx(0.097)
    assert _rows(tables["pA"])["adu"]["paper_a1"] == pytest.approx(0.9)
    assert _rows(tables["pB"])["adu"]["paper_abs_rel"] is None  # other protocol: a missing mark
    assert "paper_a1" not in [c.key for c in tables["pB"].columns]


def test_cost_columns_and_teacher_student_ratio():
    results = [fake_result("adu", 0, 0.1, cost=COST), fake_result("adu", 1, 0.1, cost=COST)]
    (table,) = build_tables(results, costs=lambda r: r.get("cost"))
    rows = _rows(table)
    assert rows["adu"]["params"] == 1_000_000 and rows["adu"]["gflops"] == pytest.approx(2.0)
    assert rows["adu"]["ts_flops"] == pytest.approx(4.0)
    assert rows["teacher:stereo"]["params"] == 3_000_000 and rows["teacher:stereo"]["ts_flops"] is None
    keys = [c.key for c in table.columns]
    assert "gpu_ms" not in keys  # no GPU measurement in any row
    text = render(results, "github", costs=lambda r: r.get("cost"))
    assert "1.00M" in text and "4.0×" in text
    (no_cost,) = build_tables(results)
    assert "params" not in [c.key for c in no_cost.columns]


def test_bad_options():
    results = [fake_result("adu", 0, 0.1)]
    with pytest.raises(HarnessError, match="option --format"):
        render(results, "pdf")
    with pytest.raises(HarnessError, match="option --metric"):
        render(results, "github", metric="nope")
    with pytest.raises(HarnessError, match="no result files"):
        render([], "github")
