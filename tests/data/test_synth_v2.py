"""Synthetic benchmark v2: subsampled evaluation drives, degenerate-drive redraws, splits
balanced on scene statistics (within ``harness.data.stats.TOLERANCE``), ``harness data stats``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.data import formats, stats, synth, synth_splits
from harness.data.synth_dataset import SynthDataset

# the benchmark layout (harness/config/configs/_base_/datasets/synth.py: 36/24/24 drives, 4 eval
# frames per drive) at a low resolution and 6 frames per drive, so that it generates in seconds
LAYOUT = dict(frames=84 * 6, frames_per_drive=6, split_fractions=(3, 2, 2), eval_frames_per_drive=4,
              height=32, width=96, seed=0)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_v2")
    info = synth.generate(root, **LAYOUT)
    return root, info


def test_eval_frames_are_spread_inner_frames():
    assert synth_splits.eval_frames(20, 4) == [1, 7, 12, 18]  # >= 5 frames apart: no near-duplicate runs
    assert synth_splits.eval_frames(6, 4) == [1, 2, 3, 4]
    assert synth_splits.eval_frames(20, 0) == list(range(1, 19))
    assert synth_splits.eval_frames(2, 4) == [0, 1]


def test_balanced_assignment_counts_and_balance():
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=(40, 3))
    x[:4, 0] *= 20  # a few outliers, all at the start: the contiguous order puts them in train
    counts = (20, 10, 10)
    labels = synth_splits.balanced_assignment(x, counts)
    assert [labels.count(s) for s in ("train", "val", "test")] == list(counts)
    assert labels == synth_splits.balanced_assignment(x, counts)  # deterministic

    def worst(lab):
        lab = np.array(lab)
        return max(abs(x[lab == s].mean(0) - x.mean(0)).max() / x.std(0).max() for s in ("train", "val", "test"))

    contiguous = ["train"] * 20 + ["val"] * 10 + ["test"] * 10
    assert worst(labels) < 0.2 * worst(contiguous)
    with pytest.raises(ValueError, match="add up"):
        synth_splits.balanced_assignment(x, (1, 1, 1))


def test_benchmark_layout_splits(bench):
    root, info = bench
    meta = json.loads((root / "synth.json").read_text())
    assert meta["version"] == synth.VERSION == "2"
    rows = {s: formats.read_split(root / "splits" / f"{s}_files.txt") for s in ("train", "val", "test")}
    folders = {s: {f for f, _, _ in r} for s, r in rows.items()}
    assert len(folders["val"]) >= 24 and len(folders["test"]) >= 24
    assert not (folders["train"] & folders["val"] or folders["train"] & folders["test"] or folders["val"] & folders["test"])
    for s in ("val", "test"):  # the same evenly spaced frames of every drive
        per = {}
        for f, t, _ in rows[s]:
            per.setdefault(f, []).append(t)
        assert all(v == synth_splits.eval_frames(6, 4) for v in per.values())
    assert len(rows["train"]) == 4 * len(folders["train"])  # every inner frame
    # drives are not assigned contiguously: the balance moved some
    assert sorted(meta["drives"]["train"]) != [synth.drive_name(k) for k in range(36)]
    # a degenerate draw is redrawn; the attempt is recorded and the files are that draw
    probes = meta["probes"]
    assert all(p["near"] <= synth_splits.MAX_DRIVE_NEAR or p["attempt"] == synth_splits.MAX_ATTEMPTS - 1
               for p in probes.values())
    redrawn = [name for name, p in probes.items() if p["attempt"] > 0]
    assert info["redrawn"] == len(redrawn) >= 1
    k = int(redrawn[0].split("_drive_")[1][:4]) - 1
    cam = synth.Camera.for_size(32, 96)
    scene = synth.DriveScene(0, k, 6, cam, attempt=probes[redrawn[0]]["attempt"])
    np.testing.assert_array_equal(formats.read_poses(root / synth.DATE / redrawn[0] / "poses.txt"), scene.poses)
    rejected = synth.DriveScene(0, k, 6, synth.Camera.for_size(8, 24))  # attempt 0, probed as the generator does
    near = np.mean([synth_splits.frame_stats(r["depth"], r["semantic"])[0]
                    for r in (rejected.render(t) for t in synth_splits.eval_frames(6, 4))])
    assert near > synth_splits.MAX_DRIVE_NEAR


@pytest.mark.slow
def test_benchmark_splits_agree_within_tolerance(bench):
    root, _ = bench
    res = {s: stats.split_stats(SynthDataset(root, s, need={"semantic", "meta"}), labels=synth.LABELS)
           for s in ("train", "val", "test")}
    assert stats.balance_report(res) == []
    for s in ("val", "test"):
        assert res[s]["top_drive"]["near_pixel_share"] < 0.2  # no drive dominates a split
        assert res[s]["degenerate_frames"] <= 0.05 * res[s]["frames"]


def test_balance_report_names_the_offending_split():
    base = {"frames": 10, "near_share": 0.05, "class_shares": {"car": 0.18, "road": 0.22}}
    ok = {"train": dict(base), "val": dict(base), "test": dict(base)}
    assert stats.balance_report(ok) == []
    bad = {"train": dict(base), "val": dict(base, near_share=0.037), "test": dict(base, near_share=0.069)}
    bad["test"] = dict(bad["test"], class_shares={"car": 0.21, "road": 0.22})
    lines = stats.balance_report(bad)
    assert any(ln.startswith("val: near share") for ln in lines)
    assert any(ln.startswith("test: near share") for ln in lines)
    assert any(ln.startswith("test: car share") for ln in lines)


def test_split_stats_against_hand_computation(tmp_path):
    root = tmp_path / "s"
    synth.generate(root, frames=12, frames_per_drive=4, height=32, width=96, seed=4)
    ds = SynthDataset(root, "train", need={"semantic", "meta"})
    res = stats.split_stats(ds, labels=synth.LABELS)
    gts = [ds.eval_gt(i) for i in range(len(ds))]
    valid = np.concatenate([g[g > 0] for g in gts])
    assert res["frames"] == len(ds) == 2 and res["drives"] == 1
    assert res["near_share"] == pytest.approx((valid < 5.0).mean())
    assert res["depth_quantiles"]["p50"] == pytest.approx(np.percentile(valid, 50), abs=0.02)
    labels = np.concatenate([ds[i]["semantic"].numpy().ravel() for i in range(len(ds))])
    assert res["class_shares"]["car"] == pytest.approx((labels == synth.CAR).mean())
    assert sum(res["class_shares"].values()) == pytest.approx(1.0)
    near_frames = [((g > 0) & (g < 5)).sum() / (g > 0).sum() for g in gts]
    assert res["degenerate_frames"] == sum(v > stats.DEGENERATE_FRAME_NEAR for v in near_frames)
    if res["top_drive"] is not None:
        assert res["top_drive"]["near_pixel_share"] == pytest.approx(1.0)


def test_data_stats_cli(bench, tmp_path, capsys):
    from harness.cli.main import main

    root, _ = bench
    out = tmp_path / "stats.json"
    assert main(["data", "stats", "--data-root", str(root), "--splits", "val,test", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "near share (< 5 m)" in text and "car share" in text and "splits agree within the tolerance" in text
    record = json.loads(out.read_text())
    assert set(record["splits"]) == {"val", "test"} and record["balance_problems"] == []
    assert record["splits"]["test"]["drives"] == 24 and record["splits"]["test"]["frames"] == 96
    assert main(["data", "stats", "--data-root", str(root), "--splits", "test", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["test"]["frames"] == 96


@pytest.mark.parametrize("argv, fragment", [
    (["--data-root", "/nonexistent/x"], "option --data-root /nonexistent/x: no such directory"),
    (["--splits", "train,eval"], "option --splits train,eval"),
    (["--dataset", "kitti"], "needs --data-root"),
])
def test_data_stats_cli_errors(bench, argv, fragment, capsys):
    from harness.cli.main import main

    root, _ = bench
    if "--data-root" not in argv:
        argv = [*argv, "--data-root", str(root)] if argv[0] == "--splits" else argv
    assert main(["data", "stats", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness: error: ") and fragment in err[0]


def test_data_synth_cli_v2_options(tmp_path, capsys):
    from harness.cli.main import main

    out = tmp_path / "s"
    assert main(["data", "synth", "--out", str(out), "--frames", "24", "--height", "32", "--width", "96",
                 "--frames-per-drive", "4", "--split-fractions", "1,1,1", "--eval-frames-per-drive", "1"]) == 0
    assert "val 2 frames of 2 drives" in capsys.readouterr().out
    meta = json.loads((out / "synth.json").read_text())
    assert meta["params"]["eval_frames_per_drive"] == 1 and meta["params"]["split_fractions"] == [1.0, 1.0, 1.0]
    for argv, fragment in ((["--split-fractions", "1,x,2"], "option --split-fractions 1,x,2"),
                           (["--split-fractions", "1,2"], "option --split-fractions 1,2"),
                           (["--eval-frames-per-drive", "-1"], "option --eval-frames-per-drive"),
                           (["--workers", "0"], "option --workers")):
        assert main(["data", "synth", "--out", str(tmp_path / "t"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0]
