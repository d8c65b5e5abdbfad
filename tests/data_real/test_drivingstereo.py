"""DrivingStereo loader: layouts (per-sequence, flat, nested), scales, calibration, splits, samples."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from harness.data.drivingstereo import DrivingStereoDataset
from harness.data.stereo_base import forward_warp_depth
from harness.errors import HarnessError
from tests.data_real import fixtures


def _quantised(depth: np.ndarray) -> np.ndarray:
    return np.rint(depth * 256.0).astype(np.float32) / 256.0


@pytest.mark.parametrize("split, subset, n, size", [
    ("train_all", "train", 6, fixtures.DS_HALF), ("test", "test", 3, fixtures.DS_HALF),
    ("foggy", "foggy", 3, fixtures.DS_FULL), ("sunny", "sunny", 3, fixtures.DS_FULL),
    ("rainy", "rainy", 3, fixtures.DS_FULL), ("weather", None, 12, fixtures.DS_FULL),
])
def test_layouts_sorted_stems_and_depth_scale(ds_root, split, subset, n, size):
    root, info = ds_root
    ds = DrivingStereoDataset(root, split)
    assert len(ds) == n
    stems = [ds.stem(s) for s in ds.samples]
    if subset is not None:
        assert stems == sorted(stems)  # written in reverse order, read by sorted stem
        assert all(s.folder.startswith(f"{subset}/") for s in ds.samples)
    else:
        assert [s.folder.split("/")[0] for s in ds.samples[::3]] == ["sunny", "cloudy", "foggy", "rainy"]
    for i in (0, n - 1):
        gt = ds.eval_gt(i)
        assert gt.shape == size and gt.dtype == np.float32
        np.testing.assert_array_equal(gt, _quantised(info["depths"][stems[i]]))


def test_train_val_hold_out_and_split_hash(ds_root):
    root, _ = ds_root
    train, val = DrivingStereoDataset(root, "train"), DrivingStereoDataset(root, "val")
    seqs = fixtures.DS_SEQS["train"]
    assert {s.folder for s in train.samples} == {f"train/{seqs[0]}"}
    assert {s.folder for s in val.samples} == {f"train/{seqs[1]}"}
    named = DrivingStereoDataset(root, "val", val_sequences=[seqs[0]])
    assert {s.folder for s in named.samples} == {f"train/{seqs[0]}"}
    assert train.split_hash != val.split_hash and len(train.fingerprint) == 16
    with pytest.raises(HarnessError, match="must leave at least one"):
        DrivingStereoDataset(root, "train", val_sequences=2)


@pytest.mark.parametrize("split", ["test", "foggy"])
def test_disparity_scales_half_256_full_128(ds_root, split):
    root, _ = ds_root
    depth = DrivingStereoDataset(root, split)
    disp = DrivingStereoDataset(root, split, gt_source="disparity")
    for i in range(len(depth)):
        a, b = disp.eval_gt(i), depth.eval_gt(i)
        np.testing.assert_array_equal(a > 0, b > 0)
        rel = np.abs(a[b > 0] / b[b > 0] - 1)
        assert np.median(rel) < 2e-3 and rel.max() < 2e-2  # 1/256 resp. 1/128 px quantisation
    # the wrong scale would be off by 2x: make sure the raw PNG really is /128 (full) or /256 (half)
    raw = cv2.imread(str(disp.file_path(disp.samples[0], "disparity")), cv2.IMREAD_UNCHANGED).astype(np.float64)
    fb = disp._fx_baseline(disp.samples[0], raw.shape)
    scale = 128.0 if split == "foggy" else 256.0
    m = raw > 0
    np.testing.assert_allclose(disp.eval_gt(0)[m], (fb / (raw[m] / scale)).astype(np.float32), rtol=1e-5)


def test_calibration_intrinsics_and_baseline(ds_root):
    root, _ = ds_root
    need = {"image", "K", "baseline", "T_l2r"}
    ds = DrivingStereoDataset(root, "foggy", height=64, width=192, need=need)
    s = ds[0]
    H, W = fixtures.DS_FULL
    fx = 2 * fixtures.DS_FX_HALF
    assert float(s["K"][0, 0]) == pytest.approx(fx * 192 / W, rel=1e-6)
    assert float(s["K"][0, 2]) == pytest.approx((W / 2 + 0.5) * 192 / W - 0.5, rel=1e-6)
    base = float(np.linalg.norm(fixtures.DS_T103))
    assert float(s["baseline"]) == pytest.approx(base, rel=1e-6)
    assert float(s["T_l2r"][0, 3]) == pytest.approx(-base, rel=1e-6)
    assert s["meta"]["stem"] == ds.stem(ds.samples[0]) and s["meta"]["native_size"] == [H, W]
    half = DrivingStereoDataset(root, "test", need=need)[0]
    assert float(half["K"][0, 0]) == pytest.approx(fixtures.DS_FX_HALF, rel=1e-6)


def test_split_file_robust_depth_style(ds_root, tmp_path):
    root, _ = ds_root
    foggy = DrivingStereoDataset(root, "foggy")
    stems = [foggy.stem(s) for s in foggy.samples]
    split = tmp_path / "foggy_test_files.txt"
    split.write_text(f"{stems[2]}.png\n{stems[0]}.png\n")
    ds = DrivingStereoDataset(root, str(split))
    assert [ds.stem(s) for s in ds.samples] == [stems[2], stems[0]]  # file order kept
    assert ds.frame_lines == [f"{stems[2]}.png", f"{stems[0]}.png"]
    assert all(s.folder.startswith("foggy/") for s in ds.samples)  # full size preferred
    np.testing.assert_array_equal(ds.eval_gt(0), foggy.eval_gt(2))
    test_stem = DrivingStereoDataset(root, "test").stem(DrivingStereoDataset(root, "test").samples[1])
    split.write_text(f"{test_stem}\n")
    assert DrivingStereoDataset(root, str(split)).samples[0].folder.startswith("test/")
    split.write_text("2018-01-01-00-00-00_2018-01-01-00-00-00-000.png\n")
    with pytest.raises(HarnessError, match=r"split line 1 names frame '2018-01-01-00-00-00_2018-01-01-00-00-00-000'"):
        DrivingStereoDataset(root, str(split))


def test_neighbours_and_drop_edges(ds_root):
    root, _ = ds_root
    ds = DrivingStereoDataset(root, "train_all", drop_edges=True, height=32, width=96)
    assert len(ds) == 2  # one inner frame per 3-frame sequence
    s = ds[0]
    assert set(s["frames"]) == {-1, 1} and s["frames"][1].shape == (3, 32, 96)
    edge = DrivingStereoDataset(root, "train_all", height=32, width=96)
    with pytest.raises(HarnessError, match="has no neighbour -1"):
        edge[0]
    assert "frames" not in DrivingStereoDataset(root, "train_all", need={"image"})[0]


def test_right_view_gt_is_warped_left_gt(ds_root):
    root, _ = ds_root
    need = {"image", "image_right", "depth_gt"}
    plain = DrivingStereoDataset(root, "test", need=need)
    swapped = DrivingStereoDataset(root, "test", flip_mode="swap", flip_prob=1.0, need=need)
    s = swapped[0]
    assert s["meta"]["swapped"]
    left = plain.eval_gt(0)
    fb = plain._fx_baseline(plain.samples[0], left.shape)
    np.testing.assert_array_equal(s["depth_gt"][0].numpy(), forward_warp_depth(left, fb, -1.0)[:, ::-1])
    torch.testing.assert_close(s["image"], torch.flip(plain[0]["image_right"], dims=[-1]))


def test_forward_warp_nearest_wins():
    depth = np.zeros((2, 6), np.float32)
    depth[0, 4] = 10.0  # disparity fb/z = 2 -> col 2
    depth[0, 3] = 20.0  # disparity 1 -> col 2 too, farther: loses
    depth[1, 1] = 5.0   # disparity 4 -> col -3: outside, dropped
    out = forward_warp_depth(depth, 20.0, -1.0)
    expected = np.zeros((2, 6), np.float32)
    expected[0, 2] = 10.0
    np.testing.assert_array_equal(out, expected)


def test_missing_calibration_and_unknown_split(ds_copy):
    (ds_copy / "calib" / "full-image-calib" / f"{fixtures.DS_SEQS['foggy'][0]}.txt").unlink()
    ds = DrivingStereoDataset(ds_copy, "foggy", need={"image", "depth_gt"})
    assert ds[0]["depth_gt"].shape[-2:] == fixtures.DS_FULL  # depth GT needs no calibration
    with pytest.raises(HarnessError, match=r"full-image-calib/2018-10-25-07-37-26\.txt: calibration file not found"):
        DrivingStereoDataset(ds_copy, "foggy", need={"image", "K"})[0]
    with pytest.raises(HarnessError, match="not a DrivingStereo split"):
        DrivingStereoDataset(ds_copy, "snowy")
