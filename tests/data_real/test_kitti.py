"""KITTI loader: calibration, the Eigen Velodyne export (vs a per-point reference), splits, samples."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from harness.data import formats
from harness.data.kitti import SHIPPED_SPLITS, KittiCalib, KittiDataset, resolve_split, velodyne_depth
from harness.errors import HarnessError
from tests.data_real import fixtures
from tests.data_real.reference import eigen_gt_per_point as reference_eigen_gt

A, B = "2011_09_26", "2011_09_30"


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------
def test_calibration_keys_and_calib_time_string(kitti_root):
    root, _ = kitti_root
    cal = KittiCalib(root / A)
    assert cal.size == (267, 881)  # S_rect_02 is "width height"
    assert cal.cam.data["calib_time"] == "09-Jan-2012 13:57:47"  # stays a string
    np.testing.assert_allclose(cal.P(2), fixtures.P_rect(A, 2), rtol=1e-6)
    np.testing.assert_allclose(cal.R_rect, fixtures.R_RECT_00, rtol=1e-6)
    np.testing.assert_allclose(cal.Tr_velo_to_cam[:3, 3], fixtures.VELO_T, rtol=1e-6)
    assert cal.cam_x(3) - cal.cam_x(2) == pytest.approx(fixtures.BASELINE, rel=1e-5)
    np.testing.assert_allclose(cal.velo_to_image(2), fixtures.velo_to_image(A), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("line, message", [
    (None, "calibration key 'P_rect_02' is missing"),
    ("P_rect_02: 7.2e+02 zero 6.0e+02", "'P_rect_02' has non-numeric value '7.2e+02 zero 6.0e+02'"),
    ("P_rect_02: 1 2 3", "'P_rect_02' has 3 numbers, expected 12"),
    ("P_rect_02: 1.0.0 2 3", "bad number in 'P_rect_02'"),
])
def test_bad_calibration_is_one_clear_error(tmp_path, line, message):
    fixtures.write_kitti_calib(tmp_path, A)
    path = tmp_path / "calib_cam_to_cam.txt"
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("P_rect_02:")]
    if line:
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(HarnessError, match="calib_cam_to_cam.txt") as exc:
        KittiCalib(tmp_path).P(2)
    assert message in str(exc.value) and "\n" not in str(exc.value)


# --------------------------------------------------------------------------------------------
# Velodyne -> depth
# --------------------------------------------------------------------------------------------
def test_special_points_duplicates_behind_and_out_of_frame():
    W, H = fixtures.DATES[A][:2]
    pts, expect = fixtures.special_points(A)
    M = fixtures.velo_to_image(A)
    x = fixtures.to_bin_points(pts)[:, 0].astype(np.float64)
    for mode in ("monodepth2", "min"):
        d = velodyne_depth(fixtures.to_bin_points(pts), M, H, W, duplicates=mode)
        assert d.dtype == np.float32 and d.shape == (H, W)
        # behind (x < 0) and out-of-frame points leave no trace: exactly the 3 pixels
        assert sorted(map(tuple, np.argwhere(d > 0).tolist())) == sorted(expect.values())
        assert d[expect["triple"]] == np.float32(x[1])  # nearest of 12, 10, 11 m (LiDAR x value)
    md2 = velodyne_depth(fixtures.to_bin_points(pts), M, H, W)
    clean = velodyne_depth(fixtures.to_bin_points(pts), M, H, W, duplicates="min")
    # pair on Monodepth2's colliding index: (60, W-1) gets the min of both pixels' returns
    # (15 m, a point of the other pixel), (61, 0) keeps its last written return (18 m)
    assert md2[expect["pair_a"]] == np.float32(x[5]) and md2[expect["pair_b"]] == np.float32(x[6])
    assert clean[expect["pair_a"]] == np.float32(x[3]) and clean[expect["pair_b"]] == np.float32(x[5])
    # value choice: LiDAR forward x (Eigen export) vs projective depth w
    w_map = velodyne_depth(fixtures.to_bin_points(pts), M, H, W, vel_depth=False)
    assert w_map[expect["triple"]] == pytest.approx(10.0, abs=1e-4)


def test_hand_projection_rounding_and_w_zero():
    M = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])  # u = x/z, v = y/z, w = z
    pts = np.array([
        [4.0, 2.0, 2.0, 0],    # u=2, v=1 -> col 1, row 0
        [5.0, 1.0, 2.0, 0],    # u=2.5 -> round half to even 2 -> col 1; v=0.5 -> 0 -> row -1: dropped
        [7.0, 3.0, 2.0, 0],    # u=3.5 -> 4 -> col 3; v=1.5 -> 2 -> row 1
        [5.0, 3.0, 0.0, 0],    # w = 0: dropped (no inf/nan index)
        [-4.0, 2.0, 2.0, 0],   # behind: dropped
    ], dtype=np.float32)
    d = velodyne_depth(pts, M, 3, 5)
    expected = np.zeros((3, 5), np.float32)
    expected[0, 1] = 4.0
    expected[1, 3] = 7.0
    np.testing.assert_array_equal(d, expected)
    d_w = velodyne_depth(pts, M, 3, 5, vel_depth=False)
    assert d_w[0, 1] == 2.0 and d_w[1, 3] == 2.0


@pytest.mark.parametrize("mode", ["monodepth2", "min"])
@pytest.mark.parametrize("vel_depth", [True, False])
def test_vectorised_export_equals_per_point_reference(kitti_root, mode, vel_depth):
    root, _ = kitti_root
    for date in (A, B):
        W, H = fixtures.DATES[date][:2]
        drive = fixtures.DRIVES[date]
        M = KittiCalib(root / date).velo_to_image(2)
        for t in (0, 3):
            pts = formats.read_velodyne(root / date / drive / "velodyne_points" / "data" / f"{t:010d}.bin")
            # dense duplicates: also add every point again, shifted in depth, in a shuffled order
            rng = np.random.default_rng(t)
            extra = pts[rng.permutation(len(pts))[: len(pts) // 3]].copy()
            extra[:, :3] *= 1.0 + rng.uniform(-1e-3, 1e-3, (len(extra), 1)).astype(np.float32)
            pts = np.concatenate([pts, extra])
            got = velodyne_depth(pts, M, H, W, vel_depth=vel_depth, duplicates=mode)
            ref = reference_eigen_gt(pts, M, H, W, vel_depth=vel_depth, duplicates=mode)
            np.testing.assert_array_equal(got > 0, ref > 0)
            np.testing.assert_allclose(got, ref.astype(np.float32), rtol=1e-6, atol=0)


def test_truncated_velodyne_is_one_clear_error(kitti_copy):
    path = kitti_copy / A / fixtures.DRIVES[A] / "velodyne_points" / "data" / "0000000002.bin"
    path.write_bytes(path.read_bytes()[:-6])
    split = fixtures.kitti_split(kitti_copy / "s.txt", [(A, 2, "l")])
    with pytest.raises(HarnessError, match=r"0000000002\.bin: Velodyne file size \d+ bytes is not a multiple of 16"):
        KittiDataset(kitti_copy, str(split)).eval_gt(0)


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, lines", [("eigen", 697), ("eigen_benchmark", 652), ("eigen_zhou", 39810),
                                         ("eigen_zhou_train", 39810), ("eigen_zhou_val", 4424)])
def test_shipped_splits(name, lines):
    path = resolve_split(None, name)
    assert path.name == SHIPPED_SPLITS[name].split("/")[-1]
    assert len(formats.read_split(path)) == lines


def test_split_resolution_and_errors(kitti_root, tmp_path):
    root, _ = kitti_root
    own = fixtures.kitti_split(tmp_path / "r" / "splits" / "mine_files.txt", [(A, 1, "l")])
    assert resolve_split(own.parent.parent, "mine") == own
    with pytest.raises(HarnessError, match="split 'nope': not a shipped split"):
        KittiDataset(root, "nope")
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{A}/{fixtures.DRIVES[A]} 1 x\n")
    with pytest.raises(HarnessError, match=r"bad\.txt:1: side must be 'l' or 'r'"):
        KittiDataset(root, str(bad))


def test_padded_and_unpadded_lines_and_auto_gt(kitti_root, tmp_path):
    root, _ = kitti_root
    rows = [(A, 5, "l"), (B, 6, "r")]
    p1 = fixtures.kitti_split(tmp_path / "p.txt", rows, padded=True)
    p2 = fixtures.kitti_split(tmp_path / "u.txt", rows, padded=False)
    d1, d2 = KittiDataset(root, str(p1)), KittiDataset(root, str(p2))
    assert [(s.folder, s.frame, s.side) for s in d1.samples] == [(s.folder, s.frame, s.side) for s in d2.samples]
    assert d1.gt_source == "velodyne"
    assert KittiDataset(root, str(p1), vel_depth=False, duplicates="min").gt_source == "velodyne_camz_nearest"
    assert KittiDataset(root, str(p1), gt_source="dense").gt_source == "dense"
    assert d1.frame_lines == [ln for ln in p1.read_text().splitlines()]
    np.testing.assert_array_equal(d1.eval_gt(1), d2.eval_gt(1))


# --------------------------------------------------------------------------------------------
# improved GT (annotated PNGs)
# --------------------------------------------------------------------------------------------
def test_dense_gt_searched_in_train_and_val_and_merged_layout(kitti_root, tmp_path):
    root, _ = kitti_root
    split = fixtures.kitti_split(tmp_path / "s.txt", [(A, 5, "l"), (B, 7, "r")])
    ds = KittiDataset(root, str(split), gt_source="dense")
    for i, (date, subset, cam) in enumerate(((A, "train", 2), (B, "val", 3))):
        png = (root / "data_depth_annotated" / subset / fixtures.DRIVES[date] / "proj_depth" / "groundtruth"
               / f"image_0{cam}" / f"{ds.samples[i].frame:010d}.png")
        raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(ds.eval_gt(i), raw.astype(np.float32) / 256.0)
        assert ds.eval_gt(i).shape == fixtures.DATES[date][1::-1]
    # Monodepth2's merged tree <root>/<date>/<drive>/proj_depth/...
    merged = tmp_path / "merged"
    src = root / "data_depth_annotated" / "train" / fixtures.DRIVES[A] / "proj_depth"
    dst = merged / A / fixtures.DRIVES[A] / "proj_depth"
    dst.parent.mkdir(parents=True)
    dst.symlink_to(src)
    (merged / A / "calib_cam_to_cam.txt").symlink_to(root / A / "calib_cam_to_cam.txt")
    one = fixtures.kitti_split(tmp_path / "one.txt", [(A, 5, "l")])
    np.testing.assert_array_equal(KittiDataset(merged, str(one), gt_source="dense").eval_gt(0), ds.eval_gt(0))


@pytest.mark.parametrize("kind", ["rgb", "grey8"])
def test_8bit_or_rgb_png_where_uint16_required(kitti_copy, kind):
    png = (kitti_copy / "data_depth_annotated" / "train" / fixtures.DRIVES[A] / "proj_depth" / "groundtruth"
           / "image_02" / "0000000005.png")
    H, W = fixtures.DATES[A][1], fixtures.DATES[A][0]
    cv2.imwrite(str(png), np.zeros((H, W, 3) if kind == "rgb" else (H, W), np.uint8))
    split = fixtures.kitti_split(kitti_copy / "s.txt", [(A, 5, "l")])
    with pytest.raises(HarnessError, match=r"0000000005\.png: expected a single-channel 16-bit PNG"):
        KittiDataset(kitti_copy, str(split), gt_source="dense").eval_gt(0)


# --------------------------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------------------------
def test_sample_keys_intrinsics_and_stereo(kitti_root, tmp_path):
    root, _ = kitti_root
    split = fixtures.kitti_split(tmp_path / "s.txt", [(A, 3, "l"), (B, 4, "r")])
    ds = KittiDataset(root, str(split), height=96, width=320)
    assert len(ds) == 2 and set(ds[0]) == set(KittiDataset.provides)
    s = ds[0]
    W, H, fx, cx, cy = fixtures.DATES[A]
    for key in ("image", "image_right"):
        assert s[key].shape == (3, 96, 320) and s[key].dtype == torch.float32
    assert set(s["frames"]) == {-1, 1}
    K = s["K"].double().numpy()
    assert K[0, 0] == pytest.approx(fx * 320 / W, rel=1e-6)
    assert K[0, 2] == pytest.approx((cx + 0.5) * 320 / W - 0.5, rel=1e-6)
    assert K[1, 2] == pytest.approx((cy + 0.5) * 96 / H - 0.5, rel=1e-6)
    assert float(s["baseline"]) == pytest.approx(fixtures.BASELINE, rel=1e-5)
    assert float(s["T_l2r"][0, 3]) == pytest.approx(-fixtures.BASELINE, rel=1e-5)
    r = ds[1]  # side r: target image_03, partner image_02 on its left
    assert float(r["T_l2r"][0, 3]) == pytest.approx(fixtures.BASELINE, rel=1e-5)
    assert r["meta"]["native_size"] == [fixtures.DATES[B][1], fixtures.DATES[B][0]]
    img3 = formats.read_image(root / B / fixtures.DRIVES[B] / "image_03" / "data" / "0000000004.png")
    expect = cv2.resize(img3, (320, 96), interpolation=cv2.INTER_AREA).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(r["image"].numpy(), expect, atol=1e-6)
    assert r["depth_gt"].shape == (1, 96, 320) and r["depth_gt_mask"].any()


def test_swap_flip_targets_the_other_camera(kitti_root, tmp_path):
    root, _ = kitti_root
    split = fixtures.kitti_split(tmp_path / "s.txt", [(A, 3, "l")])
    plain = KittiDataset(root, str(split))
    swapped = KittiDataset(root, str(split), flip_mode="swap", flip_prob=1.0)
    s, p = swapped[0], plain[0]
    assert s["meta"]["swapped"] and s["meta"]["flipped"]
    torch.testing.assert_close(s["image"], torch.flip(p["image_right"], dims=[-1]))
    assert float(s["T_l2r"][0, 3]) == pytest.approx(-fixtures.BASELINE, rel=1e-5)
    cal = KittiCalib(root / A)
    pts = formats.read_velodyne(root / A / fixtures.DRIVES[A] / "velodyne_points" / "data" / "0000000003.bin")
    gt3 = velodyne_depth(pts, cal.velo_to_image(3), *cal.size)
    np.testing.assert_array_equal(s["depth_gt"][0].numpy(), gt3[:, ::-1])
    mirrored = KittiDataset(root, str(split), flip_mode="mirror", flip_prob=1.0)[0]
    assert float(mirrored["T_l2r"][0, 3]) == pytest.approx(fixtures.BASELINE, rel=1e-5)


def test_jpg_images_baseline_option_and_mean_depth(tmp_path):
    root = tmp_path / "k"
    fixtures.write_kitti(root, points_per_frame=500, jpg_date=B)
    split = fixtures.kitti_split(tmp_path / "s.txt", [(B, 2, "l"), (A, 2, "l")])
    ds = KittiDataset(root, str(split), height=64, width=192, baseline=0.54)
    assert ds.image_path(ds.samples[0], "l").suffix == ".jpg"
    assert ds.image_path(ds.samples[1], "l").suffix == ".png"
    s = ds[0]
    assert float(s["baseline"]) == pytest.approx(0.54) and float(s["T_l2r"][0, 3]) == pytest.approx(-0.54)
    mean = ds.mean_depth_map()
    assert mean.shape == (64, 192) and np.isfinite(mean).all() and (mean > 0).all()


def test_missing_frame_is_named(kitti_root, tmp_path):
    root, _ = kitti_root
    split = fixtures.kitti_split(tmp_path / "s.txt", [(A, 42, "l")])
    ds = KittiDataset(root, str(split))
    with pytest.raises(HarnessError, match=r"0000000042\.bin: Velodyne scan not found \(split .*s\.txt line"):
        ds.eval_gt(0)
    with pytest.raises(HarnessError, match=r"image_02/data/0000000042\.png: image not found"):
        ds[0]
