"""``harness run --dataset kitti|drivingstereo --data-root <fixture> --quick`` end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.config.loader import build_run_config
from harness.data import synth
from harness.host.manager import PluginHost
from harness.pipeline.run import run


@pytest.mark.slow
def test_cli_run_kitti_quick_on_kitti_layout(tmp_path):
    """The synth generator writes KITTI raw layout (with its own <root>/splits/*_files.txt):
    the KITTI loader trains on it with Velodyne GT and evaluates under the Eigen protocol."""
    root = tmp_path / "kitti"
    synth.generate(root, frames=24, height=64, width=192, frames_per_drive=8, seed=3, eval_frames_per_drive=0)
    env = dict(os.environ, STEREODISTILL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--method", "baseline", "--dataset", "kitti",
         "--data-root", str(root), "--quick", "--results", str(tmp_path / "res"), "--work-dir", str(tmp_path / "w"),
         "--cfg-options", "data.train.split=train", "data.val.split=val", "data.test.split=test", "progress=False"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "res" / "baseline__kitti__quick__seed0.json").read_text())
    p = result["protocol"]
    assert (p["dataset"], p["crop"], p["gt_mask"], p["gt_source"], p["scale"]) == (
        "kitti", "garg", "range", "velodyne", "none")  # baseline is metric: eval_scale_policy "none"
    assert result["datasets"]["test"]["frames"] == 6
    for role in ("student", "teacher", "mean_depth"):
        assert result["metrics"][role]["num_images"] == 6 and result["metrics"][role]["abs_rel"] > 0


@pytest.mark.slow
def test_run_drivingstereo_quick(tmp_path, ds_root, monkeypatch):
    root, _ = ds_root
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost()
    entry = host.catalog.get("datasets", "drivingstereo")
    method = host.catalog.get("methods", "baseline")
    cfg = build_run_config(method="baseline", method_config=method.extra.get("config"),
                           dataset_config=entry.extra["config"], quick=True,
                           cfg_options=["progress=False", "evaluate.teacher=False"])
    cfg.data["dataset"] = "drivingstereo"
    cfg.data["root"] = str(root)
    (tmp_path / "res").mkdir()
    result, path = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "res")
    assert path.name == "baseline__drivingstereo__quick__seed0.json"
    p = result["protocol"]
    assert (p["split"], p["crop"], p["gt_mask"], p["scale"]) == ("weather", "none", "positive", "none")  # baseline overrides median
    assert result["datasets"]["train"]["frames"] == 1  # 3-frame sequence, edges dropped, 1 held out
    assert result["metrics"]["student"]["num_images"] == 12
