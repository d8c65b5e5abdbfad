"""RSD Mono-Net (student ``rsd_mono``) and recursive Stereo-Net (teacher ``rsd_stereo``)."""
from __future__ import annotations

import pytest
import torch

import stereodistill_plugins.recursive as recursive
from harness.host.manager import PluginHost
from stereodistill_plugins.recursive.models import RSDMonoNet, RSDStereoNet

H, W = 64, 96


def pair(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, H, W, generator=g), torch.rand(b, 3, H, W, generator=g)


def test_registered_as_student_and_teacher():
    cat = PluginHost(extra_plugins=[recursive]).catalog
    assert cat.get("students", "rsd_mono").obj is RSDMonoNet
    assert cat.get("teachers", "rsd_stereo").obj is RSDStereoNet
    assert cat.get("methods", "recursive").extra["config"].endswith("recursive_rsd_synth.py")
    t = cat.build("teachers", "rsd_stereo", base_width=8)
    assert t.mode == "online" and t.trainable and t.input_keys == {"image", "image_right"}


def test_mono_output_record_matches_feature_specs():
    torch.manual_seed(0)
    net = RSDMonoNet(base_width=8)
    out = net(pair()[0])
    assert out.disp_units == "normalised" and out.depth_kind == "relative"
    assert sorted(out.disp) == [0, 1, 2, 3] and all(d.shape[1] == 2 for d in out.disp.values())
    specs = {s.name: s for s in net.feature_specs()}
    assert set(specs) == set(out.features)
    for name, f in out.features.items():
        assert f.shape[1] == specs[name].channels and f.shape[-1] == W // specs[name].stride, name
    assert {"affinity_s16", "affinity_s8"} <= set(out.aux)
    with pytest.raises(ValueError, match="no conditioning"):
        net(pair()[0], cond={"inject": {}})


def test_calibration_running_mean_golden_and_metric_depth():
    net = RSDMonoNet(base_width=8)
    K1 = torch.tensor([[[100.0, 0, 0], [0, 100, 0], [0, 0, 1]]])
    net.observe_calibration(K1, torch.tensor([0.5]), 200)  # 100 * 0.5 / 200 = 0.25
    assert net.focal_baseline.item() == pytest.approx(0.25)
    K2 = K1.repeat(2, 1, 1) * torch.tensor([2.0, 2.0, 1.0]).view(1, 3, 1)
    net.observe_calibration(K2, torch.tensor([0.5, 0.5]), 200)  # two samples of 0.5
    assert net.focal_baseline.item() == pytest.approx((0.25 + 2 * 0.5) / 3)
    assert net.calibration_count.item() == 3
    out = net(pair()[0])
    assert out.depth_kind == "metric"
    fb = net.focal_baseline.item()
    assert torch.allclose(out.depth[0], fb / out.disp[0][:, :1], rtol=1e-5)
    assert torch.allclose(net.predict(pair()[0]), fb / net(pair()[0]).disp[0][:, :1], rtol=1e-5)
    # the buffer travels with the weights
    other = RSDMonoNet(base_width=8)
    other.load_state_dict(net.state_dict())
    assert other.focal_baseline.item() == pytest.approx(fb)
    assert RSDMonoNet(base_width=8, focal_baseline=0.4).calibrated


def test_stereo_recursion_accumulates_increments_with_shared_weights():
    torch.manual_seed(0)
    left, right = pair()
    mono = RSDMonoNet(base_width=8)
    s_out = mono(left)
    t1 = RSDStereoNet(base_width=8, iterations=1, refine_mode="release")
    t3 = RSDStereoNet(base_width=8, iterations=3, refine_mode="release")
    assert sum(p.numel() for p in t1.parameters()) == sum(p.numel() for p in t3.parameters())
    t3.load_state_dict(t1.state_dict())
    out3 = t3({"image": left, "image_right": right}, s_out)
    iters = RSDStereoNet.iteration_disps(out3)
    assert len(iters) == 3
    for j in range(1, 3):  # sigmoid head: non-negative increments, the estimate only grows
        for i in range(4):
            assert (iters[j][i] >= iters[j - 1][i]).all()
    assert all(torch.equal(out3.disp[i], iters[-1][i]) for i in range(4))
    # iteration 0 of the 3-pass net is the 1-pass net (same weights, same input)
    out1 = t1({"image": left, "image_right": right}, s_out)
    assert torch.allclose(out1.disp[0], iters[0][0])
    # the second pass sees the first estimate: re-running with it as input reproduces the increment
    fake = type(s_out)(disp={0: iters[0][0]})
    delta1 = t1({"image": left, "image_right": right}, fake).disp[0]
    assert torch.allclose(iters[1][0], iters[0][0] + delta1, atol=1e-6)
    assert {"affinity_s16", "affinity_s8"} <= set(out3.aux)
    assert set(out3.features) == {s.name for s in t3.feature_specs()}


def test_stereo_tanh_head_signed_and_clamped():
    torch.manual_seed(1)
    left, right = pair()
    t = RSDStereoNet(base_width=8, iterations=2, residual_head="tanh", refine_mode="release")
    with torch.no_grad():  # push the head negative: increments < 0 for j >= 1
        t.net.heads["0"].bias.fill_(-3.0)
        t.refiner.out.bias.fill_(-3.0)
    out = t({"image": left, "image_right": right}, RSDMonoNet(base_width=8)(left))
    it = RSDStereoNet.iteration_disps(out)
    assert (it[1][0] >= 0).all() and (it[1][0] <= it[0][0]).all()
    with pytest.raises(ValueError):
        RSDStereoNet(base_width=8, residual_head="relu")


@pytest.mark.parametrize("detach", [False, True])
def test_stereo_losses_reach_the_mono_net_through_its_input_unless_detached(detach):
    torch.manual_seed(0)
    left, right = pair()
    mono, stereo = RSDMonoNet(base_width=8), RSDStereoNet(base_width=8, detach_init=detach)
    out = stereo({"image": left, "image_right": right}, mono(left))
    terms = stereo.self_loss({"image": left, "image_right": right}, out)
    assert set(terms) == {"ap", "lr", "sm"}
    sum(terms.values()).backward()
    g = mono.net.heads["0"].weight.grad
    assert (g is None or g.abs().sum() == 0) == detach
    assert stereo.net.conv1[0].weight.grad.abs().sum() > 0


def test_stereo_without_student_starts_from_zero_and_checks_inputs():
    left, right = pair()
    t = RSDStereoNet(base_width=8)
    out = t({"image": left, "image_right": right})
    assert out.disp[0].shape == (2, 2, H, W)
    with pytest.raises(KeyError, match="image_right"):
        t({"image": left})
    bad = type(out)(disp={0: torch.zeros(2, 1, H, W)})
    with pytest.raises(ValueError, match="B x 2 x H x W"):
        t({"image": left, "image_right": right}, bad)


def test_rsd_networks_have_one_cost_whatever_their_start_value(tmp_path):
    """init_disp and focal_baseline change no layer: the cost cache measures each network once."""
    from harness.host.manager import PluginHost
    from harness.report.cost import model_cost

    cat = PluginHost().catalog
    for role, name in (("student", "rsd_mono"), ("teacher", "rsd_stereo")):
        out = tmp_path / name
        a = model_cost(role, {"type": name, "base_width": 8}, (64, 64), cat, cache_dir=out, repeats=1)
        b = model_cost(role, {"type": name, "base_width": 8, "init_disp": 0.03, "focal_baseline": 0.1}, (64, 64),
                       cat, cache_dir=out, repeats=1)
        assert a == b and len(list((out / "cost").glob("*.json"))) == 1
