"""In-process ``--quick`` run of the ``recursive`` method through the public hooks."""
import json
import warnings

import pytest

import stereodistill_plugins.recursive as recursive
from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.run import run


@pytest.mark.slow
def test_recursive_quick_run_records_student_and_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost(extra_plugins=[recursive])
    entry = host.catalog.get("methods", "recursive")
    cfg = build_run_config(method="recursive", method_config=entry.extra["config"], quick=True,
                           cfg_options=["progress=False"])
    (tmp_path / "results").mkdir()
    # --quick sets knobs only now: the RSD models arrive as configured, nothing is dropped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, path = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    assert not [w for w in caught if "dropped" in str(w.message)]
    saved = json.loads(path.read_text())
    assert saved["method"] == "recursive" and saved["student"] == "rsd_mono"
    assert saved["teacher"]["type"] == "rsd_stereo" and saved["teacher"]["mode"] == "online"
    assert saved["protocol"]["scale"] == "none"
    for who in ("student", "teacher"):  # the teacher's own metrics are recorded with the student's
        m = saved["metrics"][who]
        assert m["abs_rel"] > 0 and m["rmse"] > 0
    assert set(saved["losses"]) == {"joint", "distill"}
    joint, distill = saved["losses"]["joint"], saved["losses"]["distill"]
    self_terms = {"mono_ap", "mono_lr", "mono_sm", "stereo_ap", "stereo_lr", "stereo_sm"}
    assert self_terms <= set(joint) and not {"out", "feat", "nl"} & set(joint)
    assert self_terms | {"out", "feat", "nl"} <= set(distill)
    assert saved["config"]["data"]["train"]["flip_mode"] == "swap"
    # the teacher gate scored both nets on val after the joint stage and recorded its decision
    gate = saved["method_notes"]["teacher_gate"]
    assert gate["distilled"] == (gate["teacher_val_abs_rel"] < gate["student_val_abs_rel"])
