"""Golden metric values on fixed arrays (worked out by hand) and the sparse evaluation path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.eval.metrics import METRIC_NAMES, MetricAccumulator, compute_metrics, metrics_from_values
from harness.eval.protocol import Protocol, resize_disparity
from harness.eval.sparse import compute_metrics_sparse, sample_resized
from harness.eval.predictions import Predictions, score


def _protocol(**kw) -> Protocol:
    base = dict(name="t", dataset="kitti", split="s", split_hash="h", gt_source="velodyne", crop="none",
                scale="none", resolution=(2, 3))
    base.update(kw)
    return Protocol(**base)


# gt: valid 2, 4, 10 (0 and 90 are out of the 1e-3..80 range); pred at the same pixels 1, 4, 8
GT = np.array([[[2.0, 4.0, 0.0], [10.0, 90.0, 3.0]]], np.float32)
PRED = np.array([[[1.0, 4.0, 7.0], [8.0, 5.0, 3.0]]], np.float32)
MASK = np.array([[[True, True, True], [True, True, False]]])  # drops the pixel (1, 2)


def _hand_values():
    g, p = np.array([2.0, 4.0, 10.0]), np.array([1.0, 4.0, 8.0])
    d = np.log(p) - np.log(g)  # ln(1/2), 0, ln(0.8)
    return {
        "abs_rel": (1 / 2 + 0 + 2 / 10) / 3,                      # 0.2333...
        "sq_rel": (1 / 2 + 0 + 4 / 10) / 3,                       # 0.3
        "rmse": math.sqrt((1 + 0 + 4) / 3),
        "rmse_log": math.sqrt((math.log(2) ** 2 + math.log(1.25) ** 2) / 3),
        "log10": (math.log10(2) + math.log10(1.25)) / 3,
        "a1": 1 / 3,   # ratios 2, 1, 1.25: only 1 < 1.25 (strict)
        "a2": 2 / 3,   # 1.25 < 1.5625
        "a3": 2 / 3,   # 2 > 1.953125
        "silog": 100 * math.sqrt(np.mean(d ** 2) - np.mean(d) ** 2),
    }


@pytest.mark.parametrize("path", ["dense", "sparse_torch", "sparse_numpy", "flat"])
def test_golden_metrics_no_scaling(path):
    p = _protocol()
    mask = torch.from_numpy(MASK)
    if path == "dense":
        out = compute_metrics(torch.from_numpy(PRED), torch.from_numpy(GT), p, mask=mask)
    elif path == "sparse_torch":
        out = compute_metrics_sparse(1 / torch.from_numpy(PRED), torch.from_numpy(GT), p, mask=mask)
    elif path == "sparse_numpy":
        out = compute_metrics_sparse(1 / PRED, GT, p, mask=MASK)
    else:
        out = metrics_from_values(torch.tensor([1.0, 4.0, 8.0]), torch.tensor([2.0, 4.0, 10.0]),
                                  torch.tensor([3]), p)
    for k, v in _hand_values().items():
        assert float(out[k][0]) == pytest.approx(v, rel=1e-6), k
    assert int(out["valid_px"][0]) == 3 and float(out["scale"][0]) == 1.0


def test_golden_median_scaling_stereo_factor_and_clamp():
    gt = np.array([[[2.0, 4.0, 10.0]], [[1.0, 3.0, 5.0]]], np.float32)
    pred = np.array([[[1.0, 2.0, 5.0]], [[0.25, 0.75, 1.25]]], np.float32)  # gt = 2x and 4x pred
    med = compute_metrics_sparse(1 / pred, gt, _protocol(scale="median", resolution=(1, 3)))
    np.testing.assert_allclose(med["scale"].numpy(), [2.0, 4.0])
    np.testing.assert_allclose(med["abs_rel"].numpy(), [0.0, 0.0], atol=1e-7)
    acc = MetricAccumulator(_protocol(scale="median", resolution=(1, 3)))
    acc.update(med)
    summary = acc.summary()
    assert summary["scale_median"] == pytest.approx(3.0)
    assert summary["scale_std"] == pytest.approx(np.std([2 / 3, 4 / 3]))  # population std of s / median
    # stereo factor 5.4 then clamp to [1e-3, 80]: 10 * 5.4 = 54; 20 * 5.4 = 108 -> 80
    sf = compute_metrics_sparse(1 / np.array([[[10.0, 20.0]]], np.float32), np.array([[[54.0, 70.0]]], np.float32),
                                _protocol(scale="stereo_factor", resolution=(1, 2)))
    assert float(sf["abs_rel"][0]) == pytest.approx((0 + 10 / 70) / 2, rel=1e-6)
    assert float(sf["scale"][0]) == pytest.approx(5.4)


def test_golden_garg_crop_on_odd_size():
    # 10 x 21: Garg rows int(0.408*10)=4 .. int(0.9919*10)=9, cols int(0.0359*21)=0 .. int(0.964*21)=20
    gt = np.zeros((1, 10, 21), np.float32)
    gt[0, 3, 5] = 10.0   # row 3: outside the crop
    gt[0, 4, 5] = 10.0   # inside
    gt[0, 8, 20] = 10.0  # col 20: outside
    pred = np.full((1, 10, 21), 5.0, np.float32)  # abs_rel 0.5 wherever valid
    out = compute_metrics_sparse(1 / pred, gt, _protocol(crop="garg", resolution=(10, 21)))
    assert int(out["valid_px"][0]) == 1 and float(out["abs_rel"][0]) == pytest.approx(0.5)
    eigen = compute_metrics_sparse(1 / pred, gt, _protocol(crop="eigen", resolution=(10, 21)))
    assert int(eigen["valid_px"][0]) == 2  # rows 3..9


def test_positive_mask_keeps_far_gt_and_empty_images_are_skipped():
    gt = np.array([[[90.0, 0.0]], [[0.0, 0.0]]], np.float32)
    pred = np.array([[[45.0, 1.0]], [[1.0, 1.0]]], np.float32)
    out = compute_metrics_sparse(1 / pred, gt, _protocol(gt_mask="positive", resolution=(1, 2)))
    assert int(out["valid_px"][0]) == 1 and float(out["abs_rel"][0]) == pytest.approx(0.5)
    assert int(out["valid_px"][1]) == 0 and math.isnan(float(out["abs_rel"][1]))
    acc = MetricAccumulator()
    acc.update(out)
    assert acc.summary()["num_images"] == 1 and acc.summary()["skipped_images"] == 1


@pytest.mark.parametrize("src, dst", [((192, 640), (375, 1242)), ((7, 9), (267, 881)), ((100, 881), (50, 440))])
def test_sample_resized_equals_full_resize(src, dst):
    gen = torch.Generator().manual_seed(0)
    disp = torch.rand(2, 1, *src, generator=gen, dtype=torch.float64) + 0.1
    full = resize_disparity(disp, dst)
    b = torch.randint(0, 2, (500,), generator=gen)
    r = torch.randint(0, dst[0], (500,), generator=gen)
    c = torch.randint(0, dst[1], (500,), generator=gen)
    r[:4] = torch.tensor([0, dst[0] - 1, 0, dst[0] - 1])
    c[:4] = torch.tensor([0, 0, dst[1] - 1, dst[1] - 1])
    torch.testing.assert_close(sample_resized(disp, dst, b, r, c), full[b, 0, r, c], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", ["none", "median", "stereo_factor"])
@pytest.mark.parametrize("crop, gt_mask", [("garg", "range"), ("none", "positive"), ("eigen", "range")])
def test_sparse_path_equals_dense_path(scale, crop, gt_mask):
    gen = torch.Generator().manual_seed(1)
    B, H, W = 3, 375, 1242
    gt = torch.rand(B, 1, H, W, generator=gen) * 90 + 0.5
    gt = torch.where(torch.rand(B, 1, H, W, generator=gen) < 0.05, gt, torch.zeros(()))
    disp = torch.rand(B, 1, 192, 640, generator=gen) + 0.05
    p = _protocol(scale=scale, crop=crop, gt_mask=gt_mask, resolution=(192, 640))
    dense = compute_metrics(1.0 / resize_disparity(disp, (H, W)), gt, p)
    for sparse in (compute_metrics_sparse(disp, gt, p), compute_metrics_sparse(disp.numpy(), gt.numpy(), p)):
        assert torch.equal(sparse["valid_px"], dense["valid_px"])
        for k in (*METRIC_NAMES, "scale"):
            torch.testing.assert_close(sparse[k], dense[k], rtol=2e-6, atol=1e-9)


def test_score_groups_frames_by_gt_size():
    rng = np.random.default_rng(0)
    gts = [rng.uniform(1, 50, s).astype(np.float32) * (rng.random(s) < 0.2) for s in
           [(30, 81)] * 3 + [(25, 61)] * 2 + [(30, 81)]]
    preds = Predictions(path=None, key="depth", values=rng.uniform(1, 50, (6, 16, 40)).astype(np.float32))
    p = _protocol(scale="median", crop="garg", resolution=(16, 40))
    summary, per_image = score(preds, lambda i: gts[i], 6, p, chunk=2)
    acc = MetricAccumulator(p)
    for i in range(6):
        acc.update(compute_metrics(
            1.0 / resize_disparity(torch.from_numpy(1 / preds.values[i:i + 1])[:, None], gts[i].shape),
            torch.from_numpy(gts[i])[None, None], p))
    ref = acc.summary()
    for k in METRIC_NAMES:
        assert summary[k] == pytest.approx(ref[k], rel=1e-5)
    assert len(per_image["abs_rel"]) == 6


@pytest.mark.parametrize("scale, crop, gt_mask", [("median", "garg", "range"), ("none", "none", "positive"),
                                                  ("stereo_factor", "eigen", "range")])
def test_sparse_path_equals_per_pixel_reference(scale, crop, gt_mask):
    from tests.data_real.reference import metrics_per_pixel

    rng = np.random.default_rng(3)
    gt = (rng.uniform(0.5, 95, (37, 121)) * (rng.random((37, 121)) < 0.3)).astype(np.float32)
    disp = rng.uniform(0.01, 0.8, (16, 48)).astype(np.float32)
    ref = metrics_per_pixel(disp, gt, crop=crop, gt_mask=gt_mask, scale=scale)
    out = compute_metrics_sparse(disp[None], gt[None], _protocol(scale=scale, crop=crop, gt_mask=gt_mask,
                                                                  resolution=(16, 48)))
    for k in (*METRIC_NAMES, "scale"):
        assert float(out[k][0]) == pytest.approx(ref[k], rel=2e-5, abs=1e-7), k


def test_torch_sparse_path_equals_numpy_path():
    """The torch implementation (used for CUDA tensors) agrees with the NumPy one."""
    from harness.eval.sparse import _compute_metrics_sparse_torch

    gen = torch.Generator().manual_seed(5)
    gt = torch.rand(2, 1, 50, 161, generator=gen) * 90 * (torch.rand(2, 1, 50, 161, generator=gen) < 0.2)
    disp = torch.rand(2, 1, 16, 48, generator=gen) + 0.05
    mask = torch.rand(2, 1, 50, 161, generator=gen) < 0.9
    for scale in ("none", "median"):
        p = _protocol(scale=scale, crop="garg", resolution=(16, 48))
        a = _compute_metrics_sparse_torch(disp, gt, p, mask)
        b = compute_metrics_sparse(disp, gt, p, mask)
        assert torch.equal(a["valid_px"], b["valid_px"])
        for k in (*METRIC_NAMES, "scale"):
            torch.testing.assert_close(a[k], b[k], rtol=2e-6, atol=1e-9)
