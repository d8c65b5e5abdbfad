"""harness.testing: the helpers plugin authors test with."""
import pytest
import torch

from harness.distill.flips import canonical, partner_on_left
from harness.distill.geometry import warp_stereo
from harness.testing import host_with, tiny_batch
from tests.plugins import sample_method


def test_host_with_loads_core_and_the_plugin_only():
    host = host_with(sample_method)
    assert set(host.catalog.names("methods")) == {"sample"}
    assert "resnet" in host.catalog.names("students") and "synth" in host.catalog.names("datasets")


def test_tiny_batch_is_an_exact_stereo_scene_also_when_mirrored():
    batch = tiny_batch(3, 32, 64, flipped=[False, True, True], swapped=[False, False, True])
    assert partner_on_left(batch).tolist() == [False, True, False]
    assert batch["T_l2r"][:, 0, 3].tolist() == pytest.approx([-0.54, 0.54, -0.54])
    canon, _ = canonical(batch)
    disp = canon["K"][:, 0, 0].view(-1, 1, 1, 1) * canon["baseline"].view(-1, 1, 1, 1) / canon["depth_gt"]
    warped = warp_stereo(canon["image_right"], disp, "r2l")
    visible = slice(int(disp.max()) + 1, None)  # the left border is not seen by the right camera
    torch.testing.assert_close(warped[..., visible], canon["image"][..., visible], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="a swapped sample is flipped"):
        tiny_batch(1, swapped=[True])
