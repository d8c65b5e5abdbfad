"""harness.report.colormap: matplotlib's magma, near = bright, invalid = black."""
import numpy as np
import pytest
import skimage.color
from matplotlib import colormaps

from harness.report.colormap import LUT, colorize


def _luma(rgb):
    return rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722


def test_table_is_real_magma_dark_to_bright_and_monotone():
    assert LUT.shape == (256, 3) and LUT.dtype == np.uint8
    ref = np.rint(colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255)
    assert np.array_equal(LUT, ref)
    # CIELAB lightness strictly increases: readable in grey too (Rec.709 luma of the rounded
    # table dips by < 0.4 levels at three entries, so lightness is measured perceptually)
    lightness = skimage.color.rgb2lab(LUT[None] / 255.0)[0, :, 0]
    assert np.all(np.diff(lightness) > 0)
    luma = _luma(LUT.astype(float))
    assert luma[0] < 5 and luma[-1] > 230


def test_predict_and_visualize_colour_alike():
    from harness.report import visualize

    depth = np.linspace(2.0, 60.0, 500)[None].repeat(3, 0)
    valid = np.ones_like(depth, dtype=bool)
    ours = colorize(depth, vmin=2.0, vmax=60.0)
    assert np.array_equal(visualize.colorize(depth, valid, 2.0, 60.0), ours)
    t = (1 / depth - 1 / 60.0) / (1 / 2.0 - 1 / 60.0)  # matplotlib's own mapping of the same values
    assert np.array_equal(ours, np.rint(colormaps["magma"](t)[..., :3] * 255).astype(np.uint8))


def test_near_is_bright_for_depth_and_for_inverse_depth():
    depth = np.linspace(1.0, 50.0, 64, dtype=np.float32)[None].repeat(4, 0)  # left near, right far
    img = colorize(depth)
    assert img.dtype == np.uint8 and img.shape == (4, 64, 3)
    luma = _luma(img[0].astype(float))
    assert np.all(np.diff(luma) <= 0) and luma[0] > luma[-1] + 150
    inv = colorize(1.0 / depth, inverse=True)
    assert _luma(inv[0, 0].astype(float)) > _luma(inv[0, -1].astype(float)) + 150


def test_invalid_pixels_are_black_and_range_is_clipped():
    depth = np.array([[0.0, np.nan, np.inf, -1.0, 2.0, 10.0, 100.0]])
    img = colorize(depth, vmin=2.0, vmax=10.0)
    assert not img[0, :4].any()
    np.testing.assert_array_equal(img[0, 4], LUT[255])  # vmin (near) -> brightest
    np.testing.assert_array_equal(img[0, 5], LUT[0])  # vmax (far) -> darkest
    np.testing.assert_array_equal(img[0, 6], LUT[0])  # beyond vmax: clipped
    assert not colorize(np.zeros((3, 3))).any()


def test_constant_map_and_bad_shape():
    assert colorize(np.full((2, 2), 5.0)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="HxW"):
        colorize(np.ones((2, 2, 3)))
