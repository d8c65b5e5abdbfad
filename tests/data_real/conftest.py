"""Session-scoped fixture trees (written once per test session, copied where a test damages files)."""
from __future__ import annotations

import shutil

import pytest

from tests.data_real import fixtures


@pytest.fixture(scope="session")
def kitti_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti")
    info = fixtures.write_kitti(root)
    return root, info


@pytest.fixture(scope="session")
def ds_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("drivingstereo")
    info = fixtures.write_drivingstereo(root)
    return root, info


@pytest.fixture
def kitti_copy(kitti_root, tmp_path):
    """A private copy of the KITTI fixture that a test may damage."""
    dst = tmp_path / "kitti"
    shutil.copytree(kitti_root[0], dst)
    return dst


@pytest.fixture
def ds_copy(ds_root, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(ds_root[0], dst)
    return dst
