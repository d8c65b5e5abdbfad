"""SynthDataset: keys vs provides, resizing, flip conventions, lazy loading, GT helpers."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from harness.data import formats, synth
from harness.data.synth_dataset import SynthDataset, project_velodyne

H, W = 48, 160


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_ds")
    synth.generate(root, frames=12, seed=1, height=H, width=W, frames_per_drive=4)
    return root


def _native(root, folder, frame, cam):
    return formats.read_image(root / folder / f"image_0{cam}" / "data" / f"{frame:010d}.png")


def _img(t: torch.Tensor) -> np.ndarray:
    return np.rint(t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


def test_keys_shapes_dtypes_match_provides(root):
    ds = SynthDataset(root, "train")
    assert len(ds) == 2 and ds.native_size == (H, W)
    s = ds[0]
    assert set(s) == set(SynthDataset.provides)
    for key in ("image", "image_right"):
        assert s[key].shape == (3, H, W) and s[key].dtype == torch.float32
        assert 0 <= s[key].min() and s[key].max() <= 1
    assert set(s["frames"]) == {-1, 1} and s["frames"][1].shape == (3, H, W)
    assert set(s["T_t2s"]) == {-1, 1} and s["T_t2s"][-1].shape == (4, 4)
    assert s["K"].shape == (3, 3) and s["K"].dtype == torch.float32
    torch.testing.assert_close(s["K_inv"] @ s["K"], torch.eye(3), atol=1e-5, rtol=0)
    assert s["baseline"].shape == () and s["baseline"].item() == pytest.approx(0.54, abs=1e-6)
    assert s["T_l2r"][0, 3].item() == pytest.approx(-0.54, abs=1e-6)
    assert s["depth_gt"].shape == (1, H, W) and s["depth_gt"].dtype == torch.float32
    assert s["depth_gt_mask"].dtype == torch.bool
    assert torch.equal(s["depth_gt_mask"], s["depth_gt"] > 0)
    assert s["semantic"].shape == (H, W) and s["semantic"].dtype == torch.int64
    meta = s["meta"]
    folder, frame, side = ds.samples[0]
    assert (meta["index"], meta["folder"], meta["frame"], meta["side"]) == (0, folder, frame, side)
    assert meta["focal"] == pytest.approx(s["K"][0, 0].item()) and meta["flipped"] is False
    assert meta["native_size"] == [H, W]
    np.testing.assert_array_equal(_img(s["image"]), _native(root, folder, frame, 2))
    np.testing.assert_array_equal(_img(s["frames"][1]), _native(root, folder, frame + 1, 2))
    batch = default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, H, W) and batch["frames"][-1].shape == (2, 3, H, W)
    assert batch["meta"]["folder"] == [ds.samples[0][0], ds.samples[1][0]]


def test_split_properties(root):
    ds = SynthDataset(root, "val")
    assert ds.split_file == root / "splits" / "val_files.txt"
    assert ds.split_hash == hashlib.sha256(ds.split_file.read_bytes()).hexdigest()
    assert SynthDataset(root, str(ds.split_file)).samples == ds.samples
    with pytest.raises(FileNotFoundError):
        SynthDataset(root, "nope")
    with pytest.raises(ValueError, match="cannot provide"):
        SynthDataset(root, need={"image", "pseudo_depth"})
    with pytest.raises(ValueError):
        SynthDataset(root, height=24)


def test_resize_scales_K_exactly(root):
    native = SynthDataset(root, "train")[0]
    ds = SynthDataset(root, "train", height=24, width=80)
    s = ds[0]
    assert s["image"].shape == (3, 24, 80) and s["depth_gt"].shape == (1, 24, 80)
    assert s["semantic"].shape == (24, 80) and s["frames"][-1].shape == (3, 24, 80)
    K0, K = native["K"], s["K"]
    assert K[0, 0].item() == pytest.approx(K0[0, 0].item() / 2)
    assert K[1, 1].item() == pytest.approx(K0[1, 1].item() / 2)
    # pixel-centre convention: u' = (u + 0.5) * s - 0.5
    assert K[0, 2].item() == pytest.approx((K0[0, 2].item() + 0.5) / 2 - 0.5)
    assert K[1, 2].item() == pytest.approx((K0[1, 2].item() + 0.5) / 2 - 0.5)
    assert s["meta"]["focal"] == pytest.approx(K[0, 0].item())
    assert s["meta"]["native_size"] == [H, W]
    # nearest resize keeps GT values exact (no blending across depth edges)
    gt = s["depth_gt"][0].numpy()
    assert set(np.unique(gt)).issubset(set(np.unique(native["depth_gt"][0].numpy())))


def _warp_error(image, src, depth, K, T):
    """Mean abs error (8-bit levels) of ``src`` warped into ``image`` with depth, K and T."""
    img, src = _img(image).astype(np.float32), _img(src).astype(np.float32)
    d = depth[0].numpy().astype(np.float64)
    K, T = K.numpy().astype(np.float64), T.numpy().astype(np.float64)
    h, w = d.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    X = (np.stack([xx, yy, np.ones_like(xx)], -1) @ np.linalg.inv(K).T) * d[..., None]
    X = X @ T[:3, :3].T + T[:3, 3]
    z = np.where(X[..., 2] > 0, X[..., 2], np.nan)
    u = K[0, 0] * X[..., 0] / z + K[0, 1] * X[..., 1] / z + K[0, 2]
    v = K[1, 1] * X[..., 1] / z + K[1, 2]
    ok = (d > 0) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    warped = cv2.remap(src, np.nan_to_num(u, nan=-5).astype(np.float32),
                       np.nan_to_num(v, nan=-5).astype(np.float32), cv2.INTER_LINEAR)
    return np.median(np.abs(warped - img).mean(axis=2)[ok])


@pytest.mark.parametrize("flip_mode", [None, "mirror", "swap"])
def test_geometry_is_consistent_under_flips(root, flip_mode):
    """Warping image_right / frames[+1] into image with depth_gt, K, T_l2r / T_t2s works for
    every flip convention; a sign error in any of them would give a large error."""
    ds = SynthDataset(root, "train", flip_mode=flip_mode, flip_prob=1.0)
    s = ds[1]
    assert s["meta"]["flipped"] is (flip_mode is not None)
    stereo = _warp_error(s["image"], s["image_right"], s["depth_gt"], s["K"], s["T_l2r"])
    temporal = _warp_error(s["image"], s["frames"][1], s["depth_gt"], s["K"], s["T_t2s"][1])
    temporal_prev = _warp_error(s["image"], s["frames"][-1], s["depth_gt"], s["K"], s["T_t2s"][-1])
    assert stereo < 2.0 and temporal < 2.0 and temporal_prev < 2.0, (stereo, temporal, temporal_prev)
    wrong = s["T_l2r"].clone()
    wrong[0, 3] = -wrong[0, 3]
    assert _warp_error(s["image"], s["image_right"], s["depth_gt"], s["K"], wrong) > 3 * max(stereo, 1.0)
    wrong = s["T_t2s"][1].clone()
    wrong[:3, 3] = -wrong[:3, 3]
    assert _warp_error(s["image"], s["frames"][1], s["depth_gt"], s["K"], wrong) > 3 * max(temporal, 1.0)


def test_flip_modes_views_and_T_l2r_sign(root):
    plain = SynthDataset(root, "train")[0]
    folder, frame, _ = SynthDataset(root, "train").samples[0]
    left, right = _native(root, folder, frame, 2), _native(root, folder, frame, 3)

    m = SynthDataset(root, "train", flip_mode="mirror", flip_prob=1.0)[0]
    np.testing.assert_array_equal(_img(m["image"]), left[:, ::-1])  # roles kept
    np.testing.assert_array_equal(_img(m["image_right"]), right[:, ::-1])
    assert m["T_l2r"][0, 3].item() == pytest.approx(-plain["T_l2r"][0, 3].item())  # negated
    assert torch.equal(m["depth_gt"], plain["depth_gt"].flip(-1))
    assert torch.equal(m["semantic"], plain["semantic"].flip(-1))
    assert m["K"][0, 2].item() == pytest.approx(W - 1 - plain["K"][0, 2].item())
    assert m["meta"]["side"] == "l" and m["meta"]["swapped"] is False

    s = SynthDataset(root, "train", flip_mode="swap", flip_prob=1.0)[0]
    np.testing.assert_array_equal(_img(s["image"]), right[:, ::-1])  # left/right swapped
    np.testing.assert_array_equal(_img(s["image_right"]), left[:, ::-1])
    assert s["T_l2r"][0, 3].item() == pytest.approx(plain["T_l2r"][0, 3].item())  # negated twice
    right_gt = formats.read_png16(
        root / "data_depth_annotated" / "train" / folder.split("/")[1] / "proj_depth" / "groundtruth"
        / "image_03" / f"{frame:010d}.png"
    )
    np.testing.assert_array_equal(s["depth_gt"][0].numpy(), right_gt[:, ::-1])
    assert s["meta"]["swapped"] is True and s["meta"]["flipped"] is True


def test_right_side_split_line(root, tmp_path):
    folder, frame, _ = SynthDataset(root, "train").samples[0]
    split = tmp_path / "r_files.txt"
    formats.write_split(split, [(folder, frame, "r")])
    s = SynthDataset(root, str(split))[0]
    np.testing.assert_array_equal(_img(s["image"]), _native(root, folder, frame, 3))
    np.testing.assert_array_equal(_img(s["image_right"]), _native(root, folder, frame, 2))
    assert s["T_l2r"][0, 3].item() == pytest.approx(0.54, abs=1e-6)


def test_flip_draws_depend_on_seed_index_and_epoch(root):
    ds = SynthDataset(root, "train", flip_mode="mirror", flip_prob=0.5, need={"image"}, seed=0)
    ds.samples = ds.samples * 20  # 40 samples
    draws = [ds[i]["meta"]["flipped"] for i in range(len(ds))]
    assert draws == [ds[i]["meta"]["flipped"] for i in range(len(ds))]  # deterministic
    assert 5 < sum(draws) < 35
    ds.set_epoch(1)
    assert [ds[i]["meta"]["flipped"] for i in range(len(ds))] != draws
    never = SynthDataset(root, "train", flip_mode="swap", flip_prob=0.0)
    assert not any(never[i]["meta"]["flipped"] for i in range(len(never)))


def test_need_limits_loading(root, monkeypatch):
    calls = []
    real_read_image = formats.read_image

    def counting_read_image(path):
        calls.append(str(path))
        return real_read_image(path)

    def forbidden(*args, **kwargs):
        raise AssertionError("this file should not be read")

    monkeypatch.setattr(formats, "read_image", counting_read_image)
    for name in ("read_png16", "read_velodyne", "read_labels", "read_poses"):
        monkeypatch.setattr(formats, name, forbidden)
    ds = SynthDataset(root, "train", need={"image", "K"})
    s = ds[0]
    assert set(s) == {"image", "K", "meta"}
    assert len(calls) == 1 and "image_02" in calls[0]


def test_velodyne_gt_is_eigen_style(root):
    dense = SynthDataset(root, "test", gt_source="dense")
    velo = SynthDataset(root, "test", gt_source="velodyne")
    g, d = velo.eval_gt(0), dense.eval_gt(0)
    assert g.shape == d.shape == (H, W) and g.dtype == np.float32
    rows, cols = np.nonzero(g)
    assert len(rows) > 500
    # the "round(u) - 1" index puts the return of pixel (r+1, c+1) at (r, c)
    np.testing.assert_allclose(g[rows, cols], d[rows + 1, cols + 1], atol=1 / 256 + 1e-3)
    s = velo[0]
    assert torch.equal(s["depth_gt_mask"], s["depth_gt"] > 0)
    assert 0 < s["depth_gt_mask"].float().mean() < 0.5  # sparse


def test_project_velodyne_nearest_return_wins():
    P = np.array([[100.0, 0, 5, 0], [0, 100.0, 5, 0], [0, 0, 1, 0]])
    Tr = np.eye(4)  # velodyne frame == camera frame for this toy example
    pts = np.array(
        [[0.0, 0.0, 10.0, 1], [0.0, 0.0, 5.0, 1], [0.0, 0.0, 20.0, 1], [-1.0, 0, 10, 1], [0.2, 0.0, 10.0, 1]]
    )
    out = project_velodyne(pts, P, np.eye(3), Tr, 10, 10, eigen_offset=False)
    assert out[5, 5] == 5.0  # three returns on one pixel: the nearest wins
    assert out[5, 7] == 10.0  # u = 5 + 100 * 0.2 / 10 = 7
    assert np.count_nonzero(out) == 2  # x < 0 dropped
    shifted = project_velodyne(pts, P, np.eye(3), Tr, 10, 10)
    assert shifted[4, 4] == 5.0 and shifted[4, 6] == 10.0


def test_mean_depth_map(root):
    ds = SynthDataset(root, "train", height=24, width=80)
    mean = ds.mean_depth_map()
    assert mean.shape == (24, 80) and mean.dtype == np.float32
    gts = [ds[i]["depth_gt"][0].numpy() for i in range(len(ds))]
    valid = [g > 0 for g in gts]
    count = np.sum(valid, axis=0)
    total = np.sum([np.where(v, g, 0) for g, v in zip(gts, valid)], axis=0)
    seen = count > 0
    np.testing.assert_allclose(mean[seen], total[seen] / count[seen], rtol=1e-5)
    assert (~seen).any()  # sky pixels at the top
    np.testing.assert_allclose(mean[~seen], total.sum() / count.sum(), rtol=1e-5)
