"""An in-process quick run of a third-party-style method and metric through the public hooks."""
import json

import pytest

from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.run import run
from tests.plugins import sample_method, sample_metric


@pytest.mark.slow
def test_sample_method_and_metric_run_without_core_edits(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost(extra_plugins=[sample_method, sample_metric])
    cfg = build_run_config(method="sample", method_config=None, quick=True,
                           cfg_options=["evaluate.teacher=False", "progress=False"])
    result, path = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    assert path.is_file() and json.loads(path.read_text())["method"] == "sample"
    assert "teacher" not in result["metrics"]
    student = result["metrics"]["student"]
    assert student["med_abs"] > 0 and student["abs_rel"] > 0
    assert result["losses"]["student"]["l1"] > 0
    assert result["protocol"]["scale"] == "none"


def test_configure_run_edits_are_read_by_the_run(tmp_path):
    """``harness_configure_run`` runs before anything reads the config: an edit of a runtime key
    (here mixed precision on a CPU run) is what the run acts on, not silently ignored."""
    from harness import HarnessError, hookimpl

    class Edits:
        @hookimpl
        def harness_configure_run(self, cfg):
            cfg.schedule["amp"] = "bf16"

    host = PluginHost(autoload=False, extra_plugins=[Edits()])
    cfg = build_run_config(method="baseline", method_config=None, quick=True, cfg_options=["device=cpu"])
    with pytest.raises(HarnessError, match="schedule.amp='bf16': mixed precision needs --device cuda"):
        run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
