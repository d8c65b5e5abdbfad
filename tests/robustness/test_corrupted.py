"""The corrupted dataset views (synth-c, kitti-c, drivingstereo-c) and the RoboDepth-layout export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import corruptions as C
from harness.data import formats
from harness.data.corrupted_views import (
    CorruptedView,
    DrivingStereoCDataset,
    KittiCDataset,
    SynthCDataset,
    export_corrupted,
    frame_key,
    image_relpath,
    subsample_indices,
)
from harness.data.synth_dataset import SynthDataset
from harness.errors import HarnessError
from harness.host.manager import PluginHost
from tests.data_real import fixtures

NEED = frozenset({"image", "depth_gt", "depth_gt_mask", "meta"})


def _u8(t: torch.Tensor) -> np.ndarray:
    return np.rint(t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


def test_clean_view_is_the_base(tiny_synth):
    base = SynthDataset(tiny_synth, "test", 64, 192, need=NEED)
    view = CorruptedView(base)
    assert len(view) == len(base) and view.split == "test" and view.gt_source == "dense"
    assert view.split_hash == base.split_hash and view.fingerprint == base.fingerprint
    a, b = view[0], base[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth_gt"], b["depth_gt"])
    np.testing.assert_array_equal(view.eval_gt(1), base.eval_gt(1))


def test_corrupts_only_the_image_deterministically(tiny_synth):
    base = SynthDataset(tiny_synth, "test", 64, 192, need=NEED)
    view = CorruptedView(base, "gaussian_noise", 4, seed=3)
    s, clean = view[1], base[1]
    assert not torch.equal(s["image"], clean["image"])
    assert torch.equal(s["depth_gt"], clean["depth_gt"]) and torch.equal(s["depth_gt_mask"], clean["depth_gt_mask"])
    assert s["meta"]["corruption"] == "gaussian_noise" and s["meta"]["severity"] == 4
    expect = C.corrupt(_u8(clean["image"]), "gaussian_noise", 4, seed=3, key=frame_key(base, 1))
    np.testing.assert_array_equal(_u8(s["image"]), expect)
    again = CorruptedView(SynthDataset(tiny_synth, "test", 64, 192, need=NEED), "gaussian_noise", 4, seed=3)[1]
    assert torch.equal(again["image"], s["image"])
    assert view.split_hash != base.split_hash and view.fingerprint != base.fingerprint
    assert CorruptedView(base, "gaussian_noise", 5, seed=3).split_hash != view.split_hash


def test_mirrored_sample_gets_the_mirrored_corruption(tiny_synth):
    plain = CorruptedView(SynthDataset(tiny_synth, "train", 64, 192, need=NEED), "motion_blur", 3)
    mirrored = CorruptedView(SynthDataset(tiny_synth, "train", 64, 192, need=NEED, flip_mode="mirror",
                                          flip_prob=1.0), "motion_blur", 3)
    a, b = plain[0], mirrored[0]
    assert b["meta"]["flipped"]
    assert torch.equal(torch.flip(a["image"], dims=[-1]), b["image"])


def test_subsample_and_corrupt_size(tiny_synth):
    base = SynthDataset(tiny_synth, "train", 64, 192, need=NEED)
    assert len(base) > 2
    assert subsample_indices(10, None) is None and subsample_indices(10, 20) is None
    assert subsample_indices(10, 3) == [0, 4, 9]  # linspace 0, 4.5, 9 rounded half to even
    idx = subsample_indices(len(base), 2)
    view = CorruptedView(base, "pixelate", 5, indices=idx)
    assert len(view) == 2
    np.testing.assert_array_equal(view.eval_gt(1), base.eval_gt(idx[1]))
    big = CorruptedView(base, "pixelate", 5, corrupt_size=(128, 384))[0]["image"]
    assert big.shape == (3, 64, 192) and not torch.equal(big, view[0]["image"])
    with pytest.raises(HarnessError, match="severity"):
        CorruptedView(base, "fog", 7)
    with pytest.raises(HarnessError, match="unknown"):
        CorruptedView(base, "rain", 1)


def test_registered_datasets_build_through_the_catalog(tiny_synth):
    cat = PluginHost().catalog
    for name in ("synth-c", "kitti-c", "drivingstereo-c"):
        assert name in cat.names("datasets")
    ds = cat.build("datasets", "synth-c", root=str(tiny_synth), split="test", height=64, width=192, need=NEED,
                   seed=0, gt_source="dense", corruption="fog", severity=2)
    assert isinstance(ds, SynthCDataset) and ds.condition == "fog/2" and "image" in ds.provides
    clean = cat.build("datasets", "synth-c", root=str(tiny_synth), split="train", height=64, width=192, need=NEED,
                      seed=0, flip_mode="mirror")
    assert clean.fingerprint == SynthDataset(tiny_synth, "train").fingerprint  # teacher cache is shared


def test_kitti_export_layout_and_stored_copy(tmp_path):
    root = tmp_path / "kitti"
    fixtures.write_kitti(root, points_per_frame=200)
    split = fixtures.kitti_split(tmp_path / "split.txt", [("2011_09_26", 1, "l"), ("2011_09_26", 2, "r")])
    base = KittiCDataset(root, split=str(split), height=64, width=192, need=frozenset({"image", "meta"}))
    drive = "2011_09_26/2011_09_26_drive_0002_sync"
    assert image_relpath(base.base, 0).as_posix() == f"{drive}/image_02/data/0000000001.png"
    conds = [("fog", 1), ("jpeg_compression", 5)]
    stats = export_corrupted(base.base, tmp_path / "kitti_c", conds, seed=0)
    assert stats["written"] == 2 * 3
    rel = f"kitti_data/{drive}/image_03/data/0000000002.png"
    for cond in ("clean", "fog/1", "jpeg_compression/5"):
        assert (tmp_path / "kitti_c" / cond / rel).is_file()
    assert (tmp_path / "kitti_c" / "corruption_manifest.json").is_file()
    # reading the stored copy gives the same bytes as corrupting on the fly (PNG is lossless)
    for cond in conds:
        fly = CorruptedView(base.base, *cond)
        stored = CorruptedView(base.base, *cond, corrupted_root=tmp_path / "kitti_c")
        assert torch.equal(fly[1]["image"], stored[1]["image"])
    assert torch.equal(CorruptedView(base.base, corrupted_root=tmp_path / "kitti_c")[0]["image"], base[0]["image"])
    # resume: nothing rewritten
    assert export_corrupted(base.base, tmp_path / "kitti_c", conds)["skipped"] == 6


def test_drivingstereo_view(tmp_path):
    root = tmp_path / "ds"
    fixtures.write_drivingstereo(root, frames=2)
    ds = DrivingStereoCDataset(root, split="foggy", height=64, width=128, need=NEED, corruption="snow", severity=5)
    s = ds[0]
    assert s["image"].shape == (3, 64, 128) and s["meta"]["corruption"] == "snow"
    assert image_relpath(ds.base, 0).parts[0] == "foggy"
    assert ds.eval_gt(0).shape == fixtures.DS_FULL


def test_frame_key_uses_the_split_line(tiny_synth):
    base = SynthDataset(tiny_synth, "test", 64, 192, need=NEED)
    folder, frame, side = base.samples[0]
    assert frame_key(base, 0) == f"{folder} {frame} {side}"
    assert formats.read_image(tiny_synth / image_relpath(base, 0)).shape == (64, 192, 3)
