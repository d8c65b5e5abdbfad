"""KITTI-C-style image corruptions: 18 corruptions x 5 severities, seeded and deterministic.

The corruption set, names, groups and per-severity parameters are RoboDepth's KITTI-C
(``shared/DATASETS.md`` section 4.1): 15 corruptions of the ``imagecorruptions`` package
(ImageNet-C, Hendrycks & Dietterich) plus RoboDepth's own ``dark``, ``color_quant`` and
``iso_noise``. Everything here is written with NumPy, OpenCV and scikit-image only; the
``imagecorruptions`` package itself is not used (it does not run on current NumPy and
scikit-image: ``fog`` and ``glass_blur`` fail).

Input and output are ``uint8 H x W x 3`` RGB arrays of the same size; as the reference
``corrupt()`` does, a float result is clipped to ``[0, 255]`` and truncated to ``uint8``.

Randomness comes only from a ``numpy.random.Generator`` built by :func:`corruption_rng` from
``(seed, corruption, key)``, where ``key`` names the frame (``"<folder> <frame> <side>"`` in
the datasets, ``""`` for a single image), so the same inputs always give the same bytes, on
any machine, in any order, in any process. The severity is deliberately **not** part of the
seed ("common random numbers"): the five severities of one frame share their random pattern
(noise field, fog map, frost crop, snow layer, blur angle) and differ only by the parameter,
so the damage grows smoothly with the severity. ``per_severity_draws=True`` draws a fresh
pattern for every severity instead (RoboDepth's generator draws independently).

Where the implementation differs from ``imagecorruptions`` / RoboDepth (details in
``docs/robustness.md``):

* ``frost``: the package blends one of its bundled frost photographs; those files are not
  shipped here, so five frost textures are **generated procedurally** (:func:`frost_texture`:
  fractal haze + branching ice-crystal strokes, blue-white tint), then resized and cropped at a
  random position exactly as the package does with its photographs;
* ``glass_blur``: the package swaps every pixel with a random neighbour in one sequential
  raster scan (a Python/numba loop); here the same swaps (one per pixel and iteration, offsets
  drawn from the same range ``[-d, d-1]``) are applied in ``(2d+1)^2`` interleaved groups of
  non-overlapping swaps, vectorised. Same distribution of displacements, different visiting
  order; the sequential scan can carry a pixel further than ``d`` within one iteration;
* ``zoom_blur`` and the snow layer zoom about the exact image centre with OpenCV bilinear
  warps (the package zooms a centre crop with SciPy and keeps the top-left part: up to one
  pixel of shift);
* Gaussian filters are OpenCV's with the kernel radius SciPy uses (``int(truncate*sigma+0.5)``);
  ``pixelate`` uses OpenCV area (box) down-sampling and exact nearest up-sampling where the
  package uses PIL ``BOX``/``NEAREST``; ``jpeg_compression`` uses OpenCV's libjpeg encoder
  (4:2:0, like PIL) at the same quality;
* ``brightness`` adds to V in HSV through the closed form of the HSV round trip (every channel
  scaled by ``V'/V``; black pixels become grey ``V'``), equal to scikit-image's
  ``rgb2hsv``/``hsv2rgb`` path to float rounding (tested).
"""
from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np
from skimage.util import random_noise

__all__ = [
    "CORRUPTIONS",
    "GROUPS",
    "PARAMETERS",
    "SEVERITIES",
    "VERSION",
    "corrupt",
    "corruption_rng",
    "describe",
    "frost_texture",
    "grid_image",
    "resolve_conditions",
]

#: Bumped whenever an algorithm or parameter changes: robustness results record it, and results
#: of different versions are never compared.
VERSION = 1
SEVERITIES = (1, 2, 3, 4, 5)

#: RoboDepth's order and folder names (KITTI-C).
CORRUPTIONS: tuple[str, ...] = (
    "brightness", "dark", "fog", "frost", "snow", "contrast",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "elastic_transform", "color_quant",
    "gaussian_noise", "impulse_noise", "shot_noise", "iso_noise", "pixelate", "jpeg_compression",
)

GROUPS: dict[str, tuple[str, ...]] = {
    "weather & lighting": ("brightness", "dark", "fog", "frost", "snow", "contrast"),
    "sensor & movement": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "elastic_transform", "color_quant"),
    "data & processing": ("gaussian_noise", "impulse_noise", "shot_noise", "iso_noise", "pixelate", "jpeg_compression"),
}

_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
_PHOTONS = (60, 25, 12, 5, 3)

#: Per-severity parameters (severity 1 -> index 0), with what each number means in ``_MEANING``.
PARAMETERS: dict[str, tuple] = {
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "dark": tuple((c, 10 * p, 0.1 * s) for c, p, s in zip((0.6, 0.5, 0.4, 0.3, 0.2), _PHOTONS, _NOISE_SIGMA)),
    "fog": ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    "frost": ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "snow": (
        (0.1, 0.3, 3.0, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2.0, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4.0, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "zoom_blur": (
        tuple(np.arange(1, 1.11, 0.01)), tuple(np.arange(1, 1.16, 0.01)), tuple(np.arange(1, 1.21, 0.02)),
        tuple(np.arange(1, 1.26, 0.02)), tuple(np.arange(1, 1.31, 0.03)),
    ),
    "elastic_transform": tuple(250 * a for a in (0.05, 0.065, 0.085, 0.1, 0.12)),
    "color_quant": (5, 4, 3, 2, 1),
    "gaussian_noise": _NOISE_SIGMA,
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "shot_noise": _PHOTONS,
    "iso_noise": tuple((25, 0.7 * s) for s in _NOISE_SIGMA),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
}

_MEANING: dict[str, str] = {
    "brightness": "V += c in HSV",
    "dark": "(c, photons, sigma): gamma-2 remap of [min, max] to [0, c], then Poisson + Gaussian noise",
    "fog": "(thickness, wibble decay) of a plasma-fractal fog layer",
    "frost": "(image weight, frost weight) of a procedural frost texture",
    "snow": "(mean, std, zoom, threshold, blur radius, blur sigma, image weight) of the snow layer",
    "contrast": "c: (x - mean) * c + mean per channel",
    "defocus_blur": "(disk radius px, anti-alias sigma)",
    "glass_blur": "(Gaussian sigma, max shift px, iterations)",
    "motion_blur": "(radius px, sigma px), random angle in [-45, 45] deg",
    "zoom_blur": "zoom factors averaged with the image",
    "elastic_transform": "alpha (displacement gain); smoothing sigma 1% of H and W",
    "color_quant": "bits kept per channel (posterize)",
    "gaussian_noise": "sigma (image in [0, 1])",
    "impulse_noise": "salt-and-pepper amount",
    "shot_noise": "photons (Poisson rate per unit intensity)",
    "iso_noise": "(photons, Gaussian sigma)",
    "pixelate": "down-sampling factor",
    "jpeg_compression": "JPEG quality",
}

_TEXTURE_SIZE = (768, 1152)  # H, W of the procedural frost textures
_N_FROST = 5


# --------------------------------------------------------------------------------------------
# public helpers
# --------------------------------------------------------------------------------------------
def describe(name: str) -> str:
    """One line: what the parameters of ``name`` mean and their values for severities 1-5."""
    _check_name(name)
    values = "; ".join(_fmt(p) for p in PARAMETERS[name])
    return f"{_MEANING[name]}: {values}"


def _fmt(p) -> str:
    if isinstance(p, tuple) and len(p) > 7:  # zoom factors
        return f"{p[0]:.2f}..{p[-1]:.2f} ({len(p)})"
    if isinstance(p, tuple):
        return "(" + ", ".join(_fmt(v) for v in p) + ")"
    return f"{p:g}" if isinstance(p, float) else str(p)


def _check_name(name: str) -> None:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r} (known: {', '.join(CORRUPTIONS)})")


def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be an integer 1..5, got {severity!r}")
    return int(severity)


def resolve_conditions(corruptions: str | Iterable[str] = "all",
                       severities: str | int | Iterable[int] = "all") -> list[tuple[str, int]]:
    """``(name, severity)`` pairs in RoboDepth order from ``"all"``, a name, a comma-separated
    list of names or a list; severities from ``"all"``, an integer, ``"1,3"`` or a list."""
    if isinstance(corruptions, str):
        names = list(CORRUPTIONS) if corruptions == "all" else [c.strip() for c in corruptions.split(",") if c.strip()]
    else:
        names = list(corruptions)
    for n in names:
        _check_name(n)
    if isinstance(severities, str):
        sevs = list(SEVERITIES) if severities == "all" else [int(s) for s in severities.split(",") if s.strip()]
    elif isinstance(severities, (int, np.integer)):
        sevs = [int(severities)]
    else:
        sevs = [int(s) for s in severities]
    for s in sevs:
        _check_severity(s)
    order = {n: i for i, n in enumerate(CORRUPTIONS)}
    names = sorted(set(names), key=order.__getitem__)
    sevs = sorted(set(sevs))
    if not names or not sevs:
        raise ValueError("no corruption conditions selected")
    return [(n, s) for n in names for s in sevs]


def corruption_rng(seed: int, corruption: str, key: str = "", severity: int | None = None) -> np.random.Generator:
    """The generator of one (seed, corruption, frame key[, severity]): PCG64 seeded by a
    ``SeedSequence`` of ``[seed, corruption index, crc32(key), severity or 0]``."""
    _check_name(corruption)
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    entropy = [int(seed), CORRUPTIONS.index(corruption), zlib.crc32(str(key).encode("utf-8")), int(severity or 0)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def corrupt(image: np.ndarray, corruption: str, severity: int, *, seed: int = 0, key: str = "",
            rng: np.random.Generator | None = None, per_severity_draws: bool = False) -> np.ndarray:
    """Corrupt one ``uint8 H x W x 3`` RGB image; returns a new array of the same shape.

    ``rng`` overrides the generator; otherwise it is :func:`corruption_rng` of
    ``(seed, corruption, key)`` (and the severity too when ``per_severity_draws``).
    """
    _check_name(corruption)
    severity = _check_severity(severity)
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be uint8 H x W x 3 RGB, got {img.dtype} {img.shape}")
    if rng is None:
        rng = corruption_rng(seed, corruption, key, severity if per_severity_draws else None)
    out = _FUNCS[corruption](np.ascontiguousarray(img), PARAMETERS[corruption][severity - 1], rng)
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8)  # truncation, as the reference corrupt()
    return out


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def _unit(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


def _to255(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0) * np.float32(255.0)


def _gaussian(x: np.ndarray, sigma_y: float, sigma_x: float | None = None, truncate: float = 4.0,
              border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """SciPy-style Gaussian filter (kernel radius ``int(truncate*sigma + 0.5)``) with OpenCV."""
    sigma_x = sigma_y if sigma_x is None else sigma_x
    ky = 2 * int(truncate * sigma_y + 0.5) + 1
    kx = 2 * int(truncate * sigma_x + 0.5) + 1
    return cv2.GaussianBlur(x, (kx, ky), sigmaX=sigma_x, sigmaY=sigma_y, borderType=border)


def _zoom_about_centre(x: np.ndarray, factor: float) -> np.ndarray:
    """Magnify ``x`` by ``factor`` about its centre (bilinear), keeping the size."""
    h, w = x.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.array([[factor, 0.0, cx * (1 - factor)], [0.0, factor, cy * (1 - factor)]])
    return cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angle_deg: float) -> np.ndarray:
    """One-sided Gaussian-weighted sum of copies of ``x`` shifted along ``angle`` (edge pixels
    repeated), the ``imagecorruptions`` motion kernel: ``2*radius+1`` taps, tap ``i`` shifted by
    ``(-ceil(i*sin(a) - 0.5), -ceil(i*cos(a) - 0.5))`` rows/columns, weights
    ``exp(-i^2 / 2 sigma^2)`` normalised."""
    width = 2 * int(radius) + 1
    taps = np.arange(width, dtype=np.float64)
    weights = np.exp(-(taps ** 2) / (2.0 * sigma ** 2))
    weights /= weights.sum()
    s, c = math.sin(math.radians(angle_deg)), math.cos(math.radians(angle_deg))
    shifts = [(-math.ceil(i * s - 0.5), -math.ceil(i * c - 0.5)) for i in range(width)]
    pad = max(max(abs(dy), abs(dx)) for dy, dx in shifts)
    h, w = x.shape[:2]
    pad_spec = ((pad, pad), (pad, pad)) + ((0, 0),) * (x.ndim - 2)
    xp = np.pad(x.astype(np.float32, copy=False), pad_spec, mode="edge")
    out = np.zeros(x.shape, dtype=np.float32)
    for (dy, dx), wt in zip(shifts, weights):
        out += np.float32(wt) * xp[pad - dy:pad - dy + h, pad - dx:pad - dx + w]
    return out


def _plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map on a ``size x size`` torus (``size`` a power of two), scaled
    to ``[0, 1]``; the random amplitude starts at 100 and is divided by ``decay`` per level."""
    if size & (size - 1):
        raise ValueError("plasma map size must be a power of two")
    a = np.zeros((size, size), dtype=np.float64)
    step, amp = size, 100.0
    while step >= 2:
        half = step // 2
        # square step: the centre of every cell = mean of its four corners + noise
        corners = a[0:size:step, 0:size:step]
        total = corners + np.roll(corners, -1, axis=0)
        total = total + np.roll(total, -1, axis=1)
        a[half:size:step, half:size:step] = total / 4 + amp * rng.uniform(-amp, amp, total.shape)
        # diamond step: edge midpoints = mean of the two corners and two centres around them
        centres = a[half:size:step, half:size:step]
        corners = a[0:size:step, 0:size:step]
        top = (centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1))
        a[0:size:step, half:size:step] = top / 4 + amp * rng.uniform(-amp, amp, top.shape)
        left = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0))
        a[half:size:step, 0:size:step] = left / 4 + amp * rng.uniform(-amp, amp, left.shape)
        step = half
        amp /= decay
    a -= a.min()
    peak = a.max()
    return (a / peak if peak > 0 else a).astype(np.float32)


# --------------------------------------------------------------------------------------------
# weather & lighting
# --------------------------------------------------------------------------------------------
def _brightness(img, c, rng):
    x = img.astype(np.float64) / 255.0
    v = x.max(axis=2, keepdims=True)
    v_new = np.minimum(v + c, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(v > 0, x * (v_new / np.where(v > 0, v, 1)), v_new)
    return np.clip(out, 0, 1) * 255.0


def _dark(img, c, rng):
    level, photons, sigma = c
    x = img.astype(np.float64) / 255.0
    lo, hi = float(x.min()), float(x.max())
    y = ((x - lo) / (hi - lo)) ** 2 * level if hi > lo else np.zeros_like(x)
    y = np.clip(rng.poisson(y * photons) / photons, 0, 1)
    y = y + rng.normal(0.0, sigma, size=y.shape)
    return np.clip(y, 0, 1) * 255.0


def _fog(img, c, rng):
    thickness, decay = c
    h, w = img.shape[:2]
    size = 1 << max(1, (max(h, w) - 1).bit_length())
    x = _unit(img)
    peak = float(x.max())
    x = x + np.float32(thickness) * _plasma_fractal(size, decay, rng)[:h, :w, None]
    return _to255(x * np.float32(peak / (peak + thickness)))


@functools.lru_cache(maxsize=_N_FROST)
def frost_texture(index: int) -> np.ndarray:
    """Procedural frost texture ``index`` (0-4): ``uint8 768 x 1152 x 3`` RGB, read-only.

    Made for this harness (no photograph): a fractal haze (four octaves of bilinearly
    up-sampled noise), ice crystals drawn as branching anti-aliased strokes (main stems with
    side branches at +-60 deg, three size classes) with a soft glow, fine grain, and a
    blue-white tint. Each index uses its own fixed seed and density, so the five differ like
    the five photographs of the reference. Mean intensity ~0.35-0.45.
    """
    if not 0 <= int(index) < _N_FROST:
        raise ValueError(f"frost texture index must be 0..{_N_FROST - 1}")
    rng = np.random.default_rng(np.random.SeedSequence([20240501, int(index)]))
    h, w = _TEXTURE_SIZE
    haze = np.zeros((h, w), np.float32)
    for octave, amp in ((8, 0.5), (16, 0.25), (32, 0.15), (64, 0.1)):
        grid = rng.random((h // octave + 2, w // octave + 2)).astype(np.float32)
        up = cv2.resize(grid, (grid.shape[1] * octave, grid.shape[0] * octave), interpolation=cv2.INTER_CUBIC)
        haze += amp * up[:h, :w]
    haze = (haze - haze.min()) / max(float(np.ptp(haze)), 1e-6)
    # where the frost is thick: a smooth patch mask (frost grows in patches on a window)
    coarse = rng.random((h // 96 + 2, w // 96 + 2)).astype(np.float32)
    patches = cv2.resize(coarse, (coarse.shape[1] * 96, coarse.shape[0] * 96), interpolation=cv2.INTER_CUBIC)[:h, :w]
    patches = np.clip((patches - patches.min()) / max(float(np.ptp(patches)), 1e-6), 0, 1) ** 1.5
    crystals = np.zeros((h, w), np.float32)
    density = (0.6, 0.8, 1.0, 1.2, 1.4)[int(index)]
    for length, count, thick in ((90, int(14 * density), 2), (40, int(140 * density), 1), (14, int(1100 * density), 1)):
        for _ in range(count):
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            base = rng.uniform(0, np.pi)
            strength = float(rng.uniform(0.4, 1.0)) * (0.35 + 0.65 * float(patches[int(y0), int(x0)]))
            for arm in range(int(rng.integers(2, 7))):  # a star of 2-6 arms
                ang = base + arm * np.pi / 3 + rng.normal(0, 0.08)
                ln = length * rng.uniform(0.5, 1.0)
                _draw_branch(crystals, x0, y0, ang, ln, thick, strength, rng, depth=2)
    glow = cv2.GaussianBlur(crystals, (0, 0), 4.0)
    grain = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 0.8)
    t = (0.2 + 0.3 * patches) * haze + 0.5 * np.minimum(crystals, 1.0) + 0.9 * glow + 0.1 * grain
    t = np.clip(t / max(float(np.percentile(t, 99.5)), 1e-6), 0, 1)
    tint = np.array([0.80, 0.90, 1.0], np.float32)
    rgb = np.clip(t[..., None] * tint + 0.04 * t[..., None] ** 3, 0, 1)
    out = (rgb * 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def _draw_branch(canvas, x0, y0, ang, length, thick, value, rng, depth):
    x1, y1 = x0 + length * math.cos(ang), y0 + length * math.sin(ang)
    shift = 4  # sub-pixel precision of cv2.line
    p0 = (int(round(x0 * (1 << shift))), int(round(y0 * (1 << shift))))
    p1 = (int(round(x1 * (1 << shift))), int(round(y1 * (1 << shift))))
    cv2.line(canvas, p0, p1, value, thick, cv2.LINE_AA, shift)
    if depth == 0 or length < 6:
        return
    for _ in range(int(rng.integers(1, 4))):
        t = rng.uniform(0.25, 0.85)
        bx, by = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        side = 1 if rng.random() < 0.5 else -1
        _draw_branch(canvas, bx, by, ang + side * np.pi / 3, length * rng.uniform(0.25, 0.45), 1,
                     value * 0.8, rng, depth - 1)


def _frost(img, c, rng):
    img_w, frost_w = c
    h, w = img.shape[:2]
    tex = frost_texture(int(rng.integers(_N_FROST)))
    th, tw = tex.shape[:2]
    # as the reference: scale the texture up only when it is smaller than the image, times 1.1
    scale = max(1.0, h / th, w / tw) * 1.1
    tex = cv2.resize(tex, (int(np.ceil(tw * scale)), int(np.ceil(th * scale))), interpolation=cv2.INTER_CUBIC)
    y0 = int(rng.integers(0, tex.shape[0] - h))
    x0 = int(rng.integers(0, tex.shape[1] - w))
    crop = tex[y0:y0 + h, x0:x0 + w].astype(np.float32)
    return np.clip(img_w * img.astype(np.float32) + frost_w * crop, 0, 255)


def _snow(img, c, rng):
    mean, std, zoom, threshold, radius, sigma, keep = c
    h, w = img.shape[:2]
    x = _unit(img)
    layer = rng.normal(mean, std, size=(h, w)).astype(np.float32)
    layer = _zoom_about_centre(layer, zoom)
    layer[layer < threshold] = 0
    layer = np.clip(layer, 0, 1)
    layer = _motion_blur(layer, radius, sigma, float(rng.uniform(-135, -45)))
    layer = (np.round(layer * 255).astype(np.uint8).astype(np.float32) / 255.0)[..., None]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = keep * x + (1 - keep) * np.maximum(x, gray * 1.5 + 0.5)
    return _to255(x + layer + layer[::-1, ::-1])


def _contrast(img, c, rng):
    x = _unit(img)
    mean = x.mean(axis=(0, 1), keepdims=True, dtype=np.float64).astype(np.float32)
    return _to255((x - mean) * np.float32(c) + mean)


# --------------------------------------------------------------------------------------------
# sensor & movement
# --------------------------------------------------------------------------------------------
def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    if radius <= 8:
        coords, ksize = np.arange(-8, 9), (3, 3)
    else:
        coords, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(coords, coords)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize, sigmaX=alias_blur)


def _defocus_blur(img, c, rng):
    return _to255(cv2.filter2D(_unit(img), -1, _disk_kernel(*c)))


def _local_shuffle(x: np.ndarray, delta: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Swap every pixel (rows ``delta+1..H-delta``, same for columns) with the one at a random
    offset in ``[-delta, delta-1]^2``, ``iterations`` times. The swaps of one iteration are
    applied in ``(2 delta + 1)^2`` groups (pixels congruent modulo ``2 delta + 1``) whose swaps
    never touch the same pixel, so each group is one vectorised exchange."""
    h, w = x.shape[:2]
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    if rows.size == 0 or cols.size == 0:
        return x
    flat = x.reshape(h * w, -1).copy()
    period = 2 * delta + 1
    for _ in range(iterations):
        offsets = rng.integers(-delta, delta, size=(rows.size, cols.size, 2))  # (dx, dy) per pixel
        for pr in range(period):
            ri = np.flatnonzero(rows % period == pr)
            if ri.size == 0:
                continue
            for pc in range(period):
                ci = np.flatnonzero(cols % period == pc)
                if ci.size == 0:
                    continue
                rr, cc = np.meshgrid(ri, ci, indexing="ij")
                src = rows[rr] * w + cols[cc]
                off = offsets[rr, cc]
                dst = (rows[rr] + off[..., 1]) * w + cols[cc] + off[..., 0]
                src, dst = src.ravel(), dst.ravel()
                keep = flat[src].copy()
                flat[src] = flat[dst]
                flat[dst] = keep
    return flat.reshape(x.shape)


def _glass_blur(img, c, rng):
    sigma, delta, iterations = c
    x = (np.clip(_gaussian(_unit(img), sigma), 0, 1) * 255).astype(np.uint8)
    x = _local_shuffle(x, int(delta), int(iterations), rng)
    return _to255(_gaussian(_unit(x), sigma))


def _motion(img, c, rng):
    radius, sigma = c
    angle = float(rng.uniform(-45, 45))
    return np.clip(_motion_blur(img.astype(np.float32), radius, sigma, angle), 0, 255)


def _zoom_blur(img, c, rng):
    x = _unit(img)
    out = np.zeros_like(x)
    for z in c:
        out += _zoom_about_centre(x, float(z))
    return _to255((x + out) / (len(c) + 1))


def _elastic(img, alpha, rng):
    h, w = img.shape[:2]
    sigma_y, sigma_x = 0.01 * h, 0.01 * w
    limit = 0.005 * h
    field = []
    for _ in range(2):  # dx, then dy (the reference's draw order)
        noise = rng.uniform(-limit, limit, size=(h, w)).astype(np.float32)
        field.append(_gaussian(noise, sigma_y, sigma_x, truncate=3.0, border=cv2.BORDER_REFLECT) * np.float32(alpha))
    dx, dy = field
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(_unit(img), gx + dx, gy + dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return _to255(out)


def _color_quant(img, bits, rng):
    mask = np.uint8((0xFF << (8 - int(bits))) & 0xFF)
    return img & mask


# --------------------------------------------------------------------------------------------
# data & processing
# --------------------------------------------------------------------------------------------
def _gaussian_noise(img, sigma, rng):
    x = img.astype(np.float64) / 255.0
    return np.clip(x + rng.normal(0.0, sigma, size=x.shape), 0, 1) * 255.0


def _impulse_noise(img, amount, rng):
    x = random_noise(img.astype(np.float64) / 255.0, mode="s&p", amount=amount, rng=rng)
    return np.clip(x, 0, 1) * 255.0


def _shot_noise(img, photons, rng):
    x = img.astype(np.float64) / 255.0
    return np.clip(rng.poisson(x * photons) / float(photons), 0, 1) * 255.0


def _iso_noise(img, c, rng):
    photons, sigma = c
    x = img.astype(np.float64) / 255.0
    x = np.clip(rng.poisson(x * photons) / float(photons), 0, 1)
    return np.clip(x + rng.normal(0.0, sigma, size=x.shape), 0, 1) * 255.0


def _pixelate(img, factor, rng):
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, int(w * factor)), max(1, int(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def _jpeg(img, quality, rng):
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


_FUNCS: dict[str, Callable[[np.ndarray, object, np.random.Generator], np.ndarray]] = {
    "brightness": _brightness, "dark": _dark, "fog": _fog, "frost": _frost, "snow": _snow,
    "contrast": _contrast, "defocus_blur": _defocus_blur, "glass_blur": _glass_blur,
    "motion_blur": _motion, "zoom_blur": _zoom_blur, "elastic_transform": _elastic,
    "color_quant": _color_quant, "gaussian_noise": _gaussian_noise, "impulse_noise": _impulse_noise,
    "shot_noise": _shot_noise, "iso_noise": _iso_noise, "pixelate": _pixelate, "jpeg_compression": _jpeg,
}
assert tuple(_FUNCS) == CORRUPTIONS


# --------------------------------------------------------------------------------------------
# the picture
# --------------------------------------------------------------------------------------------
def grid_image(image: np.ndarray, *, seed: int = 0, key: str = "", corruptions: Sequence[str] = CORRUPTIONS,
               severities: Sequence[int] = SEVERITIES, cell_width: int | None = None) -> np.ndarray:
    """One row per corruption: the clean image, then severities 1-5, labelled; ``uint8`` RGB.
    Cells are resized to ``cell_width`` (keeping the aspect ratio) after corrupting."""
    h, w = image.shape[:2]
    cw = int(cell_width or w)
    ch = max(1, round(h * cw / w))
    zoom = max(1.0, cw / 320)
    label_h, font, thick = int(round(18 * zoom)), 0.45 * zoom, max(1, int(round(zoom)))
    rows = []
    header = np.full((label_h, cw * (len(severities) + 1), 3), 255, np.uint8)
    for j, title in enumerate(["clean", *(f"severity {s}" for s in severities)]):
        cv2.putText(header, title, (j * cw + 4, label_h - int(5 * zoom)), cv2.FONT_HERSHEY_SIMPLEX, font,
                    (0, 0, 0), thick, cv2.LINE_AA)
    rows.append(header)

    def cell(img):
        return cv2.resize(img, (cw, ch), interpolation=cv2.INTER_AREA) if (ch, cw) != (h, w) else img

    for name in corruptions:
        cells = [cell(image)] + [cell(corrupt(image, name, s, seed=seed, key=key)) for s in severities]
        row = np.concatenate(cells, axis=1)
        band = np.full((label_h, row.shape[1], 3), 255, np.uint8)
        cv2.putText(band, name, (4, label_h - int(5 * zoom)), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick,
                    cv2.LINE_AA)
        rows += [band, row]
    return np.concatenate(rows, axis=0)
