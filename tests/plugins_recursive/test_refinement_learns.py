"""The Stereo-Net's refined full-resolution output learns in a short overfit run (it stayed flat
with the release refinement: abs_rel 0.452 -> 0.443 in 100 steps while the unrefined heads fell
to ~0.27)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import DepthOutput
from harness.data.synth import Camera, DriveScene
from stereodistill_plugins.recursive.models import RSDStereoNet

H, W = 64, 128


def _abs_rel(depth: torch.Tensor, gt: torch.Tensor) -> float:
    m = (gt > 0) & (gt < 80)
    return ((depth - gt).abs() / gt)[m].mean().item()


@pytest.mark.slow
def test_refined_full_resolution_stereo_output_learns_in_100_steps():
    torch.manual_seed(0)
    cam = Camera.for_size(H, W)
    scene = DriveScene(0, 0, 2, cam)
    frames = [scene.frame(t) for t in range(2)]
    left = torch.tensor(np.stack([f["left"] for f in frames])).permute(0, 3, 1, 2).float() / 255
    right = torch.tensor(np.stack([f["right"] for f in frames])).permute(0, 3, 1, 2).float() / 255
    gt = torch.tensor(np.stack([f["depth"] for f in frames]))[:, None]
    net = RSDStereoNet(base_width=8, iterations=2, init_disp=0.02, focal_baseline=cam.fx * cam.baseline / W)
    batch = {"image": left, "image_right": right}
    start = DepthOutput(disp={0: torch.full((2, 2, H, W), 0.02)})  # a flat Mono-Net estimate
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    first = None
    for _ in range(100):
        out = net(batch, start)
        if first is None:
            first = _abs_rel(out.depth[0].detach(), gt)
        loss = sum(net.self_loss(batch, out).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = _abs_rel(net(batch, start).depth[0], gt)
    assert last < 0.6 * first, (first, last)
