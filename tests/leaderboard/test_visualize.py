"""`harness visualize`: colormap, run selection, robustness charts, error paths; one slow
end-to-end test (quick runs over two seeds -> leaderboard files -> pictures)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness.cli import main as cli

from harness.report import visualize
from harness.errors import HarnessError

from .helpers import fake_result, write


def test_colormap_is_perceptual_near_is_bright_invalid_is_black():
    depth = np.array([[1.0, 5.0, 20.0, 80.0]])
    valid = np.array([[True, True, True, False]])
    rgb = visualize.colorize(depth, valid, lo=1.0, hi=80.0).astype(float)
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert luminance[0, 0] > luminance[0, 1] > luminance[0, 2]  # nearer is brighter
    assert (rgb[0, 3] == 0).all()
    assert rgb.shape == (1, 4, 3)


def test_select_runs_one_per_method_and_protocol():
    other_frames = fake_result("adu", 0, 0.1, pid="p2")
    other_frames["protocol"]["resolution"] = [64, 192]
    results = [fake_result("adu", 1, 0.1), fake_result("adu", 0, 0.1), fake_result("baseline", 2, 0.1), other_frames]
    with pytest.raises(HarnessError, match="option --protocol: the results hold 2 test sets"):
        visualize.select_runs(results)
    median = fake_result("ssmde", 0, 0.1, pid="p3")  # another scaling policy, the same test frames
    median["protocol"]["scale"] = "median"
    assert [r["method"] for r in visualize.select_runs([*results[:3], median])] == ["adu", "baseline", "ssmde"]
    runs = visualize.select_runs(results, protocol="p1")
    assert [(r["method"], r["seed"]) for r in runs] == [("adu", 0), ("baseline", 2)]  # lowest seed each
    runs = visualize.select_runs(results, protocol="p1", methods=["baseline", "adu"])
    assert [r["method"] for r in runs] == ["baseline", "adu"]  # column order as asked
    with pytest.raises(HarnessError, match="no result matches protocol p1 seed 5"):
        visualize.select_runs(results, protocol="p1", seed=5)


def test_run_options_and_work_dirs(tmp_path, monkeypatch):
    with pytest.raises(HarnessError, match="expected METHOD=WORK_DIR"):
        visualize.parse_runs(["adu"])
    with pytest.raises(HarnessError, match="is not a directory"):
        visualize.parse_runs([f"adu={tmp_path / 'absent'}"])
    assert visualize.parse_runs([f"adu={tmp_path}"]) == {"adu": tmp_path}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HarnessError, match="pass --run adu=WORK_DIR"):
        visualize.run_work_dir(fake_result("adu", 0, 0.1), {})
    (tmp_path / "work_dirs" / "adu" / "seed0").mkdir(parents=True)  # the CLI's default layout
    assert visualize.run_work_dir(fake_result("adu", 0, 0.1), {}).resolve() == tmp_path / "work_dirs" / "adu" / "seed0"
    with pytest.raises(HarnessError, match="no checkpoint of stage"):
        visualize.stage_checkpoint(tmp_path, ["student"])


def _rob_result(method, seed, dees):
    r = fake_result(method, seed, 0.1)
    r["robustness"] = {"spec_id": "s1", "clean": {"dee": 0.2},
                       "per_corruption": {n: {"dee": d} for n, d in dees.items()}, "summary": {"mRR": 90.0 + seed}}
    return r


def test_robustness_charts(tmp_path):
    import matplotlib.image

    results = [_rob_result("adu", 0, {"fog": 0.3, "dark": 0.4}), _rob_result("adu", 1, {"fog": 0.35, "dark": 0.4}),
               _rob_result("baseline", 0, {"fog": 0.5}), fake_result("plain", 0, 0.1)]
    (path,) = visualize.robustness_charts(results, tmp_path)
    assert path.name == "robustness_p1_s1.png"
    img = matplotlib.image.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert visualize.robustness_charts([fake_result("plain", 0, 0.1)], tmp_path / "none") == []


def test_visualize_cli_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, fake_result("adu", 0, 0.1))
    assert cli.main(["visualize", "--results", str(tmp_path), "--frames", "0"]) == 2
    assert "option --frames" in capsys.readouterr().err
    assert cli.main(["visualize", "--results", str(tmp_path), "--only", "robustness"]) == 2
    assert "no result has robustness metrics" in capsys.readouterr().err
    assert cli.main(["visualize", "--results", str(tmp_path), "--only", "qualitative"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert len(err) == 1 and "pass --run adu=WORK_DIR" in err[0]


@pytest.mark.slow
def test_seeds_leaderboard_files_and_pictures_end_to_end(tmp_path):
    env = dict(os.environ, STEREODISTILL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    harness = [sys.executable, "-m", "harness.cli"]
    res, work = tmp_path / "results", tmp_path / "work"

    def run(*args):
        out = subprocess.run([*harness, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    run("run", "--method", "baseline", "--quick", "--seeds", "0,1", "--results", str(res), "--work-dir", str(work))
    files = sorted(p.name for p in res.glob("*.json"))
    assert files == ["baseline__synth__quick__seed0.json", "baseline__synth__quick__seed1.json"]
    r = json.loads((res / files[1]).read_text())
    assert r["seed"] == 1 and r["work_dir"] == str(work / "seed1")
    assert r["cost"]["student"]["params"] > 0 and r["cost"]["teacher"]["flops"] > 0
    for fmt, name in (("github", "leaderboard.md"), ("html", "leaderboard.html")):
        run("leaderboard", "--results", str(res), "--format", fmt, "--out", str(res / name))
    md = (res / "leaderboard.md").read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith("| baseline "))
    assert "| 2 " in row and "±" in row  # two seeds, mean ± std
    run("visualize", "--results", str(res), "--frames", "2", "--out-dir", str(tmp_path / "fig"))
    import matplotlib.image

    img = matplotlib.image.imread(tmp_path / "fig" / "qualitative.png")
    assert img.shape[0] > 100 and img.shape[1] > 4 * img.shape[0] / 2  # 2 rows, 4 columns


def test_recorded_work_dir_wins_and_profile_specific_run_option(tmp_path):
    recorded, other, specific = (tmp_path / n for n in ("recorded", "other", "specific"))
    for d in (recorded, other, specific):
        d.mkdir()
    r = dict(fake_result("baseline", 0, 0.1), work_dir=str(recorded), profile="synth_small_stereo")
    # --run baseline=... must not hand the GT baseline's checkpoint to the stereo profile
    assert visualize.run_work_dir(r, {"baseline": other}) == recorded
    moved = dict(r, work_dir=str(tmp_path / "gone"))
    assert visualize.run_work_dir(moved, {"baseline": other, "baseline:synth_small_stereo": specific}) == specific
    assert visualize.run_work_dir(moved, {"baseline": other}) == other
