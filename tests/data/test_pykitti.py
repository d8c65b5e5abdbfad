"""The synthetic set in KITTI raw layout, read by pykitti unchanged: calibration, OXTS poses,
timestamps and frames agree with the harness's own reading."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from harness.data import formats, oxts, synth
from harness.data.synth_dataset import SynthDataset

pykitti = pytest.importorskip("pykitti")

H, W, FPD = 32, 96, 6


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_pykitti")
    synth.generate(root, frames=3 * FPD, frames_per_drive=FPD, height=H, width=W, seed=2)
    return root


def _raw(root, k):
    return pykitti.raw(str(root), synth.DATE, f"{k + 1:04d}")


def test_calibration_matches_the_harness(root):
    kit = _raw(root, 0)
    ds = SynthDataset(root, "train")
    s = ds[0]
    np.testing.assert_allclose(kit.calib.K_cam2, s["K"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(kit.calib.K_cam3, ds._K(ds.frame_at(0), "r"), rtol=1e-6)
    assert kit.calib.b_rgb == pytest.approx(s["baseline"].item(), rel=1e-6)
    assert kit.calib.b_rgb == pytest.approx(synth.BASELINE, rel=1e-6)
    np.testing.assert_allclose(kit.calib.T_velo_imu[:3, :3], oxts.IMU_R)
    np.testing.assert_allclose(kit.calib.T_velo_imu[:3, 3], oxts.IMU_T)
    # velodyne -> camera 2 through pykitti's matrices lands the scan on the harness's projection
    pts = kit.get_velo(1)
    cam = (kit.calib.T_cam2_velo @ np.c_[pts[:, :3], np.ones(len(pts))].T)[:3]
    uvw = kit.calib.K_cam2 @ cam
    col, row = np.round(uvw[0] / uvw[2]).astype(int), np.round(uvw[1] / uvw[2]).astype(int)
    assert (ds.frame_at(0).folder, ds.frame_at(0).frame) == (f"{synth.DATE}/{synth.drive_name(0)}", 1)
    assert col.min() >= 0 and col.max() < W and row.min() >= 0 and row.max() < H
    np.testing.assert_allclose(ds.eval_gt(0)[row, col], uvw[2], atol=0.5 / 256 + 1e-3)


@pytest.mark.parametrize("k", [0, 2])
def test_oxts_poses_match_the_camera_poses(root, k):
    kit = _raw(root, k)
    poses = formats.read_poses(root / synth.DATE / synth.drive_name(k) / "poses.txt")
    assert len(kit.oxts) == len(kit) == len(poses) == FPD
    T_cam2_imu = kit.calib.T_cam2_imu
    cam = np.array([o.T_w_imu @ np.linalg.inv(T_cam2_imu) for o in kit.oxts])  # pykitti's camera 2 poses
    for t in range(FPD):
        mine = np.linalg.inv(poses[0]) @ poses[t]
        theirs = np.linalg.inv(cam[0]) @ cam[t]
        np.testing.assert_allclose(theirs[:3, 3], mine[:3, 3], atol=1e-4)
        np.testing.assert_allclose(theirs[:3, :3], mine[:3, :3], atol=1e-6)
    # the world is East-North-Up with the street heading east: the car drives east, the camera's
    # optical axis points east and its y axis down
    assert cam[-1][0, 3] - cam[0][0, 3] > 0.4 * (FPD - 1)
    np.testing.assert_allclose(cam[0][:3, 2], [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(cam[0][:3, 1], [0, 0, -1], atol=0.05)
    p = np.array([o.packet for o in kit.oxts], dtype=object)
    assert p.shape == (FPD, 30)
    # velocities are consistent with the positions: speed ~ distance per frame x 10 Hz
    step = np.linalg.norm(np.diff(np.array([o.T_w_imu[:3, 3] for o in kit.oxts]), axis=0), axis=1)
    speed = np.hypot(p[:, 6].astype(float), p[:, 7].astype(float))
    np.testing.assert_allclose(speed[1:-1], 0.5 * (step[:-1] + step[1:]) * oxts.RATE_HZ, rtol=0.02)
    np.testing.assert_allclose(p[:, 8].astype(float), speed, rtol=0.02)  # vf: driving forward
    assert np.abs(p[:, 13].astype(float) - oxts.GRAVITY).max() < 0.5  # az: gravity, level street


def test_timestamps_and_frames(root):
    kit = _raw(root, 1)
    assert len(kit.timestamps) == FPD
    steps = {(b - a) for a, b in zip(kit.timestamps[:-1], kit.timestamps[1:])}
    assert steps == {dt.timedelta(milliseconds=100)}
    drive = root / synth.DATE / synth.drive_name(1)
    for sensor in ("image_02", "image_03", "velodyne_points", "oxts"):
        lines = (drive / sensor / "timestamps.txt").read_text().splitlines()
        assert len(lines) == FPD and lines[0] == "2000-01-01 12:01:00.000000000"
    ds = SynthDataset(root, str(_split_with(root, 1)))
    for i in range(len(ds)):
        t = ds.frame_at(i).frame
        s = ds[i]
        left = np.asarray(kit.get_cam2(t))
        right = np.asarray(kit.get_cam3(t))
        np.testing.assert_array_equal(left, np.rint(s["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8))
        np.testing.assert_array_equal(right, np.rint(s["image_right"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8))
        np.testing.assert_array_equal(kit.get_velo(t), formats.read_velodyne(drive / "velodyne_points" / "data" / f"{t:010d}.bin"))


def _split_with(root, k):
    path = root / f"drive{k}_files.txt"
    formats.write_split(path, [(f"{synth.DATE}/{synth.drive_name(k)}", t, "l") for t in range(1, FPD - 1)])
    return path
