"""MonoStudent: shapes, feature specs, depth range, conditioning, parameter counts."""
from __future__ import annotations

import math

import pytest
import torch

from harness.models.blocks import disp_to_depth
from harness.models.student import MonoStudent
from harness.types import DepthOutput, FeatureSpec

B, H, W = 2, 64, 128


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(B, 3, H, W, generator=torch.Generator().manual_seed(0))


def small(**kw) -> MonoStudent:
    torch.manual_seed(0)
    return MonoStudent(base_width=kw.pop("base_width", 8), **kw)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_output_shapes_per_scale(image):
    out = small()(image)
    assert isinstance(out, DepthOutput)
    assert out.disp_units == "sigmoid" and out.depth_kind == "metric"
    assert list(out.disp) == [0, 1, 2, 3] and list(out.depth) == [0, 1, 2, 3]
    for i in range(4):
        assert out.disp[i].shape == (B, 1, H // 2**i, W // 2**i)
        assert out.depth[i].shape == out.disp[i].shape


def test_feature_specs_match_features(image):
    model = small()
    specs = model.feature_specs()
    out = model(image)
    assert all(isinstance(s, FeatureSpec) for s in specs)
    names = [s.name for s in specs]
    assert names == ["enc_s2", "enc_s4", "enc_s8", "enc_s16", "enc_s32",
                     "dec_s16", "dec_s8", "dec_s4", "dec_s2", "dec_s1"]
    assert set(out.features) == set(names)
    for s in specs:
        assert s.name.endswith(f"_s{s.stride}")
        assert out.features[s.name].shape == (B, s.channels, H // s.stride, W // s.stride), s


def test_widths_follow_base_width():
    model = MonoStudent(base_width=64)
    ch = {s.name: s.channels for s in model.feature_specs()}
    assert [ch[f"enc_s{s}"] for s in (2, 4, 8, 16, 32)] == [64, 64, 128, 256, 512]
    # Monodepth2's decoder widths.
    assert [ch[f"dec_s{s}"] for s in (1, 2, 4, 8, 16)] == [16, 32, 64, 128, 256]


def test_depth_in_range_and_consistent(image):
    model = small(min_depth=0.5, max_depth=40.0)
    out = model(image)
    for i, depth in out.depth.items():
        assert torch.all(depth >= 0.5 - 1e-5) and torch.all(depth <= 40.0 + 1e-3)
        assert torch.all((out.disp[i] >= 0) & (out.disp[i] <= 1))
        torch.testing.assert_close(depth, disp_to_depth(out.disp[i], 0.5, 40.0))


def test_disp_to_depth_endpoints():
    d = disp_to_depth(torch.tensor([0.0, 1.0]), 0.1, 100.0)
    torch.testing.assert_close(d, torch.tensor([100.0, 0.1]))


def test_other_sizes_and_divisibility():
    model = small(scales=(0, 2))
    out = model(torch.rand(1, 3, 64, 96))
    assert list(out.disp) == [0, 2] and out.disp[2].shape == (1, 1, 16, 24)
    for h, w in ((48, 96), (32, 96)):
        with pytest.raises(ValueError, match="divisible by 32 and at least 64"):
            model(torch.rand(1, 3, h, w))


def test_decoder_extra_widening(image):
    model = small()
    base_out = model(image)
    model.decoder_extra_channels({4: 2, 16: 1})
    assert model.extra_channels == {4: 2, 16: 1}
    model.decoder_extra_channels({4: 2})  # same total: no-op
    assert model.extra_channels == {4: 2, 16: 1}

    with pytest.raises(ValueError, match="widened"):
        model(image)
    with pytest.raises(ValueError, match=r"stride \[16\]"):
        model(image, cond={"decoder_extra": {4: torch.ones(B, 2, H // 4, W // 4)}})

    # Different resolutions are resized with nearest to the stage resolution.
    cond = {"decoder_extra": {4: torch.rand(B, 2, H, W), 16: torch.rand(B, 1, H // 16, W // 16)}}
    out = model(image, cond=cond)
    assert out.features["dec_s4"].shape == (B, model.dec_channels[4], H // 4, W // 4)
    # New input weights start at zero: widening preserves the function.
    torch.testing.assert_close(out.disp[0], base_out.disp[0])

    # ... but the extra inputs are trained: their weights receive gradient.
    out.disp[0].mean().backward()
    conv = model.stages["4"].conv1.conv.conv
    assert conv.in_channels == model.dec_channels[4] + model.enc_channels[4] + 2
    assert conv.weight.grad[:, -2:].abs().sum() > 0
    with torch.no_grad():
        conv.weight[:, -2:].normal_()
    changed = model(image, cond=cond)
    assert not torch.allclose(changed.disp[0], base_out.disp[0])


def test_decoder_extra_errors(image):
    model = small()
    with pytest.raises(ValueError, match="not a decoder stage"):
        model.decoder_extra_channels({32: 1})
    with pytest.raises(ValueError, match="not widened"):
        model(image, cond={"decoder_extra": {8: torch.ones(B, 1, 8, 16)}})
    model.decoder_extra_channels({8: 3})
    with pytest.raises(ValueError, match="B x 3"):
        model(image, cond={"decoder_extra": {8: torch.ones(B, 2, 8, 16)}})
    with pytest.raises(ValueError, match="unknown cond"):
        model(image, cond={"mask": torch.ones(1)})
    model.decoder_extra_channels({8: 0})  # removes them again
    assert model.extra_channels == {}
    model(image)


def test_inject_changes_output_and_gradients_flow(image):
    model = small()
    plain = model(image)
    inj = torch.randn(B, model.dec_channels[8], H // 8, W // 8, requires_grad=True)
    out = model(image, cond={"inject": {8: inj}})
    # The exposed feature is the post-injection map.
    torch.testing.assert_close(out.features["dec_s8"], plain.features["dec_s8"] + inj)
    assert not torch.allclose(out.disp[3], plain.disp[3])  # disp head at stride 8
    assert not torch.allclose(out.disp[0], plain.disp[0])  # later stages
    torch.testing.assert_close(out.features["dec_s16"], plain.features["dec_s16"])
    out.depth[0].mean().backward()
    assert inj.grad is not None and inj.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.encoder.parameters())
    with pytest.raises(ValueError, match="channels of dec_s8"):
        model(image, cond={"inject": {8: torch.ones(B, 1, H // 8, W // 8)}})


def test_inject_resizes(image):
    model = small()
    inj = torch.randn(B, model.dec_channels[16], 2, 4)
    out = model(image, cond={"inject": {16: inj}})
    assert out.features["dec_s16"].shape[-2:] == (H // 16, W // 16)


def test_predict_is_eval_and_restores_mode(image):
    model = small()
    model.train()
    depth = model.predict(image)
    assert model.training
    assert depth.shape == (B, 1, H, W) and not depth.requires_grad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(depth, model(image).depth[0])


def test_parameter_counts():
    model = MonoStudent(num_layers=18, base_width=64)
    enc = n_params(model.encoder)
    # torchvision ResNet-18 without fc: 11,176,512; Monodepth2 decoder ~3.15M.
    assert 10.5e6 < enc < 11.8e6
    assert 2.9e6 < n_params(model) - enc < 3.4e6
    assert 20.5e6 < n_params(MonoStudent(num_layers=34).encoder) < 22e6
    assert n_params(MonoStudent(base_width=16)) < 1.2e6


def test_rejects_unknown_depth():
    with pytest.raises(ValueError, match="num_layers"):
        MonoStudent(num_layers=50)


def test_init_disp_sets_the_starting_sigmoid_only(image):
    torch.manual_seed(0)
    default = MonoStudent(base_width=8)
    torch.manual_seed(0)
    low = MonoStudent(base_width=8, init_disp=0.03)
    # everything but the heads' biases is the default initialisation
    d, lo = default.state_dict(), low.state_dict()
    assert [k for k in d if not torch.equal(d[k], lo[k])] == [f"disp_heads.{i}.conv.bias" for i in low.scales]
    out, ref = low.eval()(image).disp, default.eval()(image).disp
    for i in low.scales:
        assert 0.01 < out[i].median().item() < 0.1 < 0.3 < ref[i].median().item()
        assert low.disp_heads[str(i)].conv.bias.item() == pytest.approx(math.log(0.03 / 0.97))
    with pytest.raises(ValueError, match="init_disp"):
        MonoStudent(base_width=8, init_disp=1.0)
