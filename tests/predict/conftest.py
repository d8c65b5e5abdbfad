"""A fake run folder (run_config.json + an mmengine-style checkpoint) without any training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from harness.data import formats
from harness.host.manager import PluginHost

INPUT_SIZE = (64, 96)


@pytest.fixture(scope="session")
def host():
    return PluginHost()


def make_run(root, host, *, student="resnet", spec=None, method="baseline", stages=("student",), seed=0):
    """``root/run_config.json`` and ``root/<stage>/epoch_1.pth`` per stage (the wrapper's
    ``student.*`` weights, a strategy and a teacher entry, pickled training state); returns
    (run dir, the last stage's student)."""
    spec = dict(spec or {"base_width": 8})
    root.mkdir(parents=True, exist_ok=True)
    config = {"student": dict(spec, type=student), "data": {"input_size": list(INPUT_SIZE)},
              "method": {"type": method}}
    record = {"method": method, "student": student, "stages": list(stages), "config": config}
    (root / "run_config.json").write_text(json.dumps(record))
    model = None
    for i, stage in enumerate(stages):
        torch.manual_seed(seed + i)
        model = host.catalog.build("students", student, **spec).eval()
        for p in model.parameters():  # distinct weights per stage
            p.data.normal_(0, 0.05)
        state = {f"student.{k}": v for k, v in model.state_dict().items()}
        state["strategy.adapter.weight"] = torch.ones(3)
        state["teacher.conv.weight"] = torch.ones(2)
        (root / stage).mkdir(exist_ok=True)
        ckpt = root / stage / "epoch_1.pth"
        torch.save({"meta": {"hub": HistoryBuffer([1.0], [1])}, "state_dict": state}, ckpt)
        (root / stage / "last_checkpoint").write_text(str(ckpt))
    return root, model


@pytest.fixture
def fake_run(tmp_path, host):
    return make_run(tmp_path / "work", host)


def texture(h, w, seed=0):
    """A random smooth colour texture, uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(h // 4 + 1, w // 4 + 1, 3))
    import cv2

    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    for i, (h, w) in enumerate([(50, 77), (64, 96), (120, 200)]):
        formats.write_image(folder / f"img{i}.png", texture(h, w, seed=i))
    (folder / "notes.txt").write_text("not an image")
    return folder
