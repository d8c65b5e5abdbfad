"""Shared geometry toolkit (docs/methods.md 0.3 and 7.6): differentiable, batched, torch only.

Conventions
-----------
* Images / maps are ``B x C x H x W``; depth and disparity maps are ``B x 1 x H x W``.
* Pixel ``(u, v)`` = (column, row) with pixel centres at integer coordinates ``0..W-1`` /
  ``0..H-1``; sampling uses ``grid_sample(..., align_corners=True)`` so pixel ``u`` maps exactly to
  the normalised coordinate ``2u/(W-1) - 1``.
* Cameras: x right, y down, z forward (depth = z). ``K`` is ``B x 3 x 3`` (a ``3 x 3`` or a
  ``B x 4 x 4`` / ``4 x 4`` matrix is accepted; its top-left 3x3 block is used).
* Rigid transforms ``T`` are ``B x 4 x 4`` (``B x 3 x 4`` accepted) mapping points of one camera
  into another: ``X_s = R X_t + t`` for ``T_t2s``.
* Stereo: ``disp_px = fx * baseline / depth``; for a rectified pair a left pixel ``x`` sees the
  same point as right pixel ``x - d`` (left-view disparity).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "TemporalWarp",
    "backproject",
    "depth_to_disp_px",
    "depth_to_normals",
    "disp_px_to_depth",
    "disp_to_depth",
    "invert_transform",
    "pixel_grid",
    "pose_vec_to_mat",
    "project",
    "warp_stereo",
    "warp_temporal",
]


def _per_batch(x: Tensor | float, ref: Tensor) -> Tensor | float:
    """A python number stays a number; a ``B`` / ``B x 1`` tensor becomes ``B x 1 x 1 x 1``."""
    if isinstance(x, Tensor):
        x = x.to(device=ref.device, dtype=ref.dtype)
        if x.dim() == 0:
            return x
        return x.reshape(-1, 1, 1, 1)
    return x


def _mat3(K: Tensor, batch: int) -> Tensor:
    """``B x 3 x 3`` view of an intrinsics matrix given as 3x3 / 4x4 / B x 3x3 / B x 4x4."""
    if K.dim() == 2:
        K = K.unsqueeze(0)
    K = K[:, :3, :3]
    if K.shape[0] == 1 and batch != 1:
        K = K.expand(batch, 3, 3)
    return K


def _mat4(T: Tensor, batch: int) -> Tensor:
    """``B x 4 x 4`` view of a rigid transform given as 3x4 / 4x4 with or without batch."""
    if T.dim() == 2:
        T = T.unsqueeze(0)
    if T.shape[-2] == 3:
        bottom = torch.zeros(T.shape[0], 1, 4, dtype=T.dtype, device=T.device)
        bottom[:, 0, 3] = 1.0
        T = torch.cat([T, bottom], dim=1)
    if T.shape[0] == 1 and batch != 1:
        T = T.expand(batch, 4, 4)
    return T


def pixel_grid(h: int, w: int, dtype=torch.float32, device=None) -> Tensor:
    """Homogeneous pixel coordinates ``3 x H x W``: rows ``(u, v, 1)`` with ``u`` = column."""
    v, u = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=device),
        torch.arange(w, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=0)


def _to_grid(u: Tensor, v: Tensor, h: int, w: int) -> Tensor:
    """Pixel coordinates -> ``B x H x W x 2`` normalised grid for ``align_corners=True``."""
    gx = 2.0 * u / max(w - 1, 1) - 1.0
    gy = 2.0 * v / max(h - 1, 1) - 1.0
    return torch.stack([gx, gy], dim=-1)


# --------------------------------------------------------------------------------------------
# Stereo
# --------------------------------------------------------------------------------------------
def warp_stereo(img: Tensor, disp_px: Tensor, direction: str = "r2l", normalised: bool = False) -> Tensor:
    """Horizontal 1-D bilinear resampling of ``img`` by a disparity (``W_x`` of docs/methods.md 0.3).

    Args:
        img: ``B x C x H x W`` image (or any map) to sample from.
        disp_px: ``B x 1 x H x W`` disparity in pixels (in the *output* view), or width-normalised
            (``d~ = d / W``, Monodepth) if ``normalised=True``.
        direction: ``"r2l"``: ``img`` is the right view, output is the synthesised left view,
            ``out(x) = img(x - d)``; ``"l2r"``: ``img`` is the left view, output the right view,
            ``out(x) = img(x + d)``.
        normalised: interpret ``disp_px`` as ``d~`` (multiplied by ``W``).

    Out-of-image samples use border padding (Monodepth). Differentiable in ``img`` and ``disp``.
    """
    if direction not in ("r2l", "l2r"):
        raise ValueError(f"direction must be 'r2l' or 'l2r', got {direction!r}")
    b, _, h, w = img.shape
    d = disp_px[:, 0] * w if normalised else disp_px[:, 0]
    if d.shape[-2:] != (h, w):
        raise ValueError(f"disparity {tuple(disp_px.shape)} does not match image {tuple(img.shape)}")
    grid = pixel_grid(h, w, dtype=img.dtype, device=img.device)
    u = grid[0].expand(b, h, w)
    v = grid[1].expand(b, h, w)
    u = u - d if direction == "r2l" else u + d
    return F.grid_sample(img, _to_grid(u, v, h, w), mode="bilinear", padding_mode="border", align_corners=True)


def disp_to_depth(sigmoid: Tensor, min_depth: float = 0.1, max_depth: float = 100.0) -> tuple[Tensor, Tensor]:
    """Monodepth2 scaled disparity: ``disp = 1/max + (1/min - 1/max) * sigmoid``, ``depth = 1/disp``.

    Returns ``(scaled_disp, depth)`` exactly like Monodepth2's ``disp_to_depth``.
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * sigmoid
    return scaled, 1.0 / scaled


def depth_to_disp_px(depth: Tensor, fx: Tensor | float, baseline: Tensor | float, eps: float = 1e-8) -> Tensor:
    """Disparity in pixels ``d = fx * b / D`` (``fx``, ``b`` scalars or per-batch ``B`` tensors)."""
    return _per_batch(fx, depth) * _per_batch(baseline, depth) / depth.clamp_min(eps)


def disp_px_to_depth(disp_px: Tensor, fx: Tensor | float, baseline: Tensor | float, eps: float = 1e-8) -> Tensor:
    """Depth ``D = fx * b / d`` from a pixel disparity (inverse of :func:`depth_to_disp_px`)."""
    return _per_batch(fx, disp_px) * _per_batch(baseline, disp_px) / disp_px.clamp_min(eps)


# --------------------------------------------------------------------------------------------
# Projective geometry
# --------------------------------------------------------------------------------------------
def focal_baseline(batch: dict, baseline_norm: float | None = None, eval_baseline: float = 0.54,
                   rtol: float = 0.01, owner: str = "method") -> Tensor:
    """``fx * b`` per sample (``B x 1 x 1 x 1``, the image's dtype) of a stereo batch.

    ``baseline_norm`` set: Monodepth2's normalised baseline replaces the batch's metric one (a
    depth learnt with it is metric after ``* eval_baseline / baseline_norm``, the stereo factor);
    the batch baseline must then equal ``eval_baseline`` within ``rtol``, or the factor would be
    wrong (:class:`~harness.errors.HarnessError` naming ``owner``).
    """
    from harness.errors import HarnessError

    fx = batch["K"][:, 0, 0].to(batch["image"].dtype)
    base = torch.as_tensor(batch["baseline"], device=fx.device).to(fx.dtype).reshape(-1)
    if baseline_norm is not None:
        if bool(((base - eval_baseline).abs() > rtol * eval_baseline).any()):
            raise HarnessError(f"{owner}: the batch stereo baseline {base.tolist()} differs from "
                               f"method.eval_baseline={eval_baseline}, so the stereo factor would be "
                               f"wrong; set method.eval_baseline to the data's baseline")
        base = torch.full_like(base, baseline_norm)
    return (fx * base).view(-1, 1, 1, 1)


def backproject(depth: Tensor, K_inv: Tensor) -> Tensor:
    """Camera-frame 3-D points ``X = D(u, v) * K^-1 (u, v, 1)^T`` as ``B x 3 x H x W``."""
    b, _, h, w = depth.shape
    K_inv = _mat3(K_inv, b).to(depth.dtype)
    pix = pixel_grid(h, w, dtype=depth.dtype, device=depth.device).reshape(3, -1)
    rays = torch.matmul(K_inv, pix)  # B x 3 x HW
    return rays.reshape(b, 3, h, w) * depth


def project(points: Tensor, K: Tensor, T: Tensor | None = None, eps: float = 1e-7) -> tuple[Tensor, Tensor]:
    """Project ``B x 3 x H x W`` points, optionally moved by ``T`` first, with intrinsics ``K``.

    Returns ``(uv, z)``: pixel coordinates ``B x 2 x H x W`` (channel 0 = u = column, 1 = v = row)
    and the depth ``z`` of the (transformed) points, ``B x 1 x H x W``. ``z`` is floored at ``eps``
    for the division only; points behind the camera keep their (non-positive) ``z`` in the output.
    """
    b, _, h, w = points.shape
    X = points.reshape(b, 3, -1)
    if T is not None:
        T = _mat4(T, b).to(points.dtype)
        X = torch.matmul(T[:, :3, :3], X) + T[:, :3, 3:]
    K = _mat3(K, b).to(points.dtype)
    cam = torch.matmul(K, X)
    z = cam[:, 2:3]
    uv = cam[:, :2] / z.clamp_min(eps)
    return uv.reshape(b, 2, h, w), z.reshape(b, 1, h, w)


class TemporalWarp(NamedTuple):
    """Result of :func:`warp_temporal` (unpacks as a 4-tuple)."""

    image: Tensor  #: source image sampled at the projections, ``B x C x H x W``
    valid: Tensor  #: float mask, 1 where the projection lands inside the source image (pixel
    #: centres 0..W-1 / 0..H-1, 1e-3 px slack) in front of the camera
    projected_depth: Tensor  #: depth of the target points in the source camera (``z``)
    interpolated_depth: Tensor | None  #: ``depth_src`` sampled at the projections (or None)


def warp_temporal(
    img_src: Tensor,
    depth_t: Tensor,
    T_t2s: Tensor,
    K: Tensor,
    depth_src: Tensor | None = None,
    padding_mode: str = "border",
) -> TemporalWarp:
    """Inverse warp ``W_3D(I_s, D_t, T_{t->s}, K)``: synthesise the target view from a source frame.

    Target pixels are back-projected with ``depth_t``, moved into the source camera by ``T_t2s``
    and projected with ``K``; ``img_src`` (and ``depth_src`` if given) is bilinearly sampled there.

    Returns :class:`TemporalWarp` ``(image, valid, projected_depth, interpolated_depth)``; the
    last two are SC-Depth's ``D_s^{proj}`` (computed) and ``D_s^{interp}`` (sampled) used by the
    geometry-consistency term ``|D_proj - D_interp| / (D_proj + D_interp)``.
    """
    b, _, h, w = depth_t.shape
    K3 = _mat3(K, b).to(depth_t.dtype)
    points = backproject(depth_t, torch.linalg.inv(K3))
    uv, z = project(points, K3, T_t2s)
    grid = _to_grid(uv[:, 0], uv[:, 1], h, w)
    image = F.grid_sample(img_src, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    tol = 1e-3  # pixels: absorbs float rounding of exact border projections
    u, v = uv[:, :1], uv[:, 1:]
    inside = (u > -tol) & (u < w - 1 + tol) & (v > -tol) & (v < h - 1 + tol) & (z > 0)
    interp = None
    if depth_src is not None:
        interp = F.grid_sample(depth_src, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    return TemporalWarp(image, inside.to(depth_t.dtype), z, interp)


def depth_to_normals(depth: Tensor, K_inv: Tensor, eps: float = 1e-8) -> Tensor:
    """Unit surface normals ``B x 3 x H x W`` from a depth map.

    Points are back-projected, tangents are central differences along u and v (one-sided at the
    border), and ``n = normalize(dX/dv x dX/du)``. Convention: normals face the camera, so a
    fronto-parallel plane gives ``(0, 0, -1)``.
    """
    pts = backproject(depth, K_inv)
    padded = F.pad(pts, (1, 1, 1, 1), mode="replicate")
    du = padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]
    dv = padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]
    n = torch.cross(dv, du, dim=1)
    return n / n.norm(dim=1, keepdim=True).clamp_min(eps)


# --------------------------------------------------------------------------------------------
# Poses
# --------------------------------------------------------------------------------------------
def _skew(v: Tensor) -> Tensor:
    """``B x 3`` -> ``B x 3 x 3`` cross-product matrices."""
    zero = torch.zeros_like(v[:, 0])
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    return torch.stack(
        [
            torch.stack([zero, -z, y], dim=-1),
            torch.stack([z, zero, -x], dim=-1),
            torch.stack([-y, x, zero], dim=-1),
        ],
        dim=-2,
    )


def pose_vec_to_mat(axisangle: Tensor, translation: Tensor, invert: bool = False) -> Tensor:
    """Rodrigues: axis-angle ``B x 3`` (or ``B x 1 x 3``) + translation ``B x 3`` -> ``B x 4 x 4``.

    ``R = I + (sin t / t) [v]x + ((1 - cos t) / t^2) [v]x^2``, ``t = |v|`` (Taylor expansion for
    ``t -> 0``, so it is smooth and differentiable at zero rotation). ``T = [R | t]``.
    ``invert=True`` returns the inverse ``[R^T | -R^T t]`` (Monodepth2's ``invert`` flag for the
    pose of the earlier frame).
    """
    v = axisangle.reshape(-1, 3)
    t = translation.reshape(-1, 3).to(v.dtype)
    theta2 = (v * v).sum(dim=-1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta_safe = theta2_safe.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta_safe) / theta_safe)
    c = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta_safe)) / theta2_safe)
    S = _skew(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(S)
    R = eye + a[:, None, None] * S + c[:, None, None] * (S @ S)
    if invert:
        R = R.transpose(1, 2)
        t = -(R @ t.unsqueeze(-1)).squeeze(-1)
    T = torch.zeros(v.shape[0], 4, 4, dtype=v.dtype, device=v.device)
    T[:, :3, :3] = R
    T[:, :3, 3] = t
    T[:, 3, 3] = 1.0
    return T


def invert_transform(T: Tensor) -> Tensor:
    """Inverse of rigid transforms ``B x 4 x 4`` (or ``4 x 4``): ``[R^T | -R^T t]``."""
    squeeze = T.dim() == 2
    T4 = _mat4(T, 1 if squeeze else T.shape[0])
    R = T4[:, :3, :3].transpose(1, 2)
    t = -(R @ T4[:, :3, 3:])
    out = torch.zeros_like(T4)
    out[:, :3, :3] = R
    out[:, :3, 3:] = t
    out[:, 3, 3] = 1.0
    return out[0] if squeeze else out
