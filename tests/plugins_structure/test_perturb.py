"""Perturbation operators (DSC) and patch masking (LTD): shapes, ranges, seeding, semantics."""
import numpy as np
import pytest
import torch

from stereodistill_plugins.structure import perturb as P


def _img(b=3, h=32, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    # a smooth image with some texture, values well inside (0, 1)
    base = torch.rand(b, 3, 4, 8, generator=g)
    img = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return (0.15 + 0.7 * img + 0.05 * torch.rand(b, 3, h, w, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("name", sorted(P.OPERATORS))
def test_operator_range_shape_seeding(name):
    x = _img()
    sev = torch.tensor([0.2, 0.6, 1.0])
    op = P.OPERATORS[name]
    y1 = op(x, sev, torch.Generator().manual_seed(7))
    y2 = op(x, sev, torch.Generator().manual_seed(7))
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert float(y1.min()) >= 0.0 and float(y1.max()) <= 1.0
    assert torch.equal(y1, y2), "same seed, same output"
    assert float((y1 - x).abs().mean()) > 0.005, "the operator changes the image"
    # a stronger severity (same random draws) changes the image more
    if name in ("night", "fog", "motion_blur", "defocus_blur", "jpeg", "sensor_noise", "contrast_colour"):
        x = _img(h=48, w=320)
        lo = op(x, torch.full((3,), 0.2), torch.Generator().manual_seed(7))
        hi = op(x, torch.full((3,), 1.0), torch.Generator().manual_seed(7))
        assert ((hi - x).abs().mean(dim=(1, 2, 3)) > (lo - x).abs().mean(dim=(1, 2, 3))).all()


def test_random_operators_depend_on_seed():
    x = _img()
    sev = torch.full((3,), 0.8)
    for name in ("night", "fog", "rain", "sensor_noise", "illumination", "contrast_colour"):
        a = P.OPERATORS[name](x, sev, torch.Generator().manual_seed(1))
        b = P.OPERATORS[name](x, sev, torch.Generator().manual_seed(2))
        assert not torch.equal(a, b), name


def test_blur_kernels_are_normalised_and_shaped():
    k = P.line_kernels(torch.tensor([5.0, 1.0]), torch.tensor([0.0, 1.0]), 7)
    assert k.shape == (2, 1, 7, 7)
    assert k.sum(dim=(1, 2, 3)).tolist() == pytest.approx([1.0, 1.0])
    # a horizontal line of length 5 lies on the centre row
    assert torch.allclose(k[0, 0, 3, 1:6], torch.full((5,), 0.2), atol=1e-6) and k[0, 0, 2].abs().sum() < 1e-6
    d = P.disk_kernels(torch.tensor([2.0]), 7)
    assert d.sum().item() == pytest.approx(1.0) and d[0, 0, 3, 3] > 0 and d[0, 0, 0, 0] == 0


def test_jpeg_matches_opencv_roundtrip():
    import cv2

    x = _img(b=1)
    y = P.jpeg(x, torch.tensor([1.0]), torch.Generator())
    arr = (x[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", arr[..., ::-1].copy(), [int(cv2.IMWRITE_JPEG_QUALITY), 5])
    ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal((y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), ref)


def test_perturb_chooses_one_operator_per_sample_and_is_seeded():
    x = _img(b=16)
    y1, c1 = P.perturb(x, torch.Generator().manual_seed(0))
    y2, c2 = P.perturb(x, torch.Generator().manual_seed(0))
    assert torch.equal(y1, y2) and torch.equal(c1, c2)
    assert c1.min() >= 0 and c1.max() < len(P.DSC_OPS) and len(set(c1.tolist())) > 3
    y0, c0 = P.perturb(x, torch.Generator().manual_seed(0), prob=0.0)
    assert torch.equal(y0, x) and (c0 == -1).all()
    only, c = P.perturb(x, torch.Generator().manual_seed(0), ops=("fog",))
    assert (c == 0).all()
    with pytest.raises(ValueError, match="unknown perturbation"):
        P.perturb(x, torch.Generator(), ops=("snowstorm",))


def test_patch_size_scales_with_input_height():
    assert P.patch_size_for(192) == 16 and P.patch_size_for(96) == 8 and P.patch_size_for(64) == 5
    assert P.patch_size_for(8) == 1


def test_patch_mask_mean_fill_exact_ratio_and_untouched_rest():
    x = _img(b=4, h=32, w=64)
    y, mask = P.patch_mask(x, torch.Generator().manual_seed(3), patch=8, ratio=(0.15, 0.45), fill="mean")
    n_cells = 4 * 8
    frac = mask.mean(dim=(1, 2, 3))
    counts = frac * n_cells
    assert torch.allclose(counts, counts.round()) and (frac >= 0.15 - 1 / n_cells).all() and (frac <= 0.45 + 1 / n_cells).all()
    m = mask.bool().expand_as(x)
    assert torch.equal(y[~m], x[~m])
    mean = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    assert torch.allclose(y[m], mean[m])
    # cells are whole 8x8 blocks
    blocks = mask[:, 0].reshape(4, 4, 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(4, 4, 8, 64)
    assert ((blocks == 0) | (blocks == 1)).all() and (blocks.amax(-1) == blocks.amin(-1)).all()


def test_patch_mask_shuffle_permutes_the_chosen_cells():
    x = _img(b=2, h=32, w=64)
    y, mask = P.patch_mask(x, torch.Generator().manual_seed(5), patch=8, ratio=(0.4, 0.4), fill="shuffle")
    m = mask.bool().expand_as(x)
    assert torch.equal(y[~m], x[~m])

    def cells(t):
        return t.reshape(2, 3, 4, 8, 8, 8).permute(0, 2, 4, 1, 3, 5).reshape(2, 32, -1)

    sel = cells(mask.expand_as(x))[:, :, 0].bool()
    for b in range(2):
        before = sorted(map(tuple, cells(x)[b][sel[b]].tolist()))
        after = sorted(map(tuple, cells(y)[b][sel[b]].tolist()))
        assert before == after  # same cells, new places
    assert not torch.equal(y, x)


def test_patch_mask_handles_partial_cells_and_mix():
    x = _img(b=4, h=30, w=50)
    y, mask = P.patch_mask(x, torch.Generator().manual_seed(0), patch=8, fill="mix")
    assert y.shape == x.shape and mask.shape == (4, 1, 30, 50)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_held_out_corruptions_of_the_robustness_evaluation():
    """``harness run --eval-robustness`` scores the method on corruptions it never trains on
    (pixelate, impulse noise), seeded: the same seed gives the same corrupted image."""
    from harness.data import corruptions as C

    held_out = ("pixelate", "impulse_noise")
    assert set(held_out) <= set(C.CORRUPTIONS) and not set(held_out) & set(P.OPERATORS)
    img = (_img(b=1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    for name in held_out:
        a, b = C.corrupt(img, name, 3, seed=0), C.corrupt(img, name, 3, seed=0)
        assert a.shape == img.shape and np.array_equal(a, b) and not np.array_equal(a, img)
