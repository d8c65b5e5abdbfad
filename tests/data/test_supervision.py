"""Supervision regimes (``data.supervision``): the sparse Velodyne-like training GT and the
no-GT regime; GT-supervised losses (baseline student, stereo teacher) see only the sparse pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from harness.config.loader import CONFIG_DIR, build_run_config, section
from harness.data import formats, synth
from harness.data.stereo_base import DatasetOptionError
from harness.data.synth_dataset import SynthDataset, project_velodyne, thin_scan
from harness.errors import HarnessError

TRAIN_KEYS = {"image", "image_right", "K", "baseline", "depth_gt", "depth_gt_mask", "meta"}


@pytest.fixture(scope="module", params=[(96, 320), (64, 192)], ids=["96x320", "64x192"])
def root(request, tmp_path_factory):
    h, w = request.param
    root = tmp_path_factory.mktemp(f"synth_sup_{h}")
    synth.generate(root, frames=8, frames_per_drive=4, height=h, width=w, seed=6)
    return root


def test_thin_scan_keeps_every_third_line_and_every_second_return():
    d = np.zeros((10, 8), np.float32)
    d[[1, 2, 4, 7, 9], :] = np.arange(1, 9, dtype=np.float32)  # five scan lines, 8 returns each
    d[4, 0] = 0.0  # a missing return shifts the alternation along its line
    out = thin_scan(d, line_step=3, point_step=2)
    assert set(np.nonzero(out.any(1))[0]) == {1, 7}  # lines 1, 2, 4, 7, 9 -> 1 and 7
    np.testing.assert_array_equal(np.nonzero(out[1])[0], [0, 2, 4, 6])
    np.testing.assert_array_equal(out[out > 0], d[out > 0])


def test_sparse_gt_share_and_exact_depths(root):
    sparse = SynthDataset(root, "train", supervision="sparse", need=TRAIN_KEYS)
    dense = SynthDataset(root, "train", need=TRAIN_KEYS)
    for i in range(len(sparse)):
        s, d = sparse[i], dense[i]
        gt, ref = s["depth_gt"][0].numpy(), d["depth_gt"][0].numpy()
        hit = gt > 0
        assert 0.04 < hit.mean() < 0.065, hit.mean()  # ~5 % of the pixels, like KITTI's raw scan
        assert torch.equal(s["depth_gt_mask"], s["depth_gt"] > 0)
        np.testing.assert_allclose(gt[hit], ref[hit], atol=0.5 / 256 + 1e-3)  # exact pixel, PNG rounding
        assert (ref[hit] > 0).all()
        rows = np.unique(np.nonzero(hit)[0])
        assert rows.min() > 0.3 * gt.shape[0]  # nothing above the scan's top line (2 deg over the horizon)
        np.testing.assert_array_equal(sparse.eval_gt(i), dense.eval_gt(i))  # evaluation stays dense
        np.testing.assert_array_equal(s["image"].numpy(), d["image"].numpy())


def test_sparse_projection_drops_points_behind_and_outside(root):
    ds = SynthDataset(root, "train")
    fr = ds.frame_at(0)
    cal = ds._calib(fr.folder)
    h, w = cal.size
    pts = formats.read_velodyne(root / fr.folder / "velodyne_points" / "data" / f"{fr.frame:010d}.bin")
    clean = thin_scan(project_velodyne(pts, cal.P(2), cal.R_rect, cal.Tr_velo_to_cam, h, w, eigen_offset=False))
    extra = np.array([
        [-5.0, 0.0, 0.0, 0.5],    # behind the car (x_velo < 0)
        [0.1, 0.0, -0.2, 0.5],    # in front of the LiDAR but behind the camera plane (w < 0)
        [10.0, 40.0, 0.0, 0.5],   # far outside the field of view (left)
        [10.0, 0.0, 30.0, 0.5],   # above the image
    ], dtype=np.float32)
    polluted = np.concatenate([extra, pts])
    out = thin_scan(project_velodyne(polluted, cal.P(2), cal.R_rect, cal.Tr_velo_to_cam, h, w, eigen_offset=False))
    np.testing.assert_array_equal(out, clean)
    assert (ds._sparse_gt(fr, "l") == clean).all()


def test_sparse_gt_follows_flips_and_the_right_camera(root):
    plain = SynthDataset(root, "train", supervision="sparse", need=TRAIN_KEYS)
    mirror = SynthDataset(root, "train", supervision="sparse", need=TRAIN_KEYS, flip_mode="mirror", flip_prob=1.0)
    swap = SynthDataset(root, "train", supervision="sparse", need=TRAIN_KEYS, flip_mode="swap", flip_prob=1.0)
    assert torch.equal(mirror[0]["depth_gt"], plain[0]["depth_gt"].flip(-1))
    right = plain._sparse_gt(plain.frame_at(0), "r")
    np.testing.assert_array_equal(swap[0]["depth_gt"][0].numpy(), right[:, ::-1])


def test_regime_options_and_fingerprints(root):
    dense = SynthDataset(root, "train")
    sparse = SynthDataset(root, "train", supervision="sparse")
    none = SynthDataset(root, "train", supervision="none")
    assert len({dense.fingerprint, sparse.fingerprint, none.fingerprint}) == 3
    from harness.pipeline.teacher_cache import teacher_key

    keys = {teacher_key({"type": "stereo"}, {"epochs": 1}, ds.fingerprint, (96, 320)) for ds in (dense, sparse, none)}
    assert len(keys) == 3  # a teacher trained under one regime is never reused under another
    assert "depth_gt" not in none.provides and "depth_gt" in SynthDataset.provides
    assert set(none[0]) == set(SynthDataset.provides) - {"depth_gt", "depth_gt_mask"}
    with pytest.raises(DatasetOptionError, match="data.supervision='none' withholds the training GT"):
        SynthDataset(root, "train", supervision="none", need={"image", "depth_gt"})
    with pytest.raises(ValueError, match="supervision must be one of"):
        SynthDataset(root, "train", supervision="lidar")
    from harness.data.kitti import KittiDataset

    with pytest.raises(HarnessError, match="supervision 'sparse' is not available"):
        KittiDataset.__new__(KittiDataset)._init_common(None, None, None, 0, None, 0.5, "sparse")
    # the training-set mean depth is made of what training sees
    assert sparse.mean_depth_map().shape == dense.mean_depth_map().shape


def test_baseline_student_and_stereo_teacher_see_only_sparse_pixels(root):
    from harness.models.stereo_teacher import StereoTeacher
    from harness.types import DepthOutput, StepContext
    from stereodistill_plugins.baseline.strategy import BaselineStrategy

    ds = SynthDataset(root, "train", supervision="sparse", need=TRAIN_KEYS)
    batch = default_collate([ds[0], ds[1]])
    hit = batch["depth_gt"] > 0
    h, w = hit.shape[-2:]
    # baseline student: the gradient of its GT loss reaches only the sparse pixels
    strategy = BaselineStrategy(supervision="gt", scales=(0,), loss_weights={"gt": 1.0})
    depth = torch.full((2, 1, h, w), 10.0, requires_grad=True)
    out = DepthOutput(depth={0: depth}, disp={0: 1.0 / depth})
    strategy.compute_loss(batch, {"clean": out}, None, StepContext(stage="student")).total.backward()
    g = depth.grad.abs() > 0
    assert g.any() and not (g & ~hit).any()
    # stereo teacher: the supervised loss of its refined disparity, likewise
    teacher = StereoTeacher(max_disp=32, base_width=8)
    disp = torch.full((2, 1, h, w), 5.0, requires_grad=True)
    terms = teacher.self_loss(batch, DepthOutput(depth={0: 1.0 / disp}, disp={0: disp}))
    sum(terms.values()).backward()
    g = disp.grad.abs() > 0
    assert set(terms) == {"disp_l1", "disp_rel"} and g.any() and not (g & ~hit).any()


def test_run_builds_the_training_splits_under_the_regime(root, tmp_path):
    from harness.host.manager import PluginHost
    from harness.pipeline.run import RunContext

    cfg = build_run_config(method="baseline", method_config=None, config_file=str(CONFIG_DIR / "synth_small_sparse.py"))
    assert cfg.profile == "synth_small_sparse" and cfg.data.supervision == "sparse"
    assert cfg.schedule.epochs == 6  # synth_small's schedule
    ctx = RunContext(cfg, PluginHost(), work_dir=tmp_path)
    ctx.data_root, ctx.data_cfg = root, dict(section(cfg, "data"), input_size=synth_size(root))
    train = ctx.build_dataset("train", frozenset(TRAIN_KEYS))
    assert train.supervision == "sparse" and 0.04 < (train[0]["depth_gt"] > 0).float().mean() < 0.065
    assert ctx.build_dataset("val", frozenset(TRAIN_KEYS)).supervision == "dense"
    assert ctx.build_dataset("test", frozenset(TRAIN_KEYS)).supervision == "dense"
    cfg = build_run_config(method="baseline", method_config=None, config_file=str(CONFIG_DIR / "synth_small_selfsup.py"))
    ctx = RunContext(cfg, PluginHost(), work_dir=tmp_path)
    ctx.data_root, ctx.data_cfg = root, dict(section(cfg, "data"), input_size=synth_size(root))
    with pytest.raises(HarnessError, match="withholds the training GT"):
        ctx.build_dataset("train", frozenset(TRAIN_KEYS))


def synth_size(root):
    return SynthDataset(root, "train").native_size


@pytest.mark.slow
def test_quick_run_under_each_regime(tmp_path, monkeypatch):
    from harness.host.manager import PluginHost
    from harness.pipeline.run import run

    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    host = PluginHost()
    sparse = build_run_config(method="baseline", method_config=None, quick=True, cfg_options=["progress=False"],
                              config_file=str(CONFIG_DIR / "synth_small_sparse.py"))
    result, _ = run(sparse, host, work_dir=tmp_path / "sparse", results_dir=tmp_path / "results")
    assert result["datasets"]["train"]["supervision"] == "sparse"
    assert result["datasets"]["test"]["supervision"] == "dense"
    assert {"student", "teacher", "mean_depth"} <= set(result["metrics"])
    dense = build_run_config(method="baseline", method_config=None, quick=True, cfg_options=["progress=False"])
    result_dense, _ = run(dense, host, work_dir=tmp_path / "dense", results_dir=tmp_path / "results")
    assert result_dense["datasets"]["train"]["fingerprint"] != result["datasets"]["train"]["fingerprint"]
    assert result_dense["metrics"]["student"]["abs_rel"] != result["metrics"]["student"]["abs_rel"]
    # no training GT: the GT-supervised baseline is refused before training, one line naming the regime
    none = build_run_config(method="baseline", method_config=None, quick=True, cfg_options=["progress=False"],
                            config_file=str(CONFIG_DIR / "synth_small_selfsup.py"))
    with pytest.raises(HarnessError, match="data.supervision='none' withholds the training GT"):
        run(none, host, work_dir=tmp_path / "none", results_dir=tmp_path / "results")
