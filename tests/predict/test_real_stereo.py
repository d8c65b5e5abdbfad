"""A real rectified pair shipped with scikit-image (Middlebury 2014 'motorcycle', 1/4 size, with
GT disparity; NaN/inf = no GT): the SGBM teacher through ``harness.deploy.predict``."""
import warnings

import numpy as np
import pytest
import torch
from skimage import data

from harness.data import formats
from harness.deploy import predict
from harness.errors import HarnessWarning
from harness.models.sgbm import default_max_disp


@pytest.fixture(scope="module")
def motorcycle():
    left, right, gt = data.stereo_motorcycle()  # bundled with scikit-image, no download
    return left, right, gt


def test_sgbm_bad_pixel_rate_on_motorcycle(host, tmp_path, motorcycle):
    left, right, gt = motorcycle
    assert np.nanmax(np.where(np.isfinite(gt), gt, np.nan)) < 64  # GT range: 7.2 .. 59.9 px
    teacher = predict.load_teacher(host, "sgbm", tmp_path, max_disp=64)
    disp = predict.predict_pair(teacher, left, right)
    assert disp.shape == gt.shape
    # measured 0.080 (|d - d_gt| > 3 px on the 92.7 % of pixels with GT, holes filled along rows)
    assert predict.bad_pixel_rate(disp, gt, 3.0) < 0.10
    # a 48 px range cannot reach the nearest surfaces: markedly worse (measured 0.316), and it says so
    with pytest.warns(HarnessWarning, match=r"teacher sgbm: 1\d\.\d % of the valid disparities are at the top "
                                            r"of the search range.*a larger --max-disp \(now 48 px\)"):
        short = predict.predict_pair(predict.load_teacher(host, "sgbm", tmp_path, max_disp=48), left, right)
    assert predict.bad_pixel_rate(short, gt, 3.0) > 0.2


def test_sgbm_default_range_scales_with_the_width(host, tmp_path, motorcycle):
    left, right, gt = motorcycle
    teacher = predict.load_teacher(host, "sgbm", tmp_path)
    assert teacher.model.search_range(left.shape[1]) == 96  # 741 px / 8, rounded up to 16
    with warnings.catch_warnings():
        warnings.simplefilter("error", HarnessWarning)  # full coverage: no clipping warning
        disp = predict.predict_pair(teacher, left, right)
    assert predict.bad_pixel_rate(disp, gt, 3.0) < 0.10
    assert [default_max_disp(w) for w in (320, 640, 741, 1242)] == [48, 80, 96, 160]


def test_cli_warns_in_one_line_naming_max_disp(tmp_path, motorcycle, capsys):
    from harness.cli.main import main

    left, right, _ = motorcycle
    formats.write_image(tmp_path / "l.png", left)
    formats.write_image(tmp_path / "r.png", right)
    assert main(["predict", "--teacher", "sgbm", "--max-disp", "48", "--left", str(tmp_path / "l.png"),
                 "--right", str(tmp_path / "r.png"), "--out", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("harness: warning: teacher sgbm:") and "--max-disp" in lines[0]


def test_trained_teacher_at_the_top_of_its_range_warns():
    class Pinned(torch.nn.Module):
        max_disp = 16

    disp = np.full((8, 32), 15.5, np.float32)
    with pytest.warns(HarnessWarning, match="--max-disp does not apply to a trained teacher.*teacher.max_disp"):
        share = predict.warn_if_clipped(predict.LoadedTeacher(Pinned(), "stereo", (8, 32)), disp, None, 32)
    assert share == 1.0
