"""``harness data export-gt``, ``harness eval``, ``harness data check`` on the fixtures, and the
bad-input contract: one line ``harness: error: <file or option>: <problem>``, exit 2, no traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from harness.cli.main import main
from harness.data.drivingstereo import DrivingStereoDataset
from harness.data.kitti import KittiDataset
from tests.data_real import fixtures

A, B = "2011_09_26", "2011_09_30"
ROWS = [(A, t, "l") for t in range(1, 7)] + [(B, t, "l") for t in range(1, 7)]


def run_cli(capsys, *args):
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(result, *fragments):
    code, _, err = result
    assert code == 2, result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("harness: error: ") and "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def kitti_split_file(kitti_root, tmp_path_factory):
    return fixtures.kitti_split(tmp_path_factory.mktemp("splits") / "test_files.txt", ROWS)


def _garg(g):
    """Valid pixels of the Eigen protocol (Garg crop, 1e-3 < gt < 80), the slow obvious way."""
    h, w = g.shape
    crop = np.zeros_like(g, dtype=bool)
    crop[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    return crop & (g > 1e-3) & (g < 80)


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------------------------
# export-gt
# --------------------------------------------------------------------------------------------
def test_export_gt_npz_layout(capsys, kitti_root, kitti_split_file, tmp_path):
    root, _ = kitti_root
    out = tmp_path / "gt.npz"
    code, stdout, _ = run_cli(capsys, "data", "export-gt", "--dataset", "kitti", "--data-root", root,
                              "--split-file", kitti_split_file, "--out", out)
    assert code == 0 and "wrote GT of 12 frames" in stdout
    ds = KittiDataset(root, str(kitti_split_file))
    with np.load(out) as npz:  # allow_pickle=False by default
        assert sorted(npz.files) == [f"{i:05d}" for i in range(12)] + ["frames"]
        assert npz["frames"].tolist() == kitti_split_file.read_text().splitlines()
        for i in (0, 6, 11):
            assert npz[f"{i:05d}"].dtype == np.float32
            np.testing.assert_array_equal(npz[f"{i:05d}"], ds.eval_gt(i))
        assert npz["00000"].shape == (267, 881) and npz["00011"].shape == (190, 643)


def test_export_gt_drivingstereo_weather(capsys, ds_root, tmp_path):
    root, _ = ds_root
    out = tmp_path / "ds.npz"
    code, _, _ = run_cli(capsys, "data", "export-gt", "--dataset", "drivingstereo", "--data-root", root,
                         "--split", "foggy", "--out", out)
    assert code == 0
    with np.load(out) as npz:
        assert npz["frames"].shape == (3,) and npz["00000"].shape == fixtures.DS_FULL


# --------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------
def test_eval_golden_on_fixture(capsys, kitti_root, kitti_split_file, tmp_path):
    """Predictions = GT / 2 at GT size (1 m where GT is empty): abs_rel = 0.5 exactly without
    scaling, 0 with median scaling (ratio 2); the JSON carries metrics, protocol and frames."""
    root, _ = kitti_root
    ds = KittiDataset(root, str(kitti_split_file))
    gts = [ds.eval_gt(i) for i in range(len(ds))]
    # one array for all frames needs one size: use the 09_26 frames only
    first = fixtures.kitti_split(tmp_path / "a.txt", ROWS[:6])
    pred = np.stack([np.where(g > 0, g / 2, 1.0) for g in gts[:6]]).astype(np.float32)
    preds = _save(tmp_path / "p.npz", depth=pred)
    out = tmp_path / "m.json"
    code, stdout, _ = run_cli(capsys, "eval", "--predictions", preds, "--dataset", "kitti", "--data-root", root,
                              "--split-file", first, "--no-median-scaling", "--json", out)
    assert code == 0 and "abs_rel" in stdout and "crop garg" in stdout
    rep = json.loads(out.read_text())
    assert rep["metrics"]["abs_rel"] == pytest.approx(0.5) and rep["metrics"]["a1"] == 0.0
    assert rep["metrics"]["sq_rel"] == pytest.approx(np.mean([np.mean(g[_garg(g)] / 4) for g in gts[:6]]), rel=1e-5)
    assert rep["metrics"]["num_images"] == 6 and rep["frames"] == first.read_text().splitlines()
    assert rep["protocol"]["crop"] == "garg" and rep["protocol"]["scale"] == "none"
    assert rep["protocol"]["gt_source"] == "velodyne" and len(rep["protocol"]["id"]) == 12
    assert set(rep["metrics"]) >= {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3", "silog"}
    code, _, _ = run_cli(capsys, "eval", "--predictions", preds, "--dataset", "kitti", "--data-root", root,
                         "--split-file", first, "--json", out)  # default: median scaling
    rep = json.loads(out.read_text())
    assert rep["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert rep["metrics"]["scale_median"] == pytest.approx(2.0) and rep["metrics"]["scale_std"] == pytest.approx(0.0)


def test_eval_resizes_disparity_and_mixed_gt_sizes(capsys, kitti_root, kitti_split_file, tmp_path):
    root, _ = kitti_root
    rng = np.random.default_rng(0)
    disp = rng.uniform(0.02, 0.5, (12, 1, 96, 320)).astype(np.float32)
    out = tmp_path / "m.json"
    code, _, _ = run_cli(capsys, "eval", "--predictions", _save(tmp_path / "d.npz", disparity=disp),
                         "--dataset", "kitti", "--data-root", root, "--split-file", kitti_split_file,
                         "--stereo-factor", "5.4", "--json", out)
    assert code == 0
    rep = json.loads(out.read_text())
    assert rep["protocol"]["scale"] == "stereo_factor" and rep["protocol"]["stereo_factor"] == 5.4
    assert rep["prediction_key"] == "disparity" and rep["metrics"]["num_images"] == 12
    # same as the dense reference path, frame by frame
    import torch

    from harness.eval.metrics import MetricAccumulator, compute_metrics
    from harness.eval.protocol import Protocol, resize_prediction
    p = Protocol.from_dict({k: v for k, v in rep["protocol"].items() if k != "id"})
    ds = KittiDataset(root, str(kitti_split_file))
    acc = MetricAccumulator(p)
    for i in range(12):
        gt = torch.from_numpy(ds.eval_gt(i))[None, None]
        acc.update(compute_metrics(resize_prediction(torch.from_numpy(1 / disp[i:i + 1]), gt.shape[-2:]), gt, p))
    assert rep["metrics"]["abs_rel"] == pytest.approx(acc.summary()["abs_rel"], rel=1e-5)


def test_eval_drivingstereo_weather_protocol(capsys, ds_root, tmp_path):
    root, info = ds_root
    ds = DrivingStereoDataset(root, "weather")
    pred = np.stack([np.where(ds.eval_gt(i) > 0, 3 * ds.eval_gt(i), 7.0) for i in range(len(ds))]).astype(np.float32)
    out = tmp_path / "m.json"
    code, stdout, _ = run_cli(capsys, "eval", "--predictions", _save(tmp_path / "p.npz", depth=pred),
                              "--dataset", "drivingstereo", "--data-root", root, "--split", "weather", "--json", out)
    assert code == 0, stdout
    rep = json.loads(out.read_text())
    p = rep["protocol"]
    assert (p["crop"], p["gt_mask"], p["scale"], p["max_depth"]) == ("none", "positive", "median", 80.0)
    assert rep["metrics"]["num_images"] == 12 and rep["metrics"]["scale_median"] == pytest.approx(1 / 3, rel=1e-6)
    # gt > 0 only (no cap): predictions scaled back exactly, but clamped at 80 m -> abs_rel 0 (GT <= 70 m)
    assert rep["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------------------------
# bad input: one line, exit 2
# --------------------------------------------------------------------------------------------
def test_bad_predictions(capsys, kitti_root, kitti_split_file, tmp_path):
    root, _ = kitti_root
    base = ["eval", "--dataset", "kitti", "--data-root", root, "--split-file", kitti_split_file, "--predictions"]
    good = np.full((12, 96, 320), 10.0, np.float32)
    one_error_line(run_cli(capsys, *base, _save(tmp_path / "n.npz", depth=good[:11])),
                   "n.npz", "has 11 frames", "has 12")
    one_error_line(run_cli(capsys, *base, _save(tmp_path / "s.npz", depth=np.ones((12, 3, 96, 320), np.float32))),
                   "s.npz", "shape (12, 3, 96, 320)", "N x H x W")
    one_error_line(run_cli(capsys, *base, _save(tmp_path / "k.npz", pred=good)), "k.npz", "'depth' or 'disparity'")
    nan = good.copy()
    nan[3, 5, 5] = np.nan
    nan[7, 1, 1] = -2.0
    one_error_line(run_cli(capsys, *base, _save(tmp_path / "nan.npz", depth=nan)),
                   "nan.npz", "2 NaN/zero/negative value(s) in 2 frame(s), first in frame 3", "finite and > 0")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    one_error_line(run_cli(capsys, *base, tmp_path / "junk.npz"), "junk.npz", "not a readable NumPy .npz")
    np.savez(tmp_path / "obj.npz", depth=np.array([good[0], None], dtype=object))
    one_error_line(run_cli(capsys, *base, tmp_path / "obj.npz"), "obj.npz", "object arrays")
    one_error_line(run_cli(capsys, *base, tmp_path / "missing.npz"), "option --predictions", "no such file")
    one_error_line(run_cli(capsys, *base, _save(tmp_path / "g.npz", depth=good), "--median-scaling",
                           "--stereo-factor", "5.4"), "--median-scaling", "--stereo-factor")
    one_error_line(run_cli(capsys, "eval", "--dataset", "kitti", "--data-root", root, "--split", "eigen",
                           "--split-file", kitti_split_file, "--predictions", tmp_path / "g.npz"),
                   "--split-file", "not allowed with argument --split")


def test_bad_files(capsys, kitti_copy, ds_copy, tmp_path):
    drive = kitti_copy / A / fixtures.DRIVES[A]
    split = fixtures.kitti_split(tmp_path / "s.txt", [(A, 1, "l"), (A, 2, "l")])
    export = ["data", "export-gt", "--dataset", "kitti", "--data-root", kitti_copy, "--split-file", split,
              "--out", tmp_path / "gt.npz"]
    # truncated .bin
    bin2 = drive / "velodyne_points" / "data" / "0000000002.bin"
    saved = bin2.read_bytes()
    bin2.write_bytes(saved[:-5])
    one_error_line(run_cli(capsys, *export), "0000000002.bin", "not a multiple of 16")
    bin2.write_bytes(saved)
    # calibration without P_rect_02 / with non-numeric values
    cal = kitti_copy / A / "calib_cam_to_cam.txt"
    text = cal.read_text()
    cal.write_text("".join(ln + "\n" for ln in text.splitlines() if not ln.startswith("P_rect_02")))
    one_error_line(run_cli(capsys, *export), "calib_cam_to_cam.txt", "'P_rect_02' is missing")
    cal.write_text(text.replace("R_rect_00: ", "R_rect_00: abc "))
    one_error_line(run_cli(capsys, *export), "calib_cam_to_cam.txt", "'R_rect_00' has non-numeric value")
    cal.write_text(text)
    assert not (tmp_path / "gt.npz").exists()  # nothing half-written
    # split line naming a missing frame
    missing = fixtures.kitti_split(tmp_path / "m.txt", [(A, 1, "l"), (A, 77, "l")])
    one_error_line(run_cli(capsys, "data", "export-gt", "--dataset", "kitti", "--data-root", kitti_copy,
                           "--split-file", missing, "--out", tmp_path / "gt.npz"),
                   "0000000077.bin", "not found", "m.txt")
    # 8-bit / RGB PNG where a uint16 depth map is required (DrivingStereo depth maps)
    ds = DrivingStereoDataset(ds_copy, "sunny")
    depth_png = ds.file_path(ds.samples[1], "depth")
    for img in (np.zeros((*fixtures.DS_FULL, 3), np.uint8), np.zeros(fixtures.DS_FULL, np.uint8)):
        cv2.imwrite(str(depth_png), img)
        one_error_line(run_cli(capsys, "data", "export-gt", "--dataset", "drivingstereo", "--data-root", ds_copy,
                               "--split", "sunny", "--out", tmp_path / "d.npz"),
                       depth_png.name, "expected a single-channel 16-bit PNG")
    bad_split = tmp_path / "ds.txt"
    bad_split.write_text("2018-10-19-09-30-39_2099-01-01-00-00-00-000.png\n")
    one_error_line(run_cli(capsys, "data", "export-gt", "--dataset", "drivingstereo", "--data-root", ds_copy,
                           "--split-file", bad_split, "--out", tmp_path / "d.npz"), "ds.txt", "split line 1")
    one_error_line(run_cli(capsys, *export[:-2], "--out", tmp_path / "gt.txt"), "--out", ".npz")
    one_error_line(run_cli(capsys, "data", "export-gt", "--dataset", "kitti", "--data-root", tmp_path / "nope",
                           "--split", "eigen", "--out", tmp_path / "x.npz"), "--data-root", "no such directory")
    one_error_line(run_cli(capsys, "data", "export-gt", "--dataset", "nuscenes", "--data-root", kitti_copy,
                           "--split", "eigen", "--out", tmp_path / "x.npz"), "unknown dataset 'nuscenes'")


def test_subprocess_error_has_no_traceback(kitti_root, tmp_path):
    root, _ = kitti_root
    np.savez(tmp_path / "p.npz", depth=np.ones((3, 8, 8), np.float32))
    out = subprocess.run([sys.executable, "-m", "harness.cli", "eval", "--predictions", str(tmp_path / "p.npz"),
                          "--dataset", "kitti", "--data-root", str(root), "--split", "eigen"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"harness: error: {tmp_path / 'p.npz'}: 'depth' has 3 frames, the split 'eigen' has 697"]


# --------------------------------------------------------------------------------------------
# data check
# --------------------------------------------------------------------------------------------
def test_data_check_reports_counts_and_exit_codes(capsys, kitti_copy, ds_copy, tmp_path):
    split = fixtures.kitti_split(tmp_path / "s.txt", ROWS)
    args = ["data", "check", "--dataset", "kitti", "--data-root", kitti_copy, "--split-file", split]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "no problems found" in out and "12 velodyne scans" in out
    drive = kitti_copy / A / fixtures.DRIVES[A]
    (drive / "velodyne_points" / "data" / "0000000003.bin").unlink()
    (drive / "velodyne_points" / "data" / "0000000004.bin").unlink()
    p5 = drive / "velodyne_points" / "data" / "0000000005.bin"
    p5.write_bytes(p5.read_bytes()[:-3])
    (drive / "image_03" / "data" / "0000000002.png").unlink()  # partner: training only
    cv2.imwrite(str(drive / "image_02" / "data" / "0000000006.png"), np.zeros((10, 10, 3), np.uint8))
    code, out, _ = run_cli(capsys, *args)
    assert code == 1, out
    assert "ERROR: missing Velodyne scans: 2 file(s) (2 frames)" in out
    assert "0000000003.bin" in out and "0000000004.bin" in out
    assert "ERROR: malformed Velodyne scans: 1 file(s)" in out and "not a positive multiple of 16" in out
    assert "ERROR: wrong size target images (image_02): 1 file(s)" in out and "10x10, expected 881x267" in out
    assert "warning: missing stereo partner images: 1 file(s)" in out
    assert "CANNOT be evaluated: 4 of 12 frames" in out
    (kitti_copy / B / "calib_velo_to_cam.txt").unlink()  # Velodyne GT of all six 09_30 frames
    code, out, _ = run_cli(capsys, *args)
    assert "ERROR: bad calibration: 1 file(s) (6 frames)" in out and "calibration file not found" in out
    assert "CANNOT be evaluated: 10 of 12 frames" in out
    # DrivingStereo: an 8-bit depth map blocks, a missing right image only warns
    ds = DrivingStereoDataset(ds_copy, "foggy")
    cv2.imwrite(str(ds.file_path(ds.samples[0], "depth")), np.zeros(fixtures.DS_FULL, np.uint8))
    ds.file_path(ds.samples[2], "right").unlink()
    code, out, _ = run_cli(capsys, "data", "check", "--dataset", "drivingstereo", "--data-root", ds_copy,
                           "--split", "foggy")
    assert code == 1 and "ERROR: malformed depth maps: 1 file(s)" in out and "8-bit PNG" in out
    assert "warning: missing right images: 1 file(s)" in out
    code, out, _ = run_cli(capsys, "data", "check", "--dataset", "drivingstereo", "--data-root", ds_copy,
                           "--split", "sunny")
    assert code == 0 and "can be evaluated" in out


def test_split_protocols_from_the_dataset_config(kitti_root):
    from harness.data.access import open_split, split_protocol

    root, _ = kitti_root
    bench = open_split("kitti", root, split="eigen_benchmark")
    p = split_protocol(bench, (192, 640))
    assert (p.crop, p.gt_mask, p.gt_source, p.scale, len(bench.dataset)) == ("none", "positive", "dense", "median", 652)
    eigen = split_protocol(open_split("kitti", root), (192, 640), scale="none", max_depth=50.0)
    assert (eigen.split, eigen.crop, eigen.gt_mask, eigen.gt_source) == ("eigen", "garg", "range", "velodyne")
    assert (eigen.scale, eigen.max_depth) == ("none", 50.0)


def test_eval_flip_post_processing(capsys, kitti_root, kitti_split_file, tmp_path):
    import torch

    from harness.eval.metrics import MetricAccumulator, compute_metrics
    from harness.eval.protocol import Protocol, flip_post_process, resize_disparity

    root, _ = kitti_root
    rng = np.random.default_rng(2)
    depth = rng.uniform(2, 60, (12, 64, 192)).astype(np.float32)
    mirrored = rng.uniform(2, 60, (12, 1, 64, 192)).astype(np.float32)
    out = tmp_path / "m.json"
    code, _, err = run_cli(capsys, "eval", "--predictions", _save(tmp_path / "p.npz", depth=depth, depth_flipped=mirrored),
                           "--dataset", "kitti", "--data-root", root, "--split-file", kitti_split_file, "--json", out)
    assert code == 0, err
    rep = json.loads(out.read_text())
    assert rep["protocol"]["flip_pp"] is True
    p = Protocol.from_dict({k: v for k, v in rep["protocol"].items() if k != "id"})
    ds = KittiDataset(root, str(kitti_split_file))
    acc = MetricAccumulator(p)
    for i in range(12):
        disp = flip_post_process(torch.from_numpy(1 / depth[i]), torch.from_numpy(1 / mirrored[i, 0]))[None, None]
        gt = torch.from_numpy(ds.eval_gt(i))[None, None]
        acc.update(compute_metrics(1 / resize_disparity(disp, gt.shape[-2:]), gt, p))
    assert rep["metrics"]["abs_rel"] == pytest.approx(acc.summary()["abs_rel"], rel=1e-5)
    one_error_line(run_cli(capsys, "eval", "--predictions",
                           _save(tmp_path / "q.npz", depth=depth, depth_flipped=mirrored[:5]), "--dataset", "kitti",
                           "--data-root", root, "--split-file", kitti_split_file), "q.npz", "'depth_flipped' has shape")


def test_eval_reads_a_monodepth2_npy_and_post_processes(capsys, kitti_root, kitti_split_file, tmp_path):
    """A Monodepth2 ``.npy`` of disparities scores like the same maps in an .npz; with --post_process a
    2N-map .npy (frames, then mirrored frames) is flip-fused exactly like an .npz with ``disparity_flipped``."""
    root, _ = kitti_root
    rng = np.random.default_rng(1)
    disp = rng.uniform(0.02, 0.5, (12, 96, 320)).astype(np.float32)
    flipped = rng.uniform(0.02, 0.5, (12, 96, 320)).astype(np.float32)
    np.save(tmp_path / "disps.npy", disp)
    np.save(tmp_path / "both.npy", np.concatenate([disp, flipped]))
    common = ["--dataset", "kitti", "--data-root", root, "--split-file", kitti_split_file]

    def metrics(pred, *extra):
        out = tmp_path / "m.json"
        code, _, err = run_cli(capsys, "eval", "--predictions", pred, *common, *extra, "--json", out)
        assert code == 0, err
        return json.loads(out.read_text())

    npy, npz = metrics(tmp_path / "disps.npy"), metrics(_save(tmp_path / "d.npz", disparity=disp))
    assert npy["metrics"] == npz["metrics"] and npy["prediction_key"] == "disparity"
    fused = metrics(tmp_path / "both.npy", "--post_process")
    ref = metrics(_save(tmp_path / "f.npz", disparity=disp, disparity_flipped=flipped))
    assert fused["metrics"] == ref["metrics"] and fused["protocol"]["flip_pp"] is True
    assert fused["metrics"]["abs_rel"] != npy["metrics"]["abs_rel"]
    code, _, err = run_cli(capsys, "eval", "--predictions", _save(tmp_path / "d.npz", disparity=disp), *common,
                           "--post_process")
    assert code == 2 and "option --post_process" in err and "mirrored" in err and "Traceback" not in err
    np.save(tmp_path / "odd.npy", disp[:11])
    code, _, err = run_cli(capsys, "eval", "--predictions", tmp_path / "odd.npy", *common, "--post_process")
    assert code == 2 and "needs 2N" in err
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = run_cli(capsys, "eval", "--predictions", tmp_path / "obj.npy", *common)
    assert code == 2 and "pickled" in err and "Traceback" not in err
