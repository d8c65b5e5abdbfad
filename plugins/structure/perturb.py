"""Input perturbations of the structure-centric method (docs/methods.md 4.4 (a) and (b)).

Two families, both applied to the *student's* input only (the teacher and every photometric
loss keep the clean images):

* **Depth structure consistency (DSC)** operators that change appearance but not geometry:
  ``night`` (darkening + gamma + sensor noise), ``fog`` (haze), ``rain`` (streaks),
  ``motion_blur``, ``defocus_blur``, ``contrast_colour`` (contrast/colour shift),
  ``sensor_noise``, ``jpeg`` (``cv2.imencode``) and ``illumination`` (illumination gradients).
  :func:`perturb` picks one operator and one severity per sample.
* **Local texture disambiguation (LTD)**: :func:`patch_mask` hides a random fraction of square
  patches (mean-colour fill) or shuffles them among themselves.

Every function works on a batch ``B x 3 x H x W`` in ``[0, 1]``, is vectorised over the batch
(the only per-image loop is JPEG, which goes through OpenCV) and draws every random number from
the ``torch.Generator`` it is given, so a (seed, batch) pair always gives the same output.
Severity ``s`` in ``[0, 1]`` is per sample; ``s = 0`` is the mildest setting of an operator, not
the identity. Outputs are clamped to ``[0, 1]`` and carry no gradient.
"""
from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DSC_OPS",
    "FILL_MODES",
    "OPERATORS",
    "contrast_colour",
    "defocus_blur",
    "fog",
    "illumination",
    "jpeg",
    "line_kernels",
    "disk_kernels",
    "motion_blur",
    "night",
    "patch_mask",
    "patch_size_for",
    "perturb",
    "rain",
    "sensor_noise",
]

#: reference input width of the paper-scale setting (192 x 640); kernel sizes scale with W / 640
REF_WIDTH = 640
REF_HEIGHT = 192


def _rand(n: int, gen: torch.Generator, like: Tensor, *shape: int) -> Tensor:
    return torch.rand((n, *shape), generator=gen, device=gen.device).to(like.device, like.dtype)


def _randn(n: int, gen: torch.Generator, like: Tensor, *shape: int) -> Tensor:
    return torch.randn((n, *shape), generator=gen, device=gen.device).to(like.device, like.dtype)


def _b(x: Tensor) -> Tensor:
    """``B`` -> ``B x 1 x 1 x 1``."""
    return x.view(-1, 1, 1, 1)


def _width_scale(x: Tensor) -> float:
    return x.shape[-1] / REF_WIDTH


# --------------------------------------------------------------------------------------------
# Kernels (per sample) and a grouped convolution applying one kernel per image
# --------------------------------------------------------------------------------------------
def line_kernels(length: Tensor, angle: Tensor, size: int, normalise: bool = True) -> Tensor:
    """Anti-aliased line segments ``B x 1 x size x size`` centred in the kernel.

    ``length`` (px, >= 1) and ``angle`` (radians, 0 = horizontal, pi/2 = vertical, image rows
    grow downwards) are ``B`` tensors. A cell's weight is ``clamp(1 - distance to the segment,
    0, 1)``. ``normalise=True`` makes each kernel sum to 1 (blur); otherwise its maximum is 1
    (streaks).
    """
    c = (size - 1) / 2.0
    r = torch.arange(size, dtype=length.dtype, device=length.device) - c
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    dx, dy = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    half = (length.view(-1, 1, 1) - 1.0).clamp_min(0.0) / 2.0
    t = (xx * dx + yy * dy).clamp(-1e9, 1e9)
    t_clamped = torch.maximum(torch.minimum(t, half), -half)
    px, py = xx - t_clamped * dx, yy - t_clamped * dy
    dist = torch.sqrt(px * px + py * py)
    k = (1.0 - dist).clamp_min(0.0)
    k = k / (k.sum(dim=(1, 2), keepdim=True) if normalise else k.amax(dim=(1, 2), keepdim=True)).clamp_min(1e-8)
    return k.unsqueeze(1)


def disk_kernels(radius: Tensor, size: int) -> Tensor:
    """Anti-aliased disks ``B x 1 x size x size`` (sum 1): weight ``clamp(r + 0.5 - d, 0, 1)``."""
    c = (size - 1) / 2.0
    r = torch.arange(size, dtype=radius.dtype, device=radius.device) - c
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    d = torch.sqrt(xx * xx + yy * yy)
    k = (radius.view(-1, 1, 1) + 0.5 - d).clamp(0.0, 1.0)
    k = k / k.sum(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    return k.unsqueeze(1)


def _conv_per_image(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve image ``b`` (all channels) with ``kernels[b]`` (reflection padding)."""
    b, c, h, w = x.shape
    size = kernels.shape[-1]
    pad = size // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    xp = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0)  # (B*C) x 1 x k x k
    return F.conv2d(xp, weight, groups=b * c).reshape(b, c, h, w)


def _odd(n: float) -> int:
    n = max(1, int(math.ceil(n)))
    return n if n % 2 else n + 1


# --------------------------------------------------------------------------------------------
# DSC operators: (x, severity B, generator) -> x'
# --------------------------------------------------------------------------------------------
def night(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Low light: ``gain * x^gamma`` (gamma 1.2..2.7, gain 0.6..0.15), a slight blue cast, then
    Poisson-Gaussian sensor noise whose relative strength grows as the image darkens."""
    n = x.shape[0]
    u = _rand(n, gen, x, 2)
    gamma = _b(1.2 + 1.5 * sev * (0.7 + 0.3 * u[:, 0]))
    gain = _b(0.6 - 0.45 * sev * (0.7 + 0.3 * u[:, 1]))
    tint = torch.stack([1.0 - 0.1 * sev, 1.0 - 0.05 * sev, 1.0 + 0.05 * sev], dim=1).view(n, 3, 1, 1)
    y = gain * x.clamp_min(0.0).pow(gamma) * tint
    shot = _b(0.002 + 0.01 * sev)
    read = _b(0.005 + 0.02 * sev)
    std = torch.sqrt(shot * y + read * read)
    return (y + std * _randn(n, gen, x, *x.shape[1:])).clamp(0.0, 1.0)


def fog(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Haze by the scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    No depth is used (the method must not see GT): ``d`` is a row prior in ``[0, 1]`` (1 at and
    above the image's middle row, the horizon of a forward-looking driving camera, falling
    linearly to 0 at the bottom row) modulated by low-frequency noise for patchy fog.
    ``beta`` = 0.6..3.0, airlight ``A`` = 0.7..0.95 (grey-white).
    """
    n, _, h, w = x.shape
    rows = torch.arange(h, dtype=x.dtype, device=x.device)
    horizon = 0.5 * (h - 1)
    d = ((h - 1 - rows) / max(h - 1 - horizon, 1e-6)).clamp(0.0, 1.0).view(1, 1, h, 1)
    low = F.interpolate(_rand(n, gen, x, 1, 3, 6), size=(h, w), mode="bicubic", align_corners=False)
    d = d * (0.7 + 0.6 * low.clamp(0.0, 1.0))
    u = _rand(n, gen, x, 2)
    beta = _b(0.6 + 2.4 * sev * (0.8 + 0.2 * u[:, 0]))
    airlight = _b(0.7 + 0.25 * u[:, 1])
    t = torch.exp(-beta * d)
    return (x * t + airlight * (1.0 - t)).clamp(0.0, 1.0)


def rain(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Rain streaks: sparse random drops smeared along a near-vertical line (length ~ 4..14 px
    at 640 px width, angle within 20 degrees of vertical), blended in as bright streaks over a
    slightly darkened, slightly blurred scene."""
    n, _, h, w = x.shape
    s = _width_scale(x)
    u = _rand(n, gen, x, 3)
    density = _b(0.004 + 0.012 * sev)
    drops = (_rand(n, gen, x, 1, h, w) < density).to(x.dtype)
    length = (4.0 + 10.0 * sev * (0.6 + 0.4 * u[:, 0])) * max(s, 0.25)
    angle = math.pi / 2 + (u[:, 1] - 0.5) * (2 * math.radians(20.0))
    size = _odd(float(length.max()) + 2)
    streaks = _conv_per_image(drops, line_kernels(length, angle, size, normalise=False)).clamp(0.0, 1.0)
    alpha = _b(0.5 + 0.35 * u[:, 2]) * streaks
    dark = _b(1.0 - 0.25 * sev)
    blurred = _conv_per_image(x, disk_kernels(torch.full_like(sev, 0.8), 3))
    return (blurred * dark * (1.0 - alpha) + 0.85 * alpha).clamp(0.0, 1.0)


def motion_blur(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Linear motion blur: a normalised line kernel of length 3..19 px (at 640 px width; at
    least 3 px at any width) in a random direction."""
    n = x.shape[0]
    s = _width_scale(x)
    u = _rand(n, gen, x, 2)
    length = (1.0 + (2.0 + 16.0 * sev * (0.7 + 0.3 * u[:, 0])) * s).clamp_min(3.0)
    angle = u[:, 1] * math.pi
    size = _odd(float(length.max()) + 2)
    return _conv_per_image(x, line_kernels(length, angle, size)).clamp(0.0, 1.0)


def defocus_blur(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Defocus: a normalised disk kernel of radius 1..7 px (at 640 px width; at least 1 px at
    any width)."""
    n = x.shape[0]
    s = _width_scale(x)
    u = _rand(n, gen, x, 1)
    radius = ((1.0 + 6.0 * sev * (0.7 + 0.3 * u[:, 0])) * s).clamp_min(1.0)
    size = _odd(2 * float(radius.max()) + 3)
    return _conv_per_image(x, disk_kernels(radius, size)).clamp(0.0, 1.0)


def contrast_colour(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Contrast reduction towards the image mean (factor 0.85..0.25), per-channel colour gains
    (+- up to 30 %) and a brightness shift (+- up to 0.2)."""
    n = x.shape[0]
    u = _rand(n, gen, x, 2)
    g = _randn(n, gen, x, 3).clamp(-2.0, 2.0)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = _b(0.85 - 0.6 * sev * (0.7 + 0.3 * u[:, 0]))
    gains = (1.0 + 0.15 * _b(sev).view(n, 1) * g).view(n, 3, 1, 1)
    shift = _b(0.2 * sev * (2.0 * u[:, 1] - 1.0))
    return (((x - mean) * c + mean) * gains + shift).clamp(0.0, 1.0)


def sensor_noise(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Gaussian read noise (std 0.02..0.12) plus signal-dependent shot noise."""
    n = x.shape[0]
    read = _b(0.02 + 0.1 * sev)
    shot = _b(0.02 * sev)
    std = torch.sqrt(read * read + shot * x.clamp_min(0.0))
    return (x + std * _randn(n, gen, x, *x.shape[1:])).clamp(0.0, 1.0)


def jpeg(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """JPEG compression through ``cv2.imencode`` at quality ``round(35 - 30 s)`` (35..5)."""
    quality = torch.round(35.0 - 30.0 * sev).clamp(1, 100).to(torch.int64).tolist()
    arr = (x.detach().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(arr)
    for i, q in enumerate(quality):
        bgr = np.ascontiguousarray(arr[i][..., ::-1])
        ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(q)])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            raise RuntimeError("cv2.imencode failed")
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).to(x.dtype) / 255.0


def illumination(x: Tensor, sev: Tensor, gen: torch.Generator) -> Tensor:
    """Illumination gradient: a multiplicative field that ramps linearly along a random
    direction from ``1 - 0.75 s`` to ``1 + 0.4 s``, times (for half of the samples) a radial
    fall-off ``1 - 0.6 s (r / r_max)^2`` around a random centre (headlight / vignetting)."""
    n, _, h, w = x.shape
    u = _rand(n, gen, x, 5)
    theta = u[:, 0] * 2 * math.pi
    ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, h, 1)
    xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, w)
    proj = torch.cos(theta).view(-1, 1, 1) * xs + torch.sin(theta).view(-1, 1, 1) * ys
    ramp = (proj - proj.amin(dim=(1, 2), keepdim=True)) / (
        proj.amax(dim=(1, 2), keepdim=True) - proj.amin(dim=(1, 2), keepdim=True)
    ).clamp_min(1e-6)
    lo = (1.0 - 0.75 * sev).view(-1, 1, 1)
    hi = (1.0 + 0.4 * sev).view(-1, 1, 1)
    field = lo + (hi - lo) * ramp
    cx, cy = (2 * u[:, 1] - 1).view(-1, 1, 1), (2 * u[:, 2] - 1).view(-1, 1, 1)
    r2 = (xs - cx) ** 2 + (ys - cy) ** 2
    radial = 1.0 - 0.6 * sev.view(-1, 1, 1) * r2 / r2.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    use_radial = (u[:, 3] < 0.5).to(x.dtype).view(-1, 1, 1)
    field = field * (use_radial * radial + (1.0 - use_radial))
    return (x * field.unsqueeze(1)).clamp(0.0, 1.0)


OPERATORS: dict[str, Callable[[Tensor, Tensor, torch.Generator], Tensor]] = {
    "night": night,
    "fog": fog,
    "rain": rain,
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "contrast_colour": contrast_colour,
    "sensor_noise": sensor_noise,
    "jpeg": jpeg,
    "illumination": illumination,
}
#: the default DSC operator set (all of them)
DSC_OPS: tuple[str, ...] = tuple(OPERATORS)


@torch.no_grad()
def perturb(
    x: Tensor,
    gen: torch.Generator,
    ops: tuple[str, ...] | list[str] = DSC_OPS,
    severity: tuple[float, float] = (0.2, 1.0),
    prob: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Apply one randomly chosen operator of ``ops`` per sample at a random severity.

    Returns ``(x', op_index)``: ``op_index[b]`` indexes ``ops`` (``-1``: left clean, which
    happens with probability ``1 - prob``). Severity is uniform in ``severity``. Each operator
    runs once on the sub-batch that drew it.
    """
    unknown = [o for o in ops if o not in OPERATORS]
    if unknown or not ops:
        raise ValueError(f"unknown perturbation operator(s) {unknown}; known: {sorted(OPERATORS)}")
    n = x.shape[0]
    choice = torch.randint(len(ops), (n,), generator=gen, device=gen.device).to(x.device)
    lo, hi = float(severity[0]), float(severity[1])
    sev = lo + (hi - lo) * _rand(n, gen, x)
    keep = _rand(n, gen, x) >= prob
    choice = torch.where(keep, torch.full_like(choice, -1), choice)
    y = x.clone()
    for i, name in enumerate(ops):
        idx = (choice == i).nonzero().flatten()
        if idx.numel():
            y[idx] = OPERATORS[name](x[idx], sev[idx], gen).to(y.dtype)
    return y, choice


# --------------------------------------------------------------------------------------------
# LTD: patch masking / shuffling
# --------------------------------------------------------------------------------------------
FILL_MODES = ("mean", "shuffle", "mix")


def patch_size_for(height: int, patch_at_192: int = 16) -> int:
    """Patch side for an input of ``height`` rows: ``round(patch_at_192 * height / 192)``, >= 1
    (16 px at 192 x 640, 8 px at 96 x 320)."""
    return max(1, int(round(patch_at_192 * height / REF_HEIGHT)))


@torch.no_grad()
def patch_mask(
    x: Tensor,
    gen: torch.Generator,
    patch: int,
    ratio: tuple[float, float] = (0.15, 0.45),
    fill: str = "mix",
) -> tuple[Tensor, Tensor]:
    """Hide a random fraction ``r ~ U[ratio]`` of the ``patch x patch`` cells of each image.

    The image is cut into a grid of ``ceil(H/p) x ceil(W/p)`` cells (the last row/column may be
    partial) and ``round(r N)`` cells are chosen per image. ``fill``:

    * ``"mean"``: chosen cells get the image's mean colour;
    * ``"shuffle"``: the chosen cells' contents are permuted among the chosen cells at random
      (local texture is kept but moved to the wrong place);
    * ``"mix"``: ``"mean"`` or ``"shuffle"`` per image with probability 1/2.

    Returns ``(x', mask)`` with ``mask`` ``B x 1 x H x W`` (1 = cell chosen).
    """
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
    b, c, h, w = x.shape
    p = int(patch)
    gh, gw = -(-h // p), -(-w // p)
    n = gh * gw
    lo, hi = float(ratio[0]), float(ratio[1])
    r = lo + (hi - lo) * _rand(b, gen, x)
    k = torch.round(r * n).to(torch.int64).clamp(0, n)
    scores = _rand(b, gen, x, n)
    rank = scores.argsort(dim=1).argsort(dim=1)
    sel = rank < k.view(-1, 1)  # B x N, exactly k[b] cells

    # pad to whole cells and cut into B x N x C x p x p
    xp = F.pad(x, (0, gw * p - w, 0, gh * p - h), mode="replicate")
    cells = xp.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, n, c, p, p)

    # shuffle: chosen cells in position order <- chosen cells in random order
    big = torch.full_like(scores, float("inf"))
    by_position = torch.where(sel, torch.arange(n, device=x.device, dtype=x.dtype).expand(b, n), big).argsort(dim=1)
    by_random = torch.where(sel, _rand(b, gen, x, n), big).argsort(dim=1)
    valid = torch.arange(n, device=x.device).view(1, n) < k.view(-1, 1)
    src = torch.arange(n, device=x.device).expand(b, n).clone()
    src.scatter_(1, by_position, torch.where(valid, by_random, by_position))
    shuffled = cells.gather(1, src.view(b, n, 1, 1, 1).expand_as(cells))

    mean = x.mean(dim=(2, 3)).view(b, 1, c, 1, 1).expand_as(cells)
    if fill == "mean":
        use_mean = torch.ones(b, dtype=torch.bool, device=x.device)
    elif fill == "shuffle":
        use_mean = torch.zeros(b, dtype=torch.bool, device=x.device)
    else:
        use_mean = _rand(b, gen, x) < 0.5
    filled = torch.where(use_mean.view(b, 1, 1, 1, 1), mean, shuffled)
    out_cells = torch.where(sel.view(b, n, 1, 1, 1), filled, cells)

    def uncut(t: Tensor, ch: int) -> Tensor:
        return t.reshape(b, gh, gw, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, gh * p, gw * p)[..., :h, :w]

    mask = sel.to(x.dtype).view(b, gh, gw)
    mask = mask.repeat_interleave(p, dim=1).repeat_interleave(p, dim=2)[:, None, :h, :w]
    return uncut(out_cells, c).contiguous(), mask
