"""Golden-value tests for harness.distill.geometry on tiny fixed tensors."""
from __future__ import annotations

import math

import pytest
import torch

from harness.distill.geometry import (
    backproject,
    depth_to_disp_px,
    depth_to_normals,
    disp_px_to_depth,
    disp_to_depth,
    invert_transform,
    pixel_grid,
    pose_vec_to_mat,
    project,
    warp_stereo,
    warp_temporal,
)

K_SMALL = torch.tensor([[20.0, 0.0, 7.5], [0.0, 20.0, 4.5], [0.0, 0.0, 1.0]])


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# Stereo
# ------------------------------------------------------------------------------------------
def test_warp_stereo_integer_disparity_is_a_shift():
    img = rand(2, 3, 5, 8)
    d = torch.full((2, 1, 5, 8), 2.0)
    left = warp_stereo(img, d, "r2l")  # out(x) = img(x - 2)
    assert torch.allclose(left[..., 2:], img[..., :-2], atol=1e-6)
    assert torch.allclose(left[..., :2], img[..., :1].expand(-1, -1, -1, 2), atol=1e-6)  # border
    right = warp_stereo(img, d, "l2r")  # out(x) = img(x + 2)
    assert torch.allclose(right[..., :-2], img[..., 2:], atol=1e-6)
    assert torch.allclose(right[..., -2:], img[..., -1:].expand(-1, -1, -1, 2), atol=1e-6)


def test_warp_stereo_normalised_half_pixel_and_gradient():
    img = torch.arange(8.0).view(1, 1, 1, 8).repeat(1, 1, 3, 1)
    # width-normalised disparity 2/W == 2 px
    a = warp_stereo(img, torch.full((1, 1, 3, 8), 2.0 / 8), "r2l", normalised=True)
    b = warp_stereo(img, torch.full((1, 1, 3, 8), 2.0), "r2l")
    assert torch.allclose(a, b, atol=1e-5)
    # half-pixel disparity on a ramp = linear interpolation
    d = torch.full((1, 1, 3, 8), 0.5, requires_grad=True)
    out = warp_stereo(img, d, "r2l")
    assert torch.allclose(out[..., 1:], img[..., 1:] - 0.5, atol=1e-5)
    out.sum().backward()
    assert torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        warp_stereo(img, d, "up")


def test_disp_to_depth_golden():
    s = torch.tensor([0.0, 0.5, 1.0])
    disp, depth = disp_to_depth(s, 0.1, 100.0)
    assert torch.allclose(disp, torch.tensor([0.01, 0.01 + 9.99 * 0.5, 10.0]))
    assert torch.allclose(depth, torch.tensor([100.0, 1.0 / 5.005, 0.1]))


def test_depth_disp_px_roundtrip():
    depth = torch.full((2, 1, 2, 3), 10.0)
    d = depth_to_disp_px(depth, 720.0, 0.54)
    assert torch.allclose(d, torch.full_like(depth, 38.88))
    fx = torch.tensor([720.0, 360.0])
    d2 = depth_to_disp_px(depth, fx, 0.54)
    assert torch.allclose(d2[1], torch.full_like(depth[1], 19.44))
    assert torch.allclose(disp_px_to_depth(d2, fx, 0.54), depth)


# ------------------------------------------------------------------------------------------
# Projective geometry
# ------------------------------------------------------------------------------------------
def test_backproject_golden():
    K = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
    depth = torch.full((1, 1, 3, 4), 2.0)
    pts = backproject(depth, torch.linalg.inv(K))
    assert pts.shape == (1, 3, 3, 4)
    # pixel u=3 (column), v=1 (row): X = 2 * ((3-1)/2, (1-1)/2, 1)
    assert torch.allclose(pts[0, :, 1, 3], torch.tensor([2.0, 0.0, 2.0]))
    assert torch.allclose(pts[0, :, 0, 0], torch.tensor([-1.0, -1.0, 2.0]))


def test_project_inverts_backproject():
    depth = rand(2, 1, 6, 9) * 10 + 1
    K = K_SMALL.expand(2, 3, 3)
    uv, z = project(backproject(depth, torch.linalg.inv(K)), K, torch.eye(4).expand(2, 4, 4))
    grid = pixel_grid(6, 9)
    assert torch.allclose(uv, grid[:2].expand(2, 2, 6, 9), atol=1e-4)
    assert torch.allclose(z, depth, atol=1e-5)
    # translation along z moves the depth; 4x4 intrinsics are accepted
    K4 = torch.eye(4)
    K4[:3, :3] = K_SMALL
    T = torch.eye(4)
    T[2, 3] = 1.5
    _, z2 = project(backproject(depth, torch.linalg.inv(K_SMALL)), K4, T)
    assert torch.allclose(z2, depth + 1.5, atol=1e-5)


def test_warp_temporal_identity_pose_is_identity():
    img = rand(2, 3, 6, 9, seed=1)
    depth_t = rand(2, 1, 6, 9, seed=2) * 10 + 1
    depth_s = rand(2, 1, 6, 9, seed=3) * 10 + 1
    out = warp_temporal(img, depth_t, torch.eye(4).expand(2, 4, 4), K_SMALL, depth_src=depth_s)
    image, valid, proj, interp = out
    assert torch.allclose(image, img, atol=1e-5)
    assert torch.all(valid == 1)
    assert torch.allclose(proj, depth_t, atol=1e-5)
    assert torch.allclose(interp, depth_s, atol=1e-5)
    assert warp_temporal(img, depth_t, torch.eye(4), K_SMALL).interpolated_depth is None


def test_warp_temporal_lateral_translation_equals_stereo_shift():
    # Fronto-parallel plane at depth D, camera moved by tx: source pixel u + fx * tx / D.
    img = rand(1, 3, 6, 9, seed=4)
    D = 4.0
    depth = torch.full((1, 1, 6, 9), D)
    T = torch.eye(4)
    T[0, 3] = 1.0 * D / 20.0  # = 1 px at fx = 20
    out = warp_temporal(img, depth, T, K_SMALL)
    assert torch.allclose(out.image, warp_stereo(img, torch.ones_like(depth), "l2r"), atol=1e-5)
    assert torch.all(out.valid[..., :-1] == 1) and torch.all(out.valid[..., -1] == 0)


def test_normals_of_planes():
    K_inv = torch.linalg.inv(K_SMALL)
    n = depth_to_normals(torch.full((1, 1, 6, 9), 5.0), K_inv)
    assert torch.allclose(n, torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand_as(n), atol=1e-6)
    # tilted plane z = 5 + 0.5 x  ->  normal ∝ (0.5, 0, -1) (facing the camera)
    rays = backproject(torch.ones(1, 1, 6, 9), K_inv)
    depth = 5.0 / (1.0 - 0.5 * rays[:, :1])
    n = depth_to_normals(depth, K_inv)
    expected = torch.tensor([0.5, 0.0, -1.0]) / math.sqrt(1.25)
    assert torch.allclose(n, expected.view(1, 3, 1, 1).expand_as(n), atol=1e-4)


# ------------------------------------------------------------------------------------------
# Poses
# ------------------------------------------------------------------------------------------
def test_pose_vec_to_mat_golden_and_orthonormal():
    aa = torch.tensor([[0.0, 0.0, math.pi / 2], [0.3, -1.2, 0.7], [0.0, 0.0, 0.0]])
    t = torch.tensor([[1.0, 2.0, 3.0], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
    T = pose_vec_to_mat(aa, t)
    assert T.shape == (3, 4, 4)
    Rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(T[0, :3, :3], Rz, atol=1e-6)
    assert torch.allclose(T[:, :3, 3], t)
    assert torch.allclose(T[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(3, 4))
    R = T[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3), atol=1e-6)
    # independent check: matrix exponential of the skew matrix
    v = aa[1].double()
    S = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=torch.float64)
    assert torch.allclose(R[1].double(), torch.linalg.matrix_exp(S), atol=1e-6)
    # MD2 layout B x 1 x 3 accepted; invert gives the inverse transform
    Ti = pose_vec_to_mat(aa.unsqueeze(1), t.unsqueeze(1), invert=True)
    assert torch.allclose(T @ Ti, torch.eye(4).expand(3, 4, 4), atol=1e-5)
    assert torch.allclose(invert_transform(T), Ti, atol=1e-6)


def test_pose_vec_to_mat_smooth_at_zero():
    aa = torch.zeros(1, 3, requires_grad=True)
    T = pose_vec_to_mat(aa, torch.zeros(1, 3))
    assert torch.allclose(T, torch.eye(4).unsqueeze(0))
    (T[0, :3, :3] * torch.arange(9.0).view(3, 3)).sum().backward()
    assert torch.isfinite(aa.grad).all()
    # d/dv of R at 0 is the skew generator: sum_ij W_ij [v]x_ij
    W = torch.arange(9.0).view(3, 3)
    expected = torch.tensor([W[2, 1] - W[1, 2], W[0, 2] - W[2, 0], W[1, 0] - W[0, 1]])
    assert torch.allclose(aa.grad[0], expected, atol=1e-5)
