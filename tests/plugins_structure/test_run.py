"""An in-process ``--quick`` run of the structure method through the public hooks, plus the
plugin's registration and its configure-run hook."""
import json

import pytest

from harness.config.loader import build_run_config
from harness.host.manager import PluginHost
from harness.pipeline.run import run

import stereodistill_plugins.structure as plugin


def test_registers_method_and_semantic_teacher():
    host = PluginHost(autoload=False, extra_plugins=[plugin])
    cat = host.catalog
    assert "structure" in cat.names("methods") and "semantic" in cat.names("teachers")
    assert cat.get("methods", "structure").extra["config"] == str(plugin.CONFIG)


@pytest.mark.parametrize("profile", [None, "synth_small"])
def test_configure_run_keeps_the_semantic_teacher(profile):
    from harness.config.loader import CONFIG_DIR

    host = PluginHost(autoload=False, extra_plugins=[plugin])
    cfg = build_run_config(method="structure", method_config=str(plugin.CONFIG),
                           config_file=str(CONFIG_DIR / f"{profile}.py") if profile else None,
                           quick=profile is None, cfg_options=["teacher_train.batch_size=4"])
    host.configure_run(cfg)
    assert cfg.teacher.type == "semantic" and "max_disp" not in cfg.teacher
    assert cfg.teacher_train.flip_mode == "mirror" and cfg.teacher_train.batch_size == 4
    assert cfg.evaluate.teacher is False


@pytest.mark.slow
def test_quick_run_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost(extra_plugins=[plugin])
    cfg = build_run_config(method="structure", method_config=str(plugin.CONFIG), quick=True,
                           cfg_options=["progress=False"])
    cfg.evaluate["robustness"] = {"enabled": True, "corruptions": ["fog", "pixelate"], "severities": [3]}
    result, path = run(cfg, host, work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    assert json.loads(path.read_text())["method"] == "structure"
    losses = result["losses"]["student"]
    assert set(losses) == {"loss", "photo", "smooth", "dsc", "ltd", "graph"}
    assert all(v > 0 for v in losses.values())
    assert result["protocol"]["scale"] == "median"
    assert result["teacher"]["type"] == "semantic" and result["teacher"]["mode"] == "frozen"
    assert "teacher" not in result["metrics"]
    student = result["metrics"]["student"]
    assert 0 < student["abs_rel"] < 1.5

    # the saved student, rebuilt from the work dir, reproduces the clean number in the
    # split-evaluation loop; the robustness evaluation scores it under corruption
    from harness.deploy.predict import load_student
    from harness.eval.loop import evaluate_split
    from harness.eval.protocol import Protocol

    saved = load_student(host, str(tmp_path / "work"))
    data = result["config"]["data"]
    test = host.catalog.build("datasets", data["dataset"], root=result["datasets"]["test"]["root"],
                              height=saved.input_size[0], width=saved.input_size[1], need=frozenset({"image", "meta"}),
                              seed=0, **dict(data.get("test") or {}, split=result["datasets"]["test"]["split"]))
    protocol = Protocol.from_dict({k: v for k, v in result["protocol"].items() if k != "id"})
    clean = evaluate_split(saved.model.predict, test, protocol).summary
    assert clean["abs_rel"] == pytest.approx(student["abs_rel"], abs=1e-5)
    conditions = result["robustness"]["conditions"]
    assert set(conditions) == {"fog/3", "pixelate/3"}
    assert conditions["fog/3"]["abs_rel"] != result["robustness"]["clean"]["metrics"]["abs_rel"]
