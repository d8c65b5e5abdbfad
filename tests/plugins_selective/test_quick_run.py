"""In-process ``--quick`` runs of ``selective`` through the public hooks (online teacher and
precomputed proxies), before the plugin has an entry point."""
from __future__ import annotations

import json

import pytest

import stereodistill_plugins.selective as plugin
from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.run import run

TERMS = {"photo", "smooth", "proxy", "mask", "ts"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("selective-cache")


def quick(tmp_path, monkeypatch, cache, *options):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(cache))
    host = PluginHost(extra_plugins=[plugin])
    cfg = build_run_config(method="selective", method_config=host.catalog.get("methods", "selective").extra["config"],
                           quick=True, cfg_options=["progress=False", *options])
    (tmp_path / "results").mkdir()
    return run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")


@pytest.mark.slow
def test_quick_run_online_teacher(tmp_path, monkeypatch, cache):
    result, path = quick(tmp_path, monkeypatch, cache, "method.baseline_norm=None")  # the metric-baseline variant
    assert json.loads(path.read_text())["method"] == "selective"
    assert set(result["losses"]["student"]) == TERMS | {"loss"}
    assert result["teacher"]["mode"] == "frozen" and result["protocol"]["scale"] == "none"
    student = result["metrics"]["student"]
    assert student["num_images"] > 0 and 0 < student["abs_rel"] < 10


@pytest.mark.slow
def test_quick_run_precomputed_proxies_with_normalised_baseline(tmp_path, monkeypatch, cache):
    result, _ = quick(tmp_path, monkeypatch, cache, "method.proxy_source=precomputed", "method.baseline_norm=0.1")
    assert set(result["losses"]["student"]) == TERMS | {"loss"}
    assert result["teacher"] is None or result["teacher"]["mode"] == "precomputed"
    assert result["protocol"]["scale"] == "stereo_factor"
    assert result["protocol"]["stereo_factor"] == pytest.approx(5.4)
    assert "precompute_s" in result["timings"]
