"""A real rectified pair shipped with scikit-image (Middlebury 2014 'motorcycle', 1/4 size, with
GT disparity; NaN/inf = no GT): the SGBM teacher through ``harness.deploy.predict``."""
import numpy as np
import pytest
from skimage import data

from harness.deploy import predict


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
    # the default 48 px range cannot reach the nearest surfaces: markedly worse (measured 0.316)
    short = predict.predict_pair(predict.load_teacher(host, "sgbm", tmp_path), left, right)
    assert predict.bad_pixel_rate(short, gt, 3.0) > 0.2
