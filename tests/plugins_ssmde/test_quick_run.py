"""An in-process ``--quick`` run of ssmde through the harness (precomputed pseudo-depth included)."""
from __future__ import annotations

import json

import pytest

import stereodistill_plugins.ssmde as plugin
from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.run import run


@pytest.mark.slow
def test_ssmde_quick_run(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost(extra_plugins=[plugin])
    entry = host.catalog.get("methods", "ssmde")
    cfg = build_run_config(method="ssmde", method_config=entry.extra["config"], quick=True,
                           # a smoke test: full-resolution photo/geo only (the unit tests cover 4 scales)
                           cfg_options=["progress=False", "evaluate.mean_depth=False", "evaluate.teacher=False",
                                        "method.scales=[0]"])
    (tmp_path / "results").mkdir()
    result, path = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    assert json.loads(path.read_text())["method"] == "ssmde"
    assert set(result["losses"]) == {"A", "B"}
    assert {"photo", "geo", "pseudo"} <= set(result["losses"]["A"]) and "kd" not in result["losses"]["A"]
    assert {"photo", "geo", "pseudo", "kd"} <= set(result["losses"]["B"])
    assert result["losses"]["B"]["pseudo"] < result["losses"]["A"]["pseudo"] * 1.5
    assert result["protocol"]["scale"] == "median"
    assert "total_epochs" not in result["config"]["method"]  # the strategy's, from the run (not a config edit)
    assert result["metrics"]["student"]["abs_rel"] > 0
    assert "precompute_s" in result["timings"]  # the pseudo-depth came from the configured teacher
