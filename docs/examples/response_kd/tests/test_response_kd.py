"""Tests of the example plugin, written with harness.testing (run: python -m pytest tests)."""
import numpy as np
import pytest
import torch

import response_kd
from response_kd.metric import abs_log
from harness.distill.geometry import warp_stereo
from harness.testing import host_with, tiny_batch
from harness.types import DepthOutput, StepContext


@pytest.fixture(scope="module")
def catalog():
    return host_with(response_kd).catalog


def test_the_plugin_registers_a_method_a_dataset_and_a_metric(catalog):
    assert "response_kd" in catalog.names("methods")
    assert "planes" in catalog.names("datasets") and "abs_log" in catalog.names("metrics")


def test_planes_pairs_are_exact_and_flips_follow_the_contract(catalog, tmp_path):
    plain = catalog.build("datasets", "planes", root=str(tmp_path), split="train", height=64, width=192, frames=4)
    s = plain[1]
    assert set(s) == set(plain.provides) and s["image"].shape == (3, 64, 192)
    # the left view is the right view warped by the true disparity f * b / depth, except where
    # the right camera cannot see the point (the left border, beside the box: occlusions)
    disp = s["K"][0, 0] * s["baseline"] / s["depth_gt"]
    err = (warp_stereo(s["image_right"][None], disp[None], "r2l")[0] - s["image"]).abs().amax(0)
    err = err[:, int(disp.max().ceil()):]
    assert err.median() < 0.01 and (err > 0.05).float().mean() < 0.05  # bilinear resampling: ~2e-3
    np.testing.assert_array_equal(plain.eval_gt(1), s["depth_gt"][0].numpy())
    mirrored = catalog.build("datasets", "planes", root=str(tmp_path), split="train", height=64, width=192,
                             frames=4, flip_mode="mirror", flip_prob=1.0)[1]
    assert mirrored["meta"]["flipped"] and not mirrored["meta"]["swapped"]
    assert torch.equal(mirrored["image_right"], s["image_right"].flip(-1))
    assert torch.equal(mirrored["depth_gt"], s["depth_gt"].flip(-1))


def test_the_method_learns_from_gt_and_the_teacher(catalog):
    strategy = catalog.build("methods", "response_kd")
    student = catalog.build("students", "resnet", num_layers=18, base_width=8)
    batch = tiny_batch(2, 64, 96)
    s_out = strategy.student_forward(student, batch)
    t_out = DepthOutput(depth={0: batch["depth_gt"]})  # a perfect teacher
    loss = strategy.compute_loss(batch, s_out, t_out, StepContext())
    assert set(loss.terms) == {"gt", "resp"} and torch.isfinite(loss.total)
    loss.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_abs_log_is_zero_for_a_perfect_prediction_and_per_image():
    gt = torch.rand(2, 1, 4, 5) + 1.0
    mask = torch.ones_like(gt, dtype=torch.bool)
    assert torch.equal(abs_log(gt, gt, mask), torch.zeros(2))
    err = abs_log(gt * np.e, gt, mask)
    torch.testing.assert_close(err, torch.ones(2))
