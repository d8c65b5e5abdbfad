"""SGBMTeacher: recovers a known disparity, fills holes, marks confidence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.models.sgbm import SGBMTeacher, fill_invalid_along_rows, left_right_check
from harness.types import DepthOutput

H, W, FX, BASELINE = 64, 128, 50.0, 0.5


def shifted_pair(d: int, b: int = 2, seed: int = 0) -> dict:
    """Random-texture rectified pairs with constant disparity ``d`` (``left[x] = right[x - d]``)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, H // 2, (W + d) // 2 + 1, generator=g)
    tex = 0.7 * F.interpolate(coarse, size=(H, W + d), mode="bilinear", align_corners=False)
    tex = tex + 0.3 * torch.rand(b, 3, H, W + d, generator=g)
    K = torch.eye(3).repeat(b, 1, 1)
    K[:, 0, 0] = FX
    return {"image": tex[..., :W].contiguous(), "image_right": tex[..., d:d + W].contiguous(),
            "K": K, "baseline": torch.full((b,), BASELINE)}


@pytest.mark.parametrize("lr_check", [True, False])
def test_recovers_constant_disparity(lr_check):
    out = SGBMTeacher(max_disp=48, lr_check=lr_check)(shifted_pair(8))
    assert isinstance(out, DepthOutput) and out.disp_units == "px"
    disp, conf = out.disp[0], out.aux["confidence"]
    assert disp.shape == conf.shape == (2, 1, H, W)
    interior = disp[..., 8:-8, 16:-8]
    assert abs(interior.median().item() - 8.0) <= 0.5
    assert conf[..., 8:-8, 16:-8].mean() > 0.9
    if lr_check:
        # Left-border pixels (x < d) have no match in the right view: the check rejects them.
        assert torch.all(conf[..., :, :8] == 0)


def test_lr_check_rejects_bad_matches_and_fills_them():
    pair = shifted_pair(8)
    checked = SGBMTeacher(lr_check=True)(pair)
    disp, conf = checked.disp[0], checked.aux["confidence"]
    # Confident pixels are accurate, and invalid ones are filled from valid neighbours.
    assert (disp[conf > 0] - 8.0).abs().max() <= 1.0
    assert (disp[..., :, 8:] - 8.0).abs().max() <= 1.0
    assert torch.isfinite(disp).all() and torch.all(disp > 0)


def test_depth_and_interface():
    t = SGBMTeacher(max_disp=40)
    assert t.num_disparities == 48
    assert t.mode == "frozen" and t.trainable is False
    assert t.input_keys == frozenset({"image", "image_right", "K", "baseline"})
    assert t.feature_specs() == []
    assert not hasattr(t, "self_loss")
    assert list(t.parameters()) == []
    out = t(shifted_pair(12))
    expected = (FX * BASELINE / out.disp[0]).clamp(t.min_depth, t.max_depth)
    torch.testing.assert_close(out.depth[0], expected)
    assert torch.isfinite(out.depth[0]).all()
    with pytest.raises(KeyError, match="K"):
        t({k: v for k, v in shifted_pair(8).items() if k != "K"})


def test_fill_invalid_along_rows():
    valid = np.array([[0, 1, 0, 0, 1, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0, 0],
                      [1, 0, 0, 0, 0, 0, 0, 1]], dtype=bool)
    values = np.arange(24, dtype=np.float32).reshape(3, 8)
    filled = fill_invalid_along_rows(values, valid, fallback=-1.0)
    np.testing.assert_array_equal(filled[0], [1, 1, 1, 4, 4, 4, 4, 4])
    np.testing.assert_array_equal(filled[1], [-1] * 8)
    np.testing.assert_array_equal(filled[2], [16, 16, 16, 16, 23, 23, 23, 23])


def test_left_right_check():
    disp_l = np.array([[2.0, 2.0, 2.0, 2.0, 2.0, 0.0]])
    disp_r = np.array([[2.0, 2.0, 5.0, 2.0, 2.0, 2.0]])
    ok = left_right_check(disp_l, disp_r, max_diff=1.0)
    # x=0,1 land outside the right image; x=4 hits the inconsistent 5.0; x=5 is invalid (0).
    np.testing.assert_array_equal(ok[0], [False, False, True, True, False, False])
