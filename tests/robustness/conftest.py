"""Fixtures of the robustness tests: one synthetic 640x192 street frame (KITTI-C's size) and a
tiny synthetic data set at 64x192."""
from __future__ import annotations

import pytest

from harness.data import formats, synth


@pytest.fixture(scope="session")
def street_640(tmp_path_factory):
    """A ``uint8 192 x 640 x 3`` frame of the synthetic set (buildings, road, cars, sky)."""
    root = tmp_path_factory.mktemp("street640")
    synth.generate(root, frames=2, seed=0, height=192, width=640, frames_per_drive=2)
    path = root / "2000_01_01" / "2000_01_01_drive_0001_sync" / "image_02" / "data" / "0000000001.png"
    return formats.read_image(path)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic data set (64 x 192, 4 drives of 5 frames)."""
    root = tmp_path_factory.mktemp("tinysynth")
    synth.generate(root, frames=20, seed=0, height=64, width=192, frames_per_drive=5)
    return root
