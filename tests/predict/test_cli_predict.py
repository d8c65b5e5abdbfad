"""``harness predict`` / ``harness export`` through the CLI: outputs, one-line errors, exit codes."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from harness.cli import main as cli
from harness.data import formats

from .conftest import make_run, texture


def _error_line(capsys, code, rc, *fragments):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_predict_folder_writes_three_files_per_image(fake_run, images, tmp_path, capsys):
    run, _ = fake_run
    rc = cli.main(["predict", "--run", str(run), "--input", str(images), "--out", str(tmp_path / "o"), "--npy"])
    assert rc == 0
    assert "baseline student (resnet, epoch_1.pth): 3 image(s) at 64x96 -> 9 files" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").iterdir())[:3] == ["img0_depth.npy", "img0_depth.png",
                                                                      "img0_depth_color.png"]


def test_predict_teacher_pair_with_depth(tmp_path, capsys):
    wide = texture(64, 168, seed=5)
    formats.write_image(tmp_path / "l.png", wide[:, :160])
    formats.write_image(tmp_path / "r.png", wide[:, 8:])
    rc = cli.main(["predict", "--teacher", "sgbm", "--max-disp", "32", "--left", str(tmp_path / "l.png"),
                   "--right", str(tmp_path / "r.png"), "--focal", "100", "--baseline", "0.5", "--out",
                   str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    disp = cv2.imread(str(tmp_path / "o" / "l_disp.png"), cv2.IMREAD_UNCHANGED) / 256.0
    depth = cv2.imread(str(tmp_path / "o" / "l_depth.png"), cv2.IMREAD_UNCHANGED) / 256.0
    assert np.median(disp[:, 16:]) == pytest.approx(8.0, abs=0.25)
    assert np.median(depth[:, 16:]) == pytest.approx(100 * 0.5 / 8.0, rel=0.03)
    assert (tmp_path / "o" / "l_disp_color.png").is_file() and (tmp_path / "o" / "l_depth_color.png").is_file()


def test_export_torchscript(fake_run, tmp_path, capsys):
    run, _ = fake_run
    rc = cli.main(["export", "--checkpoint", str(run), "--format", "torchscript", "--out", str(tmp_path / "s.pt"),
                   "--runs", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and (tmp_path / "s.pt").is_file()
    assert "parameters" in out and "max |diff|" in out and "eager" in out


def test_usage_errors(fake_run, images, tmp_path, capsys):
    run, _ = fake_run
    cv2.imwrite(str(tmp_path / "grey.png"), np.zeros((64, 96), np.uint8))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    formats.write_image(tmp_path / "l.png", texture(64, 96))
    formats.write_image(tmp_path / "r.png", texture(64, 80))
    cases = [
        (["--run", str(run), "--input", str(tmp_path / "junk.png")], "junk.png: not a readable image file"),
        (["--run", str(run), "--input", str(tmp_path / "grey.png")], "grey.png: expected a colour image"),
        (["--run", str(run)], "option --input: required"),
        (["--teacher", "sgbm", "--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png")],
         "--left/--right: the images differ in size (96x64 vs 80x64)"),
        (["--teacher", "sgbm", "--left", str(tmp_path / "l.png")], "--teacher needs both images"),
        (["--teacher", "sgbm", "--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "l.png"),
          "--focal", "100"], "give both to write depth"),
        (["--teacher", "sgbm", "--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "l.png"),
          "--max-disp", "0"], "--max-disp: must be positive"),
        (["--run", str(run), "--input", str(images), "--left", str(tmp_path / "l.png")], "only with --teacher"),
    ]
    for args, fragment in cases:
        _error_line(capsys, 2, cli.main(["predict", *args, "--out", str(tmp_path / "o")]), fragment)


def test_checkpoint_errors(tmp_path, host, images, capsys):
    run, _ = make_run(tmp_path / "a", host)
    other, _ = make_run(tmp_path / "b", host, student="rsd_mono", spec={"base_width": 8}, method="recursive")
    broken = run / "student" / "broken.pth"
    broken.write_bytes(b"\x00" * 64)
    for target, fragment in [(other / "student" / "epoch_1.pth", "do not fit student 'resnet' of method 'baseline'"),
                             (broken, "broken.pth: cannot be read as a torch checkpoint")]:
        rc = cli.main(["predict", "--checkpoint", str(target), "--config", str(run / "run_config.json"),
                       "--input", str(images), "--out", str(tmp_path / "o")])
        _error_line(capsys, 2, rc, fragment)


def test_onnx_missing_exits_1(fake_run, tmp_path, capsys, monkeypatch):
    run, _ = fake_run
    monkeypatch.setitem(sys.modules, "onnx", None)
    rc = cli.main(["export", "--run", str(run), "--format", "onnx", "--out", str(tmp_path / "s.onnx")])
    _error_line(capsys, 1, rc, "'onnx' package is not installed")


@pytest.mark.slow  # a fresh interpreter imports torch: several seconds on a loaded machine
def test_error_is_one_line_without_traceback_in_a_real_process(fake_run, tmp_path):
    run, _ = fake_run
    (tmp_path / "x.png").write_bytes(b"junk")
    out = subprocess.run([sys.executable, "-m", "harness.cli", "predict", "--run", str(run), "--input",
                          str(tmp_path / "x.png"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "x.png: not a readable image file" in out.stderr


@pytest.mark.slow
def test_quick_run_then_predict_and_export(tmp_path, images, monkeypatch):
    """End to end: a real quick run's work dir records its config; predict and export use it."""
    monkeypatch.setenv("STEREODISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    assert cli.main(["run", "--method", "baseline", "--quick", "--results", str(tmp_path / "res"),
                     "--work-dir", str(work), "--cfg-options", "evaluate.teacher=False"]) == 0
    record = json.loads((work / "run_config.json").read_text())
    assert record["method"] == "baseline" and record["stages"] == ["student"] and record["student"] == "resnet"
    assert cli.main(["predict", "--run", str(work), "--input", str(images), "--out", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o").glob("*_depth.png"))) == 3
    assert cli.main(["export", "--run", str(work), "--format", "torchscript", "--out", str(tmp_path / "s.pt"),
                     "--runs", "1"]) == 0
