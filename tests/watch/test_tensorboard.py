"""TensorBoard and watchable runs: a quick ``adu`` run's event files, read back with TensorBoard's
own reader, hold every named loss term, lr, the val metrics and a depth grid; the switches."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.pipeline.watch import TENSORBOARD, RunClock, Watch


def _events(folder):
    from tensorboard.backend.event_processing import event_accumulator

    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {folder}"
    acc = event_accumulator.EventAccumulator(str(files[-1]), size_guidance={event_accumulator.IMAGES: 0,
                                                                            event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_quick_adu_run_writes_tensorboard_scalars_and_depth_grid(tmp_path, monkeypatch, capfd):
    from PIL import Image

    from harness.config.loader import build_run_config
    from harness.host.manager import PluginHost
    from harness.pipeline.run import run
    from stereodistill_plugins import adu

    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    cfg = build_run_config(method="adu", method_config=str(adu.CONFIG), quick=True, cfg_options=["vis_frames=2"])
    result, _ = run(cfg, PluginHost(), work_dir=tmp_path / "work", results_dir=tmp_path / "results")
    err = capfd.readouterr().err
    # the plan up front, the teacher announced, validation scores and the run-wide ETA (off a terminal)
    for text in ("stages   student: 1 epochs", "not cached: training it first", "student: val after epoch 1/1: abs_rel",
                 "eta", "tensorboard --logdir"):
        assert text in err, (text, err)

    acc = _events(tmp_path / "work" / "student")
    scalars = set(acc.Tags()["scalars"])
    terms = set(result["losses"]["student"]) - {"loss"}
    assert terms >= {"gt", "feat", "resp", "unc"}
    assert {f"term.{t}" for t in terms} | {"loss", "lr", "val/abs_rel", "val/a1"} <= scalars
    assert "depth/student" in acc.Tags()["images"]
    grid = np.asarray(Image.open(io.BytesIO(acc.Images("depth/student")[-1].encoded_image_string)))
    h, w = result["protocol"]["resolution"]
    assert grid.shape == (2 * h, 4 * w, 3)  # 2 frames x (input | GT | teacher | student)
    # the full config dump (not only device and stage), and the teacher's log kept in its cache entry
    dumps = [p for p in (tmp_path / "work" / "student").glob("*.py")]
    assert dumps and "adu" in dumps[0].read_text() and "teacher_train" in dumps[0].read_text()
    entry = tmp_path / "cache" / "teachers" / result["teacher"]["key"]
    assert list((entry / "logs").rglob("*.log")) and list((entry / "logs").rglob("events.out.tfevents.*"))
    assert not list((entry / "logs").rglob("*.pth"))
    assert json.loads((entry / "meta.json").read_text())["key"] == result["teacher"]["key"]


def test_tensorboard_switch_and_configured_visualizer():
    on = Watch.from_config({"visualizer": {"type": "Visualizer", "vis_backends": [{"type": "LocalVisBackend"}]}})
    assert [b["type"] for b in on.visualizer_cfg("s")["vis_backends"]] == ["LocalVisBackend", TENSORBOARD]
    off = Watch.from_config({"tensorboard": False,
                             "visualizer": {"type": "Visualizer", "vis_backends": [{"type": TENSORBOARD}]}})
    assert off.visualizer_cfg("s")["vis_backends"] == []
    a, b = on.visualizer_cfg("s")["name"], on.visualizer_cfg("s")["name"]
    assert a != b  # mmengine keeps visualizers by name: every stage Runner gets its own
    ckpt = Watch.from_config({"checkpoint": {"interval": 2, "max_keep_ckpts": 5}}).checkpoint_cfg()
    assert ckpt == {"type": "CheckpointHook", "interval": 2, "max_keep_ckpts": 5, "save_last": True}


@pytest.mark.parametrize("cfg, match", [
    ({"checkpoint": {"save_last": False}}, "checkpoint.save_last"),
    ({"checkpoint": {"interval": 0}}, "checkpoint.interval"),
    ({"vis_frames": -1}, "vis_frames"),
    ({"visualizer": "tensorboard"}, "config visualizer"),
])
def test_bad_watch_settings_are_one_line_errors(cfg, match):
    with pytest.raises(HarnessError, match=match):
        Watch.from_config(cfg)


def test_run_clock_eta_covers_every_planned_step(monkeypatch):
    clock = RunClock()
    clock.plan(10)
    clock.plan(30)  # a second stage
    assert clock.eta() is None
    now = [100.0]
    monkeypatch.setattr("harness.pipeline.watch.time.time", lambda: now[0])
    clock.step()
    now[0] = 104.0
    for _ in range(3):
        clock.step()
    assert clock.eta() == pytest.approx(4.0 / 4 * 36)


def test_watch_keys_are_declared_in_the_schema():
    from harness.config import schema
    from harness.config.loader import build_run_config

    cfg = build_run_config(method="baseline", method_config=None, quick=True,
                           cfg_options=["tensorboard=False", "vis_frames=0", "checkpoint.interval=2"])
    schema.check_run_config(cfg)
    cfg.vis_frames = "three"
    with pytest.raises(HarnessError, match="config vis_frames"):
        schema.check_run_config(cfg)
