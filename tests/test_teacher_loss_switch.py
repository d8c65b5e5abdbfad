"""``teacher_train.loss``: the stereo teacher's supervised loss is a switch, part of the teacher
cache key and recorded in the result."""
import json

import pytest
import torch

from harness import HarnessError
from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.models.stereo_teacher import StereoTeacher
from harness.pipeline import teacher_cache
from harness.pipeline.run import run
from harness.pipeline.train import TeacherTrainModel


def test_teacher_train_model_passes_the_loss_and_the_key_covers_it():
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=16, base_width=8)
    K = torch.eye(3).expand(1, 3, 3).clone()
    K[:, 0, 0] = 40.0
    batch = {"image": torch.rand(1, 3, 32, 64), "image_right": torch.rand(1, 3, 32, 64), "K": K,
             "baseline": torch.full((1,), 0.5), "depth_gt": torch.full((1, 1, 32, 64), 5.0)}
    assert set(TeacherTrainModel(teacher)(**batch)) == {"loss", "term.disp_l1", "term.disp_rel"}
    assert set(TeacherTrainModel(teacher, "silog")(**batch)) == {"loss", "term.silog"}
    base = {"epochs": 1, "seed": 0}
    keys = {teacher_cache.teacher_key({"type": "stereo"}, dict(base, **extra), "fp", (32, 64))
            for extra in ({}, {"loss": "silog"})}
    assert len(keys) == 2


def _baseline_cfg(*options):
    host = PluginHost()
    entry = host.catalog.get("methods", "baseline")
    return host, build_run_config(method="baseline", method_config=entry.extra.get("config"), quick=True,
                                  cfg_options=["progress=False", "evaluate.mean_depth=False", *options])


@pytest.mark.slow
def test_silog_teacher_is_trained_cached_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host, cfg = _baseline_cfg("teacher_train.loss=silog")
    result, _ = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    assert result["teacher"]["train_loss"] == "silog"
    meta = json.loads(next((tmp_path / "cache" / "teachers").glob("*/meta.json")).read_text())
    assert meta["train"]["loss"] == "silog" and meta["key"] == result["teacher"]["key"]
    host, cfg = _baseline_cfg("teacher_train.loss=l2")
    with pytest.raises(HarnessError, match="teacher_train.loss"):
        run(cfg, host, work_dir=tmp_path / "work2", results_dir=tmp_path / "results")
