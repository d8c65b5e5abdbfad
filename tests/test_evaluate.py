"""Tests for harness.eval.protocol/metrics/loop: golden values against hand computations and an independent,
slow per-image numpy reference (Monodepth2-style), crops, scaling, clamping, flip PP, ids."""
from __future__ import annotations

import hashlib
import json
import math

import cv2
import numpy as np
import pytest
import torch

from harness.eval.loop import evaluate_split
from harness.eval.metrics import (
    FORMULAS,
    LOWER_IS_BETTER,
    METRIC_DESCRIPTIONS,
    METRIC_NAMES,
    MetricAccumulator,
    compute_metrics,
)
from harness.eval.protocol import Protocol, crop_mask, flip_post_process, resize_prediction


def make_protocol(**kw) -> Protocol:
    base = dict(
        name="kitti_eigen_mono",
        dataset="kitti",
        split="eigen",
        split_hash="0" * 64,
        gt_source="velodyne",
        crop="garg",
        scale="median",
        resolution=(192, 640),
    )
    base.update(kw)
    return Protocol(**base)


# ------------------------------------------------------------------------------------------
# Independent numpy reference (per-image loop, float64, np.median)
# ------------------------------------------------------------------------------------------
REF_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def ref_metrics(pred: np.ndarray, gt: np.ndarray, protocol: Protocol) -> list[dict | None]:
    out = []
    for p_img, g_img in zip(pred[:, 0].astype(np.float64), gt[:, 0].astype(np.float64)):
        h, w = g_img.shape
        if protocol.gt_mask == "range":
            mask = (g_img > protocol.min_depth) & (g_img < protocol.max_depth)
        else:
            mask = g_img > 0
        if protocol.crop != "none":
            a, b, c, d = REF_CROPS[protocol.crop]
            crop = np.zeros_like(mask)
            crop[int(a * h) : int(b * h), int(c * w) : int(d * w)] = True
            mask &= crop
        if not mask.any():
            out.append(None)
            continue
        p, g = p_img[mask], g_img[mask]
        if protocol.scale == "median":
            s = np.median(g) / np.median(p)
        elif protocol.scale == "stereo_factor":
            s = protocol.stereo_factor
        else:
            s = 1.0
        p = np.clip(p * s, protocol.min_depth, protocol.max_depth)
        thresh = np.maximum(g / p, p / g)
        dlog = np.log(p) - np.log(g)
        out.append(
            dict(
                abs_rel=np.mean(np.abs(g - p) / g),
                sq_rel=np.mean((g - p) ** 2 / g),
                rmse=np.sqrt(np.mean((g - p) ** 2)),
                rmse_log=np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
                log10=np.mean(np.abs(np.log10(g) - np.log10(p))),
                a1=np.mean(thresh < 1.25),
                a2=np.mean(thresh < 1.25**2),
                a3=np.mean(thresh < 1.25**3),
                silog=100 * np.sqrt(np.mean(dlog**2) - np.mean(dlog) ** 2),
                scale=s,
                valid_px=int(mask.sum()),
            )
        )
    return out


def random_batch(b=3, h=40, w=120, density=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, 1, h, w, generator=gen) * 90.0  # some above the 80 m cap
    gt = torch.where(torch.rand(b, 1, h, w, generator=gen) < density, gt, torch.zeros(()))
    pred = torch.rand(b, 1, h, w, generator=gen) * 30.0 + 0.5
    return pred, gt


# ------------------------------------------------------------------------------------------
# Golden values
# ------------------------------------------------------------------------------------------
def test_hand_computed_golden_values():
    gt = torch.tensor([[[[2.0, 4.0], [0.0, 8.0]]]])
    pred = torch.tensor([[[[1.0, 4.0], [5.0, 10.0]]]])
    proto = make_protocol(crop="none", scale="none")
    m = compute_metrics(pred, gt, proto)
    ln2, ln125 = math.log(2.0), math.log(1.25)
    d = [-ln2, 0.0, ln125]
    mean_d = sum(d) / 3
    expected = {
        "abs_rel": (0.5 + 0.0 + 0.25) / 3,
        "sq_rel": (0.5 + 0.0 + 0.5) / 3,
        "rmse": math.sqrt(5.0 / 3.0),
        "rmse_log": math.sqrt((ln2**2 + ln125**2) / 3),
        "log10": (math.log10(2.0) + math.log10(1.25)) / 3,
        "a1": 1 / 3,  # ratio exactly 1.25 is NOT < 1.25 (strict)
        "a2": 2 / 3,
        "a3": 2 / 3,  # ratio 2 > 1.25^3
        "silog": 100 * math.sqrt(sum(x * x for x in d) / 3 - mean_d**2),
        "scale": 1.0,
    }
    for key, value in expected.items():
        assert m[key].shape == (1,)
        assert m[key].item() == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert m["valid_px"].item() == 3


@pytest.mark.parametrize(
    "kw",
    [
        dict(crop="garg", scale="median"),
        dict(crop="eigen", scale="stereo_factor"),
        dict(crop="none", scale="none", gt_mask="positive"),
        dict(crop="garg", scale="median", gt_mask="positive", min_depth=0.1, max_depth=50.0),
    ],
)
def test_matches_numpy_reference(kw):
    proto = make_protocol(**kw)
    pred, gt = random_batch(b=4, h=47, w=131, seed=hash(tuple(sorted(kw.items()))) % 1000)
    m = compute_metrics(pred, gt, proto)
    ref = ref_metrics(pred.numpy(), gt.numpy(), proto)
    for i, r in enumerate(ref):
        assert r is not None
        for key in METRIC_NAMES + ("scale",):
            assert m[key][i].item() == pytest.approx(r[key], rel=2e-5, abs=1e-6), (key, i)
        assert m["valid_px"][i].item() == r["valid_px"]


def test_metric_names_and_direction():
    assert METRIC_NAMES == ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3", "silog")
    assert LOWER_IS_BETTER == {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"}
    assert set(METRIC_DESCRIPTIONS) == set(METRIC_NAMES)


# ------------------------------------------------------------------------------------------
# Crops
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "h,w,rows,cols",
    [(375, 1242, (153, 371), (44, 1197)), (376, 1241, (153, 372), (44, 1196)), (370, 1226, (151, 366), (44, 1181))],
)
def test_garg_crop_kitti_sizes(h, w, rows, cols):
    m = crop_mask(h, w, "garg")
    assert m.shape == (h, w) and m.dtype == torch.bool
    r = torch.nonzero(m.any(dim=1)).flatten()
    c = torch.nonzero(m.any(dim=0)).flatten()
    assert (r.min().item(), r.max().item() + 1) == rows
    assert (c.min().item(), c.max().item() + 1) == cols
    assert m.sum().item() == (rows[1] - rows[0]) * (cols[1] - cols[0])


def test_eigen_crop_and_none():
    m = crop_mask(375, 1242, "eigen")
    expected = torch.zeros(375, 1242, dtype=torch.bool)
    expected[124:342, 44:1197] = True
    assert torch.equal(m, expected)
    assert crop_mask(4, 5, "none").all()
    with pytest.raises(ValueError):
        crop_mask(4, 5, "kb")


def test_crop_applied_in_metrics():
    # An error outside the Garg crop must not count; one inside must.
    h, w = 375, 1242
    gt = torch.full((1, 1, h, w), 10.0)
    pred = gt.clone()
    pred[..., 10, 10] = 20.0  # outside the crop (row 10 < 153)
    proto = make_protocol(crop="garg", scale="none")
    m = compute_metrics(pred, gt, proto)
    assert m["abs_rel"].item() == 0.0
    assert m["valid_px"].item() == (371 - 153) * (1197 - 44)
    pred[..., 200, 600] = 20.0
    m = compute_metrics(pred, gt, proto)
    assert m["abs_rel"].item() == pytest.approx(1.0 / ((371 - 153) * (1197 - 44)))


# ------------------------------------------------------------------------------------------
# Scaling and clamping
# ------------------------------------------------------------------------------------------
def test_median_scaling_ratio_even_count_like_numpy():
    gt = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    pred = torch.ones_like(gt)
    m = compute_metrics(pred, gt, make_protocol(crop="none", scale="median"))
    assert m["scale"].item() == pytest.approx(2.5)  # np.median averages the middle pair


def test_median_scaling_recovers_scale():
    pred, gt = random_batch(b=2, seed=3)
    gt = torch.where(gt > 0, gt.clamp(1.0, 79.0), gt)
    factors = torch.tensor([3.0, 0.25]).view(2, 1, 1, 1)
    m = compute_metrics(gt / factors, gt, make_protocol(crop="none", scale="median"))
    assert torch.allclose(m["scale"], torch.tensor([3.0, 0.25], dtype=torch.float64), rtol=1e-6)
    assert torch.all(m["abs_rel"] < 1e-6)
    assert torch.all(m["a1"] == 1.0)


def test_stereo_factor():
    gt = torch.tensor([[[[5.4, 10.8, 27.0]]]])
    m = compute_metrics(gt / 5.4, gt, make_protocol(crop="none", scale="stereo_factor"))
    assert m["scale"].item() == pytest.approx(5.4)
    assert m["abs_rel"].item() < 1e-6
    m2 = compute_metrics(gt / 2.0, gt, make_protocol(crop="none", scale="stereo_factor", stereo_factor=2.0))
    assert m2["abs_rel"].item() < 1e-6


def test_clamp_after_scaling():
    gt = torch.tensor([[[[70.0, 70.0]]]])
    pred = torch.tensor([[[[20.0, 1e-5]]]])
    m = compute_metrics(pred, gt, make_protocol(crop="none", scale="stereo_factor"))
    # 20 * 5.4 = 108 -> clamped to 80; 1e-5 * 5.4 = 5.4e-5 -> clamped to 1e-3.
    expected = (10.0 / 70.0 + (70.0 - 1e-3) / 70.0) / 2
    assert m["abs_rel"].item() == pytest.approx(expected, rel=1e-6)
    # Clamping before scaling would give (70-80)->(108) for the first pixel: check it did not.
    m1 = compute_metrics(pred[..., :1], gt[..., :1], make_protocol(crop="none", scale="stereo_factor"))
    assert m1["abs_rel"].item() == pytest.approx(10.0 / 70.0, rel=1e-6)


def test_gt_mask_range_vs_positive():
    gt = torch.tensor([[[[90.0, 10.0, 0.0005]]]])
    pred = torch.tensor([[[[10.0, 10.0, 10.0]]]])
    m_range = compute_metrics(pred, gt, make_protocol(crop="none", scale="none"))
    m_pos = compute_metrics(pred, gt, make_protocol(crop="none", scale="none", gt_mask="positive"))
    assert m_range["valid_px"].item() == 1
    assert m_pos["valid_px"].item() == 3


def test_extra_mask_is_anded():
    pred, gt = random_batch(b=2, seed=5)
    extra = torch.rand(2, 1, *gt.shape[-2:], generator=torch.Generator().manual_seed(1)) < 0.5
    proto = make_protocol(crop="none", scale="median")
    m = compute_metrics(pred, gt, proto, mask=extra)
    m_ref = compute_metrics(pred, torch.where(extra, gt, torch.zeros(())), proto)
    for key in METRIC_NAMES + ("scale", "valid_px"):
        assert torch.allclose(m[key], m_ref[key]), key


# ------------------------------------------------------------------------------------------
# Empty images and accumulation
# ------------------------------------------------------------------------------------------
def test_empty_image_is_skipped_not_nan():
    pred, gt = random_batch(b=2, seed=7)
    gt[1] = 0.0
    proto = make_protocol(crop="none", scale="median")
    m = compute_metrics(pred, gt, proto)
    assert m["valid_px"][1].item() == 0
    acc = MetricAccumulator(proto)
    acc.update(m)
    s = acc.summary()
    assert s["num_images"] == 1 and s["skipped_images"] == 1
    for key in METRIC_NAMES:
        assert math.isfinite(s[key])
        assert s[key] == pytest.approx(m[key][0].item())
    assert s["scale_median"] == pytest.approx(m["scale"][0].item())


def test_accumulator_mean_over_images_and_scale_stats():
    acc = MetricAccumulator(make_protocol(scale="median"))
    acc.update({"abs_rel": torch.tensor([0.1, 0.2]), "scale": torch.tensor([1.0, 2.0]), "valid_px": torch.tensor([5, 100])})
    acc.update({"abs_rel": torch.tensor([0.6]), "scale": torch.tensor([3.0]), "valid_px": torch.tensor([1])})
    s = acc.summary()
    assert s["abs_rel"] == pytest.approx(0.3)  # mean over images, not pixels
    assert s["num_images"] == 3 and s["skipped_images"] == 0
    assert s["scale_median"] == pytest.approx(2.0)
    assert s["scale_std"] == pytest.approx(math.sqrt(1.0 / 6.0))  # std([0.5, 1, 1.5]), ddof=0
    # no scale statistics for a non-median protocol
    acc2 = MetricAccumulator(make_protocol(scale="stereo_factor"))
    acc2.update({"abs_rel": torch.tensor([0.1]), "scale": torch.tensor([5.4]), "valid_px": torch.tensor([3])})
    assert "scale_median" not in acc2.summary()


def test_accumulator_matches_reference_over_batches():
    proto = make_protocol(crop="garg", scale="median")
    acc = MetricAccumulator(proto)
    refs = []
    for seed in range(3):
        pred, gt = random_batch(b=2, h=50, w=150, seed=seed + 10)
        acc.update(compute_metrics(pred, gt, proto))
        refs += ref_metrics(pred.numpy(), gt.numpy(), proto)
    s = acc.summary()
    for key in METRIC_NAMES:
        assert s[key] == pytest.approx(np.mean([r[key] for r in refs]), rel=2e-5)
    ratios = np.array([r["scale"] for r in refs])
    assert s["scale_median"] == pytest.approx(np.median(ratios), rel=1e-6)
    assert s["scale_std"] == pytest.approx(np.std(ratios / np.median(ratios)), rel=1e-5)


# ------------------------------------------------------------------------------------------
# Flip post-processing
# ------------------------------------------------------------------------------------------
def test_flip_post_process_weights():
    w = 100
    d = torch.full((1, 1, 3, w), 1.0)
    d_flipped_input = torch.full((1, 1, 3, w), 3.0)
    out = flip_post_process(d, d_flipped_input)[0, 0, 0]
    x = np.linspace(0, 1, w)
    left, right, middle = x <= 0.05, x >= 0.95, (x >= 0.10) & (x <= 0.90)
    assert torch.allclose(out[torch.from_numpy(left)], torch.tensor(3.0))  # from the mirrored pass
    assert torch.allclose(out[torch.from_numpy(right)], torch.tensor(1.0))  # from the normal pass
    assert torch.allclose(out[torch.from_numpy(middle)], torch.tensor(2.0))  # mean
    # linear ramp between 5% and 10%: weights w(x) = 1 - 20 (x - 0.05)
    i = 7
    wx = 1 - 20 * (x[i] - 0.05)
    assert out[i].item() == pytest.approx(wx * 3.0 + (1 - wx) * 2.0, rel=1e-6)


def test_flip_post_process_unmirrors_and_matches_reference():
    gen = torch.Generator().manual_seed(0)
    d = torch.rand(2, 1, 4, 37, generator=gen)
    df_in = torch.rand(2, 1, 4, 37, generator=gen)
    out = flip_post_process(d, df_in).numpy()
    # Independent reference (Monodepth2 batch_post_process_disparity formula).
    l_disp, r_disp = d.numpy(), df_in.numpy()[..., ::-1]
    xx = np.linspace(0, 1, 37)
    l_mask = 1.0 - np.clip(20 * (xx - 0.05), 0, 1)
    r_mask = l_mask[::-1]
    ref = r_mask * l_disp + l_mask * r_disp + (1.0 - l_mask - r_mask) * 0.5 * (l_disp + r_disp)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    # A flip-consistent network (prediction of mirror = mirror of prediction) is unchanged.
    assert torch.allclose(flip_post_process(d, torch.flip(d, dims=[-1])), d, atol=1e-7)


# ------------------------------------------------------------------------------------------
# Resizing
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [((24, 80), (375, 1242)), ((50, 90), (31, 47)), ((192, 640), (376, 1241))])
def test_resize_prediction_matches_cv2(src, dst):
    gen = torch.Generator().manual_seed(1)
    depth = torch.rand(2, 1, *src, generator=gen) * 50 + 1.0
    out = resize_prediction(depth, dst)
    assert out.shape == (2, 1, *dst)
    for i in range(2):
        disp_cv = cv2.resize((1.0 / depth[i, 0]).numpy(), (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose((1.0 / out[i, 0]).numpy(), disp_cv, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------
# Protocol record
# ------------------------------------------------------------------------------------------
def test_protocol_id_stable_and_name_independent():
    p = make_protocol()
    # Pinned: changing this value invalidates every stored result; do it only on purpose.
    assert p.protocol_id() == "83d1f1091a35"
    # Independent computation: sha256 of the canonical JSON of every field except the name.
    fields = {k: v for k, v in p.to_dict().items() if k != "name"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    assert p.protocol_id() == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert len(p.protocol_id()) == 12
    assert make_protocol(name="renamed").protocol_id() == p.protocol_id()
    assert make_protocol(max_depth=80).protocol_id() == p.protocol_id()  # 80 == 80.0
    changed = [
        make_protocol(crop="eigen"),
        make_protocol(scale="none"),
        make_protocol(flip_pp=True),
        make_protocol(resolution=(320, 1024)),
        make_protocol(split_hash="1" * 64),
        make_protocol(stereo_factor=5.0),
        make_protocol(gt_mask="positive"),
    ]
    ids = {q.protocol_id() for q in changed}
    assert p.protocol_id() not in ids and len(ids) == len(changed)


def test_protocol_roundtrip_and_validation():
    p = make_protocol(flip_pp=True)
    d = json.loads(json.dumps(p.to_dict()))
    q = Protocol.from_dict(d)
    assert q == p and q.resolution == (192, 640)
    bad = [
        dict(crop="kb"),
        dict(scale="mean"),
        dict(gt_mask="all"),
        dict(min_depth=80.0, max_depth=1.0),
        dict(min_depth=0.0),
        dict(resolution=(192,)),
        dict(resolution=(0, 640)),
        dict(flip_pp="yes"),
        dict(name=""),
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            make_protocol(**kw)
    with pytest.raises(ValueError):
        Protocol.from_dict({**p.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        Protocol.from_dict({"name": "x"})


# ------------------------------------------------------------------------------------------
# The split-evaluation loop
# ------------------------------------------------------------------------------------------
def test_one_formula_per_metric_name():
    assert tuple(FORMULAS) == METRIC_NAMES


class _Frames:
    """A dataset of the split-evaluation loop: images at network size, native GT from eval_gt."""

    def __init__(self, images, gts):
        self.images, self.gts = images, gts

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "meta": {"folder": "drive", "frame": i}}

    def eval_gt(self, i):
        return self.gts[i]


def test_evaluate_split_pipeline_and_flip():
    gen = torch.Generator().manual_seed(2)
    h, w, H, W = 12, 40, 30, 100
    proto = make_protocol(crop="none", scale="median", resolution=(h, w))
    images = [torch.rand(2, 3, h, w, generator=gen) for _ in range(2)]
    gts = [torch.rand(2, 1, H, W, generator=gen) * 70 + 1 for _ in range(2)]
    frames = _Frames([im for batch in images for im in batch], [g[0].numpy() for batch in gts for g in batch])

    def predict(img):  # depends on the image content, so flipping matters
        return 1.0 + 10.0 * img.mean(dim=1, keepdim=True) + torch.linspace(0, 1, img.shape[-1])

    summary = evaluate_split(predict, frames, proto, batch_size=2).summary
    acc = MetricAccumulator(proto)
    for img, gt in zip(images, gts):
        acc.update(compute_metrics(resize_prediction(predict(img), (H, W)), gt, proto))
    assert summary == pytest.approx(acc.summary(), rel=1e-5)

    proto_pp = make_protocol(crop="none", scale="median", resolution=(h, w), flip_pp=True)
    summary_pp = evaluate_split(predict, frames, proto_pp, batch_size=2).summary
    acc = MetricAccumulator(proto)
    for img, gt in zip(images, gts):
        disp = flip_post_process(1.0 / predict(img), 1.0 / predict(torch.flip(img, dims=[-1])))
        acc.update(compute_metrics(resize_prediction(1.0 / disp, (H, W)), gt, proto))
    assert summary_pp == pytest.approx(acc.summary(), rel=1e-5)
    assert summary_pp["abs_rel"] != pytest.approx(summary["abs_rel"])

    with pytest.raises(ValueError, match="resolution"):
        evaluate_split(predict, _Frames([torch.rand(3, 8, 8)], [gts[0][0, 0].numpy()]), proto)


def test_evaluate_split_per_frame_metrics_and_ids():
    """The scored frames in dataset order, their ids from the sample's meta (else their index),
    aligned with their metrics; a frame without valid GT is skipped; a batch mixing GT sizes is
    scored frame by frame."""
    proto = make_protocol(crop="none", scale="none", resolution=(4, 8))
    gts = [np.full((6, 10), 5.0, np.float32), np.zeros((6, 10), np.float32), np.full((3, 5), 10.0, np.float32)]
    frames = _Frames([torch.rand(3, 4, 8) for _ in gts], gts)
    result = evaluate_split(lambda x: torch.full((x.shape[0], 1, 4, 8), 4.0), frames, proto, batch_size=2)
    assert result.frames == ["drive/0000000000", "drive/0000000002"]
    assert result.per_image["abs_rel"] == [pytest.approx(0.2), pytest.approx(0.6)]
    assert set(METRIC_NAMES) <= set(result.per_image) and len(result.per_image["scale"]) == 2
    assert result.summary["num_images"] == 2 and result.summary["skipped_images"] == 1
    assert result.summary["abs_rel"] == pytest.approx(0.4)

    class NoMeta(_Frames):
        def __getitem__(self, i):
            return {"image": self.images[i]}

    no_meta = evaluate_split(lambda x: torch.ones(x.shape[0], 1, 4, 8), NoMeta(frames.images, gts), proto)
    assert no_meta.frames == ["?/0000000000", "?/0000000002"]
