"""`robustness.evaluate_conditions` on DrivingStereo (weather sets as conditions) and KITTI-C
fixtures, with a fixed predictor (no training)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.eval import robustness
from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.run import RunContext, evaluate_split
from tests.data_real import fixtures

CONFIGS = Path(__file__).resolve().parents[2] / "harness" / "config" / "configs" / "_base_" / "datasets"


def _ctx(tmp_path, dataset: str, root: Path, options: list[str]) -> RunContext:
    host = PluginHost()
    cfg = build_run_config(method="baseline", method_config=None, dataset_config=str(CONFIGS / f"{dataset}.py"),
                           cfg_options=["progress=False", *options])
    cfg.data["root"] = str(root)
    ctx = RunContext(cfg, host, work_dir=tmp_path / "work")
    ctx.prepare_data()
    return ctx


def _predict(x: torch.Tensor) -> torch.Tensor:  # brighter input -> nearer: corruptions change the error
    return 5.0 + 20.0 * x.mean(dim=1, keepdim=True)


def test_drivingstereo_weather_sets_and_corruptions(tmp_path):
    root = tmp_path / "ds"
    fixtures.write_drivingstereo(root, frames=2)
    ctx = _ctx(tmp_path, "drivingstereo-c", root, ["data.input_size=[64,128]"])
    ctx.cfg.evaluate["robustness"].update(corruptions="gaussian_noise", severities=[1, 5])
    test = ctx.build_dataset("test", frozenset({"image", "depth_gt", "depth_gt_mask", "meta"}))
    protocol = ctx.protocol(test, "median")
    clean = evaluate_split(_predict, test, protocol, ctx)
    rec = robustness.evaluate_conditions(ctx, _predict, test, protocol, clean, method="m", results_dir=tmp_path)
    assert sorted(rec["weather"]) == ["cloudy", "foggy", "rainy", "sunny"]
    assert all(m["num_images"] == 2 for m in rec["weather"].values())
    assert rec["clean"]["metrics"]["num_images"] == len(test) == 8
    assert sorted(rec["conditions"]) == ["gaussian_noise/1", "gaussian_noise/5"]
    assert rec["conditions"]["gaussian_noise/5"]["abs_rel"] != clean["abs_rel"]
    assert rec["summary"]["mCE"] is None and rec["summary"]["mRR"] is not None  # no baseline file yet
    assert rec["spec"]["weather"] == ["sunny", "cloudy", "foggy", "rainy"]


def test_kitti_c_published_reference_and_subsample(tmp_path):
    root = tmp_path / "kitti"
    fixtures.write_kitti(root, points_per_frame=300)
    split = fixtures.kitti_split(tmp_path / "split.txt", [("2011_09_26", t, "l") for t in range(1, 4)])
    ctx = _ctx(tmp_path, "kitti-c", root, [f"data.test.split={split}", "data.input_size=[64,192]"])
    ctx.cfg.evaluate["robustness"].update(corruptions="fog", severities="all", max_frames=2,
                                          reference="robodepth_monodepth2")
    test = ctx.build_dataset("test", frozenset({"image", "depth_gt", "depth_gt_mask", "meta"}))
    protocol = ctx.protocol(test, "median")
    clean = evaluate_split(_predict, test, protocol, ctx)
    rec = robustness.evaluate_conditions(ctx, _predict, test, protocol, clean, method="m")
    assert rec["spec"]["frames"] == 2 and rec["clean"]["metrics"]["num_images"] == 2
    fog = rec["per_corruption"]["fog"]
    assert fog["severities"] == [1, 2, 3, 4, 5]
    assert fog["ce"] == pytest.approx(fog["dee"] / 0.155)  # RoboDepth's MonoDepth2 fog DEE2
    assert rec["reference"]["name"] == "robodepth_monodepth2" and rec["weather"] == {}
    ctx.cfg.evaluate["robustness"]["enabled"] = False
    assert robustness.evaluate_conditions(ctx, _predict, test, protocol, clean, method="m") is None
