"""The robustness CLI (`harness list corruptions`, `harness data corrupt`, `harness run
--eval-robustness`, `harness leaderboard --robustness`) and an end-to-end quick run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import main as cli
from harness.cli import run as cli_run
from harness.config.loader import build_run_config
from harness.data import corruptions as C
from harness.data import formats
from harness.errors import HarnessError
from harness.host.manager import PluginHost
from harness.pipeline.run import run
from tests.plugins import sample_method


def test_list_corruptions(capsys):
    assert cli.main(["list", "corruptions"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == list(C.CORRUPTIONS)


def test_corrupt_one_image_same_seed_same_bytes(tmp_path, street_640, capsys):
    src = tmp_path / "in.png"
    formats.write_image(src, street_640)
    outs = []
    for i, seed in enumerate((5, 5, 6)):
        out = tmp_path / f"out{i}.png"
        assert cli.main(["data", "corrupt", "--input", str(src), "--corruption", "snow", "--severity", "3",
                         "--seed", str(seed), "--out", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    expect = C.corrupt(street_640, "snow", 3, seed=5)
    np.testing.assert_array_equal(formats.read_image(tmp_path / "out0.png"), expect)
    grid = tmp_path / "grid.png"
    assert cli.main(["data", "corrupt", "--input", str(src), "--grid", "--corruption", "fog,dark",
                     "--severity", "1,5", "--out", str(grid)]) == 0
    assert formats.read_image(grid).shape == (36 + 2 * (36 + 192), 3 * 640, 3)  # labels scale with the cells
    capsys.readouterr()


@pytest.mark.parametrize("argv, fragment", [
    (["--corruption", "rain", "--severity", "1"], "unknown corruption"),
    (["--corruption", "fog", "--severity", "9"], "severity"),
    (["--corruption", "fog"], "needs both"),
])
def test_corrupt_errors_are_one_line(tmp_path, street_640, capsys, argv, fragment):
    src = tmp_path / "in.png"
    formats.write_image(src, street_640[:32, :32])
    assert cli.main(["data", "corrupt", "--input", str(src), "--out", str(tmp_path / "o.png"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness: error: ") and fragment in err[0]


def test_corrupt_dataset_writes_robodepth_layout(tmp_path, tiny_synth, capsys):
    out = tmp_path / "synth_c"
    assert cli.main(["data", "corrupt", "--dataset", "synth", "--data-root", str(tiny_synth), "--out", str(out),
                     "--corruption", "fog", "--severity", "2", "--split", "test",
                     "--height", "64", "--width", "192"]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files and all(f.split("/")[0] in ("clean", "fog") for f in files)
    assert any(f.startswith("fog/2/kitti_data/2000_01_01/") and "/image_02/data/" in f for f in files)
    assert json.loads((out / "corruption_manifest.json").read_text())["conditions"] == ["fog/2"]
    capsys.readouterr()


def test_run_options_set_the_config():
    parser = cli.build_parser()
    cfg = build_run_config(method="baseline", method_config=None, quick=True)
    args = parser.parse_args(["run", "--method", "baseline", "--corruption", "fog", "--severity", "2"])
    cli_run._configure_robustness(cfg, args, ["evaluate.robustness.max_frames=3"])
    assert dict(cfg.evaluate.robustness) == {"enabled": True, "corruptions": "fog", "severities": "2", "max_frames": 3}
    args = parser.parse_args(["run", "--method", "baseline"])
    with pytest.raises(HarnessError, match="unknown config key"):
        cli_run._configure_robustness(cfg, args, ["evaluate.robustness.frames=3"])
    with pytest.raises(HarnessError, match="dee"):
        cli_run._configure_robustness(cfg, args, ["evaluate.robustness.dee=dee9"])


@pytest.mark.slow
def test_quick_runs_with_robustness_and_the_leaderboard(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    common = ["--quick", "--results", str(results), "--cfg-options", "evaluate.teacher=False", "progress=False",
              "evaluate.mean_depth=False", "evaluate.robustness.max_frames=3"]
    # the baseline through the CLI, with a -c dataset (robustness implied) and two conditions
    assert cli.main(["run", "--method", "baseline", "--dataset", "synth-c", "--corruption", "fog,jpeg_compression",
                     "--severity", "1,5", "--work-dir", str(tmp_path / "w0"), *common]) == 0
    base = json.loads((results / "baseline__synth-c__quick__seed0.json").read_text())
    rob = base["robustness"]
    assert sorted(rob["conditions"]) == ["fog/1", "fog/5", "jpeg_compression/1", "jpeg_compression/5"]
    assert rob["spec"]["frames"] == 3 and rob["summary"]["mCE"] == pytest.approx(100.0) and not rob["complete"]
    assert rob["per_corruption"]["fog"]["severities"] == [1, 5]
    # a second method in-process: its CE is computed against the baseline result file
    host = PluginHost(extra_plugins=[sample_method])
    cfg = build_run_config(method="sample", method_config=None, dataset_config=None, quick=True,
                           cfg_options=["evaluate.teacher=False", "progress=False", "evaluate.mean_depth=False"])
    cfg.data["dataset"] = "synth-c"
    cfg.evaluate["robustness"] = dict(enabled=True, corruptions="fog,jpeg_compression", severities="1,5", max_frames=3)
    result, _ = run(cfg, host, work_dir=tmp_path / "w1", results_dir=results)
    other = result["robustness"]
    assert other["spec_id"] == rob["spec_id"] and other["reference"]["seeds"] == [0]
    for name in ("fog", "jpeg_compression"):
        p = other["per_corruption"][name]
        assert p["ce"] == pytest.approx(p["dee"] / rob["per_corruption"][name]["dee"])
    capsys.readouterr()
    assert cli.main(["leaderboard", "--results", str(results), "--robustness"]) == 0
    table = capsys.readouterr().out
    assert "| baseline" in table and "| sample" in table and "CE fog" in table
