"""An in-process ``--quick`` run of the ``adu`` method through the public plugin hooks."""
import json

import pytest

from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.run import run
from stereodistill_plugins import adu


@pytest.mark.slow
def test_adu_quick_run_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost(extra_plugins=[adu])
    cfg = build_run_config(method="adu", method_config=str(adu.CONFIG), quick=True,
                           cfg_options=["progress=False", "schedule.epochs=2"])
    result, path = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    saved = json.loads(path.read_text())
    assert saved["method"] == "adu" and saved["teacher"]["mode"] == "frozen"
    assert saved["teacher"]["type"] == "stereo"
    terms = result["losses"]["student"]
    assert {"gt", "feat", "resp", "unc"} <= set(terms)
    assert terms["feat"] > 0 and terms["resp"] > 0
    assert result["protocol"]["scale"] == "none"
    assert result["metrics"]["student"]["abs_rel"] > 0
    assert "teacher" in result["metrics"]
