"""The ``baseline`` strategy: GT and stereo supervision, the normalised stereo baseline and the
evaluation scale option."""
from __future__ import annotations

import pytest
import torch

from harness import DepthOutput, HarnessError, StepContext
from stereodistill_plugins.baseline.strategy import BaselineStrategy

B, H, W = 2, 32, 96
FX, BASE, DISP = 40.0, 0.54, 6.0  # true depth = FX * BASE / DISP = 3.6 m


def stereo_batch():
    """A textured right view and the left view it makes at a constant disparity of DISP px."""
    g = torch.Generator().manual_seed(0)
    right = torch.nn.functional.interpolate(torch.rand(B, 3, H // 4, W // 4 + 4, generator=g),
                                            size=(H, W + 16), mode="bilinear", align_corners=False)
    d = int(DISP)
    left = right[..., 8 - d:8 - d + W]  # left(x) = right(x - d): a point seen at x on the left is at x - d
    right = right[..., 8:8 + W]
    K = torch.tensor([[FX, 0, W / 2], [0, FX, H / 2], [0, 0, 1]]).expand(B, 3, 3).clone()
    return dict(image=left.contiguous(), image_right=right.contiguous(), K=K, baseline=torch.full((B,), BASE),
                meta=dict(flipped=torch.zeros(B, dtype=torch.bool), swapped=torch.zeros(B, dtype=torch.bool)))


def const_output(depth: float) -> dict[str, DepthOutput]:
    out = DepthOutput()
    for i in range(4):
        h, w = H >> i, W >> i
        out.depth[i] = torch.full((B, 1, h, w), depth)
        out.disp[i] = 1.0 / out.depth[i]
    return {"clean": out}


def photo_at(strategy, depth):
    return strategy.compute_loss(stereo_batch(), const_output(depth), None, StepContext()).terms["photo"].item()


def test_stereo_photo_is_minimal_at_the_normalised_depth():
    s = BaselineStrategy(supervision="stereo")  # baseline_norm 0.1 by default
    assert s.baseline_norm == 0.1
    true_norm = FX * 0.1 / DISP  # the depth the student must predict with the normalised baseline
    losses = {f: photo_at(s, true_norm * f) for f in (0.5, 0.8, 1.0, 1.25, 2.0)}
    assert min(losses, key=losses.get) == 1.0
    assert losses[1.0] < 0.5 * losses[0.8]


def test_metric_baseline_option_keeps_the_metric_minimum():
    s = BaselineStrategy(supervision="stereo", baseline_norm=None)
    true_depth = FX * BASE / DISP
    losses = {f: photo_at(s, true_depth * f) for f in (0.8, 1.0, 1.25)}
    assert min(losses, key=losses.get) == 1.0


def test_predict_rescales_by_the_stereo_factor_only_for_stereo():
    class Fixed(torch.nn.Module):
        def predict(self, image):
            return torch.ones(image.shape[0], 1, *image.shape[-2:])

    img = torch.zeros(1, 3, 4, 4)
    assert torch.allclose(BaselineStrategy(supervision="stereo").predict(Fixed(), img), torch.full((1, 1, 4, 4), 5.4))
    assert torch.equal(BaselineStrategy(supervision="gt").predict(Fixed(), img), torch.ones(1, 1, 4, 4))


def test_wrong_batch_baseline_is_an_error():
    s = BaselineStrategy(supervision="stereo", eval_baseline=0.3)
    with pytest.raises(HarnessError, match="eval_baseline"):
        photo_at(s, 1.0)


def test_gt_loss_is_zero_at_gt_and_eval_scale_option():
    s = BaselineStrategy(supervision="gt", eval_scale="median")
    assert s.eval_scale_policy == "median" and s.baseline_norm is None
    batch = dict(image=torch.zeros(B, 3, H, W), depth_gt=torch.full((B, 1, H, W), 7.0),
                 depth_gt_mask=torch.ones(B, 1, H, W, dtype=torch.bool))
    loss = s.compute_loss(batch, const_output(7.0), None, StepContext())
    assert loss.terms["gt"].abs().item() < 1e-5
    assert s.compute_loss(batch, const_output(9.0), None, StepContext()).terms["gt"].item() > 0.01


@pytest.mark.parametrize("kwargs, match", [
    (dict(supervision="imu"), "supervision"),  # ("video" is a supervision now)
    (dict(eval_scale="stereo_factor"), "eval_scale"),
    (dict(supervision="stereo", baseline_norm=-1.0), "baseline_norm"),
    (dict(eval_baseline=0.0), "eval_baseline"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(HarnessError, match=match):
        BaselineStrategy(**kwargs)


def test_profiles_compose_their_control_rows():
    """The control-row profiles: stereo supervision with the student's start value; the
    stereo-median profile inherits both and only changes the evaluation scale."""
    from pathlib import Path

    from harness.config.loader import load_file

    folder = Path(__file__).resolve().parents[2] / "plugins" / "baseline" / "configs"
    stereo = load_file(folder / "synth_small_stereo.py", "--config")
    both = load_file(folder / "synth_small_stereo_median.py", "--config")
    assert stereo.method == {"supervision": "stereo"} and stereo.student == {"init_disp": 0.03}
    assert both.method == {"supervision": "stereo", "eval_scale": "median"}
    assert both.student == stereo.student and both.schedule == stereo.schedule
    assert load_file(folder / "synth_small_median.py", "--config").method == {"eval_scale": "median"}
