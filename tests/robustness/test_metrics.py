"""DEE, CE/mCE, RCE/RmCE, RR/mRR against hand-computed values and RoboDepth's published numbers;
reference rows from result files; the robustness leaderboard."""
from __future__ import annotations

import json

import pytest

from harness.report import leaderboard

from harness.eval import robustness
from harness.data.corruptions import CORRUPTIONS
from harness.errors import HarnessError
from harness.eval.robustness import ROBODEPTH_MONODEPTH2, clean_score, corruption_score, dee, summarize

# RoboDepth's DEE2 table of MonoDepth2 R18 *stereo* 640x192 (its get_scores_monodepth2_stereo), test data
MD2_STEREO_DEE2 = dict(zip(CORRUPTIONS, (0.133, 0.348, 0.161, 0.305, 0.515, 0.234, 0.390, 0.332, 0.264, 0.209,
                                         0.135, 0.200, 0.492, 0.509, 0.463, 0.493, 0.144, 0.194)), clean=0.123)


def test_dee_forms_hand_computed():
    # MonoDepth2 M on KITTI (paper): AbsRel 0.115, delta1 0.877 -> RoboDepth's clean row 0.238 / 0.119 / 0.131
    assert dee(0.115, 0.877, "dee1") == pytest.approx(0.238)
    assert dee(0.115, 0.877, "dee2") == pytest.approx(0.119)
    assert dee(0.115, 0.877, "dee3") == pytest.approx(0.115 / 0.877)
    assert clean_score({"abs_rel": 0.11512, "a1": 0.87681}, "dee3") == {"abs_rel": 0.115, "a1": 0.877, "dee": 0.131}
    with pytest.raises(ValueError):
        dee(0.1, 0.9, "dee4")


def test_corruption_score_rounds_like_robodepth():
    # levels rounded to 3 d.p.: abs_rel .100 .120 .150 .200 .251 -> mean .1642; a1 .900 .850 .800 .700 .600 -> .770
    levels = {1: {"abs_rel": 0.10012, "a1": 0.90049}, 2: {"abs_rel": 0.11961, "a1": 0.85},
              3: {"abs_rel": 0.15, "a1": 0.8}, 4: {"abs_rel": 0.2, "a1": 0.7}, 5: {"abs_rel": 0.2506, "a1": 0.6}}
    s = corruption_score(levels, "dee2")
    assert s["abs_rel"] == 0.164 and s["a1"] == 0.77
    assert s["dee"] == round((0.1642 - 0.77 + 1) / 2, 3) == 0.197
    assert corruption_score(levels, "dee3")["dee"] == round(0.1642 / 0.77, 3) == 0.213
    full = corruption_score(levels, "dee1", digits=None)
    assert full["dee"] == pytest.approx(sum(v["abs_rel"] - v["a1"] + 1 for v in levels.values()) / 5)


def test_summary_hand_computed():
    # clean 0.1; corruptions a, b with DEE 0.2, 0.3; reference clean 0.12, a = b = 0.25
    s = summarize(0.1, {"a": 0.2, "b": 0.3}, {"clean": 0.12, "a": 0.25, "b": 0.25})
    assert s["per_corruption"]["a"]["ce"] == pytest.approx(0.8)
    assert s["per_corruption"]["b"]["ce"] == pytest.approx(1.2)
    assert s["mCE"] == pytest.approx(100.0)
    assert s["per_corruption"]["a"]["rr"] == pytest.approx(0.8 / 0.9)
    assert s["mRR"] == pytest.approx(100 * (0.8 / 0.9 + 0.7 / 0.9) / 2)  # 83.333
    assert s["per_corruption"]["a"]["rce"] == pytest.approx(-0.1 / -0.13)
    assert s["RmCE"] == pytest.approx(100 * (0.1 / 0.13 + 0.2 / 0.13) / 2)  # 115.385
    assert s["mDEE"] == pytest.approx(0.25) and s["corruptions"] == 2
    # no reference: CE-based numbers are missing, mRR is not
    s = summarize(0.1, {"a": 0.2}, None)
    assert s["mCE"] is None and s["RmCE"] is None and s["mRR"] == pytest.approx(100 * 0.8 / 0.9)
    # a reference that lacks a corruption -> that CE and the mean are missing
    s = summarize(0.1, {"a": 0.2, "b": 0.3}, {"clean": 0.12, "a": 0.25})
    assert s["per_corruption"]["b"]["ce"] is None and s["mCE"] is None


def test_robodepth_published_numbers():
    ref = ROBODEPTH_MONODEPTH2["dee2"]
    assert set(ref) == {"clean", *CORRUPTIONS}
    corr = {n: ref[n] for n in CORRUPTIONS}
    s = summarize(ref["clean"], corr, ref)
    assert s["mCE"] == pytest.approx(100.0)
    assert round(s["mRR"], 2) == 84.46  # RoboDepth README: MonoDepth2 mono mRR 84.46
    stereo = {n: MD2_STEREO_DEE2[n] for n in CORRUPTIONS}
    s = summarize(MD2_STEREO_DEE2["clean"], stereo, ref)
    assert round(s["mCE"], 2) == 117.69  # README: MonoDepth2 stereo mCE 117.69
    assert round(s["mRR"], 2) == 79.05  # README: mRR 79.05
    # the three DEE tables agree with each other (to the published rounding)
    for n in ("clean", *CORRUPTIONS):
        assert ROBODEPTH_MONODEPTH2["dee1"][n] == pytest.approx(2 * ref[n], abs=0.0021)


def _result(method, seed, dees, clean, *, pid="P", sid="S", profile="synth_small", weather=None):
    return {
        "schema_version": 1, "method": method, "seed": seed, "profile": profile,
        "protocol": {"id": pid, "dataset": "synth", "split": "test", "resolution": [96, 320]},
        "metrics": {"student": {"abs_rel": 0.1}},
        "robustness": {
            "spec_id": sid, "spec": {"conditions": [f"{n}/1" for n in dees], "frames": 10, "seed": 0, "dee": "dee2"},
            "clean": {"dee": clean}, "per_corruption": {n: {"dee": d} for n, d in dees.items()},
            "weather": weather or {},
        },
    }


def test_find_baseline_reference(tmp_path):
    for seed, (a, c) in enumerate([(0.2, 0.10), (0.3, 0.12)]):
        (tmp_path / f"b{seed}.json").write_text(json.dumps(_result("baseline", seed, {"fog": a}, c)))
    (tmp_path / "other_spec.json").write_text(json.dumps(_result("baseline", 5, {"fog": 0.9}, 0.5, sid="T")))
    (tmp_path / "broken.json").write_text("{not json")
    found = robustness.find_baseline_reference(tmp_path, "P", "S")
    assert found["table"] == pytest.approx({"fog": 0.25, "clean": 0.11}) and found["seeds"] == [0, 1]
    assert robustness.find_baseline_reference(tmp_path, "Q", "S") is None


def test_reference_is_one_baseline_profile_never_a_mix(tmp_path):
    for profile, dee in (("gt_median", 0.2), ("stereo_median", 0.4)):
        for seed in (0, 1):
            (tmp_path / f"{profile}{seed}.json").write_text(
                json.dumps(_result("baseline", seed, {"fog": dee}, 0.1, profile=profile)))
    find = robustness.find_baseline_reference
    assert find(tmp_path, "P", "S", own_profile="synth_small") is None  # two candidates: ambiguous
    chosen = find(tmp_path, "P", "S", own_profile="synth_small", profile="stereo_median")
    assert chosen["profile"] == "stereo_median" and chosen["table"]["fog"] == pytest.approx(0.4)
    assert chosen["seeds"] == [0, 1]
    assert find(tmp_path, "P", "S", own_profile="gt_median")["table"]["fog"] == pytest.approx(0.2)
    assert find(tmp_path, "P", "S", profile="missing") is None
    (tmp_path / "gt_median0.json").unlink()
    (tmp_path / "gt_median1.json").unlink()
    assert find(tmp_path, "P", "S", own_profile="synth_small")["profile"] == "stereo_median"  # the only one


@pytest.mark.parametrize("name, parsed", [("baseline", ("baseline", None)),
                                          ("baseline:synth_small_median", ("baseline", "synth_small_median")),
                                          ("robodepth_monodepth2", ("robodepth_monodepth2", None))])
def test_parse_reference(name, parsed):
    assert robustness.parse_reference(name) == parsed


@pytest.mark.parametrize("name", ["base", "baseline:", "robodepth_monodepth2:x", ""])
def test_parse_reference_rejects(name):
    with pytest.raises(HarnessError, match="baseline:<profile>"):
        robustness.parse_reference(name, "option --robustness-reference")


def test_leaderboard_robustness_reference_profile():
    results = [_result("baseline", 0, {"fog": 0.2}, 0.1, profile="gt_median"),
               _result("baseline", 0, {"fog": 0.4}, 0.1, profile="stereo_median"),
               _result("m", 0, {"fog": 0.2}, 0.1, profile="synth_small")]
    rows = {(t["method"], t["profile"]): t for t in next(iter(leaderboard.robustness_tables(results).values()))["rows"]}
    assert rows[("m", "synth_small")]["stats"]["mCE"] is None  # two baseline profiles, none chosen
    assert rows[("baseline", "gt_median")]["stats"]["mCE"][0] == pytest.approx(100.0)  # its own profile
    chosen = leaderboard.robustness_tables(results, reference="baseline:stereo_median")
    rows = {(t["method"], t["profile"]): t for t in next(iter(chosen.values()))["rows"]}
    assert rows[("m", "synth_small")]["stats"]["mCE"][0] == pytest.approx(50.0)
    assert rows[("baseline", "gt_median")]["stats"]["mCE"][0] == pytest.approx(50.0)  # one reference for all


def test_leaderboard_robustness_table():
    results = [
        _result("baseline", 0, {"fog": 0.2, "snow": 0.4}, 0.1, weather={"foggy": {"abs_rel": 0.2}}),
        _result("baseline", 1, {"fog": 0.2, "snow": 0.4}, 0.1, weather={"foggy": {"abs_rel": 0.3}}),
        _result("m", 0, {"fog": 0.1, "snow": 0.4}, 0.1),
        _result("m", 1, {"fog": 0.3, "snow": 0.4}, 0.1),
    ]
    groups = leaderboard.robustness_tables(results)
    (key, g), = groups.items()
    rows = {t["method"]: t for t in g["rows"]}
    # m: CE fog 0.5 and 1.5 (mean 1.0 +- 0.707), CE snow 1 -> mCE 75 and 125
    assert rows["m"]["stats"]["fog"][0] == pytest.approx(1.0)
    assert rows["m"]["stats"]["fog"][1] == pytest.approx(0.7071, abs=1e-4)
    assert rows["m"]["stats"]["mCE"][0] == pytest.approx(100.0)
    assert rows["baseline"]["stats"]["mCE"] == (pytest.approx(100.0), pytest.approx(0.0))
    assert rows["baseline"]["stats"]["mRR"][0] == pytest.approx(100 * (0.8 / 0.9 + 0.6 / 0.9) / 2)
    assert rows["baseline"]["stats"]["foggy"][0] == pytest.approx(0.25)
    assert rows["m"]["stats"]["foggy"] is None  # missing, never averaged
    text = leaderboard.render_robustness(results)
    assert "mCE %" in text and "CE fog" in text and "foggy AbsRel" in text and "–" in text
    # without a baseline row there is no CE reference: mCE missing, mRR present
    only_m = leaderboard.robustness_tables(results[2:])
    (g,) = only_m.values()
    assert g["rows"][0]["stats"]["mCE"] is None and g["rows"][0]["stats"]["mRR"] is not None
    csv = leaderboard.render_robustness(results, fmt="csv")
    assert csv.splitlines()[0].startswith("protocol,spec,method,profile,seeds,clean DEE")
    # the published reference table (a KITTI-C row) can be chosen instead
    pub = leaderboard.robustness_tables(results, reference="robodepth_monodepth2")
    (g,) = pub.values()
    m0 = next(t for t in g["rows"] if t["method"] == "baseline")
    assert m0["stats"]["fog"][0] == pytest.approx(0.2 / 0.155)
