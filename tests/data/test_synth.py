"""The procedural generator: layout, determinism, splits, and geometric consistency.

Consistency thresholds (all in 8-bit grey levels, measured on the default 96x320 size):

* Stereo: left vs. the right image sampled at ``x - d`` (bilinear), on pixels that pass a
  left-right check against BOTH right pixels the sample interpolates (|d_R - d_L| < 0.5 px) and
  have depth. Observed mean abs error 0.9-1.4 (uint8 rounding of both images ~0.3, the rest is
  linear interpolation across texture edges, which are pre-filtered over 2 pixels, and a few
  silhouettes whose disparity jump is < 0.5 px). Threshold 1.6 per image: the same warp
  shifted by only 0.5 px already gives 2.3-3.5, so a half-pixel error in fx, cx, the baseline or
  the disparity sign fails the test.
* Temporal: frame t+1 warped into t with the GT depth of t and T_t2s from poses.txt, on valid
  pixels whose four bilinear source neighbours see the same surface (depth within 3 %).
  Observed median error ~0.3-0.4 and >= 95 % of pixels within 8 levels (texture level-of-detail
  changes with distance between frames); an identity pose instead gives far worse numbers.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.data import formats, synth

H, W = 96, 320
FRAMES, FPD = 12, 4  # 3 drives of 4 frames: one drive per split


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    calls = []
    stats = synth.generate(root, frames=FRAMES, seed=3, height=H, width=W, frames_per_drive=FPD,
                           progress=lambda done, total: calls.append((done, total)))
    return root, stats, calls


def _drive_dir(root: Path, k: int) -> Path:
    return root / synth.DATE / synth.drive_name(k)


def _gt_path(root: Path, split: str, k: int, frame: int, cam: int = 2) -> Path:
    sub = "train" if split == "train" else "val"
    return (root / "data_depth_annotated" / sub / synth.drive_name(k) / "proj_depth" / "groundtruth"
            / f"image_0{cam}" / f"{frame:010d}.png")


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ layout
def test_layout_calibration_and_stats(synth_set):
    root, stats, calls = synth_set
    assert stats["frames"] == FRAMES and stats["drives"] == 3
    assert stats["frames_per_second"] > 0 and stats["seconds"] > 0
    assert stats["fingerprint"] == synth.fingerprint(root)
    assert calls[-1] == (FRAMES, FRAMES) and len(calls) == FRAMES
    cam = formats.read_calib(root / synth.DATE / "calib_cam_to_cam.txt")
    assert cam["calib_time"] == synth.CALIB_TIME
    assert (root / synth.DATE / "calib_cam_to_cam.txt").read_text().startswith("calib_time: ")
    assert cam["S_rect_02"].tolist() == [W, H]
    P2, P3 = cam["P_rect_02"].reshape(3, 4), cam["P_rect_03"].reshape(3, 4)
    fx = 721.5377 * W / 1242
    assert P2[0, 0] == pytest.approx(fx, rel=1e-6) and P2[1, 1] == P2[0, 0]
    assert P2[0, 2] == W / 2 and P2[1, 2] == pytest.approx(0.46 * H)
    assert P2[0, 3] == 0 and P3[0, 3] == pytest.approx(-P3[0, 0] * 0.54, rel=1e-6)
    np.testing.assert_array_equal(cam["R_rect_00"].reshape(3, 3), np.eye(3))
    velo = formats.read_calib(root / synth.DATE / "calib_velo_to_cam.txt")
    np.testing.assert_allclose(velo["R"].reshape(3, 3), synth.VELO_R)
    np.testing.assert_allclose(velo["T"], synth.VELO_T)
    for k in range(3):
        d = _drive_dir(root, k)
        for t in range(FPD):
            left = formats.read_image(d / "image_02" / "data" / f"{t:010d}.png")
            assert left.shape == (H, W, 3)
            assert (d / "image_03" / "data" / f"{t:010d}.png").is_file()
            assert (d / "velodyne_points" / "data" / f"{t:010d}.bin").is_file()
            labels = formats.read_labels(d / "semantic" / "image_02" / "data" / f"{t:010d}.png")
            assert labels.max() <= 6
        assert formats.read_poses(d / "poses.txt").shape == (FPD, 4, 4)


def test_splits_are_by_drive_and_counts_match_synth_json(synth_set):
    root, _, _ = synth_set
    meta = json.loads((root / "synth.json").read_text())
    assert meta["generator"] == synth.GENERATOR and meta["seed"] == 3
    assert meta["params"]["frames"] == FRAMES and meta["params"]["height"] == H
    drives_by_split = {}
    for split in ("train", "val", "test"):
        rows = formats.read_split(root / "splits" / f"{split}_files.txt")
        folders = {f for f, _, _ in rows}
        drives_by_split[split] = folders
        assert meta["counts"][split]["samples"] == len(rows)
        assert meta["counts"][split]["drives"] == len(meta["drives"][split]) == len(folders)
        assert meta["counts"][split]["frames"] == FPD * len(folders)
        assert {f.split("/")[1] for f in folders} == set(meta["drives"][split])
        for folder, frame, side in rows:
            assert side == "l" and 1 <= frame <= FPD - 2  # t-1 and t+1 exist
            assert (root / folder / "image_02" / "data" / f"{frame + 1:010d}.png").is_file()
        # depth GT of train drives under 'train', of val/test drives under 'val'
        for name in meta["drives"][split]:
            k = int(name.split("_drive_")[1][:4]) - 1
            assert _gt_path(root, split, k, 0).is_file()
    a, b, c = drives_by_split.values()
    assert not (a & b or a & c or b & c)
    assert sum(m["frames"] for m in meta["counts"].values()) == FRAMES


def test_split_assignment_fractions():
    assert synth._assign_splits(10, (0.7, 0.15, 0.15)).count("train") == 7
    parts = synth._assign_splits(3, (0.7, 0.15, 0.15))
    assert sorted(parts) == ["test", "train", "val"]
    assert synth._assign_splits(1, (0.7, 0.15, 0.15)) == ["train"]
    with pytest.raises(ValueError):
        synth._assign_splits(3, (1.0, -1.0, 0.0))


# ------------------------------------------------------------------------------ determinism
def test_determinism_same_seed_identical_different_seed_differs(tmp_path):
    kw = dict(frames=6, height=32, width=96, frames_per_drive=3)
    synth.generate(tmp_path / "a", seed=11, **kw)
    synth.generate(tmp_path / "b", seed=11, **kw, workers=2)  # processes give the same bytes
    synth.generate(tmp_path / "c", seed=12, **kw)
    a, b, c = (_all_files(tmp_path / x) for x in "abc")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert synth.fingerprint(tmp_path / "a") == hashlib.sha256(a["synth.json"]).hexdigest()
    assert synth.fingerprint(tmp_path / "a") != synth.fingerprint(tmp_path / "c")
    img = f"{synth.DATE}/{synth.drive_name(0)}/image_02/data/0000000000.png"
    assert a[img] != c[img]


def test_drive_does_not_depend_on_other_drives(tmp_path):
    kw = dict(seed=5, height=32, width=96, frames_per_drive=3)
    synth.generate(tmp_path / "one", frames=3, **kw)
    synth.generate(tmp_path / "three", frames=9, **kw)
    d = f"{synth.DATE}/{synth.drive_name(0)}"
    for rel in ("image_02/data/0000000001.png", "image_03/data/0000000002.png", "poses.txt",
                "velodyne_points/data/0000000000.bin"):
        assert (tmp_path / "one" / d / rel).read_bytes() == (tmp_path / "three" / d / rel).read_bytes()


def test_sensor_noise_is_optional():
    cam = synth.Camera.for_size(24, 80)
    clean = synth.DriveScene(0, 0, 3, cam).render(1)["rgb"].astype(int)
    again = synth.DriveScene(0, 0, 3, cam).render(1)["rgb"].astype(int)
    noisy = synth.DriveScene(0, 0, 3, cam, sensor_noise=2.0).render(1)["rgb"].astype(int)
    assert np.array_equal(clean, again)
    diff = np.abs(noisy - clean)
    assert 0.5 < diff.mean() < 4 and diff.max() <= 20


def test_depth_disparity_and_labels_in_memory():
    cam = synth.Camera.for_size(48, 160)
    f = synth.DriveScene(0, 1, 5, cam).frame(2)
    depth, disp, lab = f["depth"], f["disparity"], f["semantic"]
    assert depth.dtype == np.float32 and lab.dtype == np.uint8
    assert ((depth == 0) == (lab == synth.SKY)).all()  # sky <=> no depth
    valid = depth > 0
    np.testing.assert_allclose(disp[valid], cam.fx * cam.baseline / depth[valid], rtol=1e-5)
    assert (disp[~valid] == 0).all()
    assert 0 < depth.max() < synth.MAX_DEPTH
    assert {synth.ROAD, synth.BUILDING}.issubset(set(np.unique(lab).tolist()))


# ------------------------------------------------------------------------------ consistency
def _read_frame(root, k, t, split):
    d = _drive_dir(root, k)
    return (
        formats.read_image(d / "image_02" / "data" / f"{t:010d}.png").astype(np.float32),
        formats.read_image(d / "image_03" / "data" / f"{t:010d}.png").astype(np.float32),
        formats.read_png16(_gt_path(root, split, k, t, 2)),
        formats.read_png16(_gt_path(root, split, k, t, 3)),
    )


@pytest.mark.parametrize("k, split", [(0, "train"), (1, "val"), (2, "test")])
def test_stereo_consistency(synth_set, k, split):
    root, _, _ = synth_set
    cal = formats.read_calib(root / synth.DATE / "calib_cam_to_cam.txt")
    P2, P3 = cal["P_rect_02"].reshape(3, 4), cal["P_rect_03"].reshape(3, 4)
    fb = P2[0, 3] - P3[0, 3]  # fx * baseline
    for t in range(FPD):
        left, right, dl, dr = _read_frame(root, k, t, split)
        with np.errstate(divide="ignore"):
            disp_l = np.where(dl > 0, fb / dl, 0).astype(np.float32)
            disp_r = np.where(dr > 0, fb / dr, 0).astype(np.float32)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        xs = xx - disp_l
        x0 = np.floor(xs).astype(int)
        rows = yy.astype(int)
        ok = (dl > 0) & (x0 >= 0) & (x0 + 1 < W)
        x0c, x1c = np.clip(x0, 0, W - 1), np.clip(x0 + 1, 0, W - 1)
        ok &= (np.abs(disp_r[rows, x0c] - disp_l) < 0.5) & (np.abs(disp_r[rows, x1c] - disp_l) < 0.5)
        assert ok.mean() > 0.8
        errors = []
        for shift in (0.0, 0.5):
            warped = cv2.remap(right, xs - shift, yy, cv2.INTER_LINEAR)
            errors.append(np.abs(warped - left).mean(axis=2)[ok].mean())
        assert errors[0] < 1.6, f"stereo warp error {errors[0]:.2f}/255 (frame {t})"
        assert errors[1] > errors[0] + 0.5  # the test would catch a half-pixel error


def _temporal_stats(target, src, depth, depth_src, K, T):
    """Warp ``src`` into ``target`` with the target depth and ``T`` (target -> source camera).

    Returns (fraction of pixels used, median abs error, fraction with error < 8 levels) over
    valid pixels whose four bilinear source neighbours see the same surface (3 % depth)."""
    h, w = depth.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([xx, yy, np.ones_like(xx)], -1) @ np.linalg.inv(K).T
    X = (rays * depth[..., None]) @ T[:3, :3].T + T[:3, 3]
    z = X[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(z > 0, K[0, 0] * X[..., 0] / z + K[0, 2], -10)
        v = np.where(z > 0, K[1, 1] * X[..., 1] / z + K[1, 2], -10)
    ok = (depth > 0) & (u >= 0) & (u <= w - 2) & (v >= 0) & (v <= h - 2)
    ui = np.clip(np.floor(u).astype(int), 0, w - 2)
    vi = np.clip(np.floor(v).astype(int), 0, h - 2)
    for du in (0, 1):
        for dv in (0, 1):
            ok &= np.abs(depth_src[vi + dv, ui + du] - z) < 0.03 * z
    warped = cv2.remap(src.astype(np.float32), u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR)
    err = np.abs(warped - target.astype(np.float32)).mean(axis=2)[ok]
    return ok.mean(), float(np.median(err)), float((err < 8).mean())


@pytest.mark.parametrize("k, split", [(0, "train"), (2, "test")])
def test_temporal_consistency(synth_set, k, split):
    root, _, _ = synth_set
    poses = formats.read_poses(_drive_dir(root, k) / "poses.txt")
    cal = formats.read_calib(root / synth.DATE / "calib_cam_to_cam.txt")
    K = cal["P_rect_02"].reshape(3, 4)[:, :3]
    for t in range(FPD - 1):
        left, _, depth, _ = _read_frame(root, k, t, split)
        src, _, depth_src, _ = _read_frame(root, k, t + 1, split)
        T = np.linalg.inv(poses[t + 1]) @ poses[t]
        frac, median, within = _temporal_stats(left, src, depth, depth_src, K, T)
        assert frac > 0.4 and median < 1.0 and within > 0.9, (frac, median, within)
        _, _, within_static = _temporal_stats(left, src, depth, depth_src, K, np.eye(4))
        assert within_static < within - 0.05


def test_temporal_consistency_with_yaw():
    """A frame pair with the largest yaw step among the first drives (0.2 deg ~ 0.65 px): the
    rotation in T_t2s must be applied with the right sign."""
    cam = synth.Camera.for_size(H, W)
    scene = synth.DriveScene(1, 3, 20, cam)
    a, b = scene.frame(8), scene.frame(9)
    T = np.linalg.inv(b["pose"]) @ a["pose"]
    yaw = np.degrees(np.arctan2(T[0, 2], T[0, 0]))
    assert abs(yaw) > 0.15
    frac, median, within = _temporal_stats(a["left"], b["left"], a["depth"], b["depth"], cam.K, T)
    assert frac > 0.4 and median < 1.0 and within > 0.9, (frac, median, within)
    wrong = T.copy()
    wrong[:3, :3] = T[:3, :3].T  # rotation with the wrong sign
    _, median_wrong, within_wrong = _temporal_stats(
        a["left"], b["left"], a["depth"], b["depth"], cam.K, wrong
    )
    assert median_wrong > 2 * median and within_wrong < within - 0.08


def test_velodyne_projects_onto_dense_gt(synth_set):
    root, _, _ = synth_set
    cal = formats.read_calib(root / synth.DATE / "calib_cam_to_cam.txt")
    velo = formats.read_calib(root / synth.DATE / "calib_velo_to_cam.txt")
    P = cal["P_rect_02"].reshape(3, 4)
    R_rect = np.eye(4)
    R_rect[:3, :3] = cal["R_rect_00"].reshape(3, 3)
    Tr = np.eye(4)
    Tr[:3, :3] = velo["R"].reshape(3, 3)
    Tr[:3, 3] = velo["T"]
    P_velo2im = P @ R_rect @ Tr
    for k, split, t in ((0, "train", 1), (2, "test", 3)):
        pts = formats.read_velodyne(_drive_dir(root, k) / "velodyne_points" / "data" / f"{t:010d}.bin")
        assert pts.shape[1] == 4 and 2000 < len(pts) and np.all(pts[:, 3] == 0.5)
        assert np.all(pts[:, 0] > 0)  # in front of the car
        proj = np.c_[pts[:, :3], np.ones(len(pts))] @ P_velo2im.T
        w = proj[:, 2]
        u, v = proj[:, 0] / w, proj[:, 1] / w
        col, row = np.round(u).astype(int), np.round(v).astype(int)
        assert np.abs(u - col).max() < 1e-3 and np.abs(v - row).max() < 1e-3  # pixel centres
        assert col.min() >= 0 and col.max() < W and row.max() < H and len(np.unique(row)) >= 40
        dense = formats.read_png16(_gt_path(root, split, k, t))
        err = np.abs(dense[row, col] - w)
        assert err.max() <= 0.5 / 256 + 1e-3, err.max()  # PNG quantisation + float32 points
