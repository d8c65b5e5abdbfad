"""KITTI-C image corruptions: 18 corruptions x 5 severities, seeded and deterministic.

The corruption set, names, groups and per-severity parameters are RoboDepth's KITTI-C
(``docs/robustness.md``): the 15 ImageNet-C corruptions (Hendrycks & Dietterich),
run by ``imagecorruptions-imaug`` (the maintained fork of ``imagecorruptions``, the package
RoboDepth builds KITTI-C with; its frost photographs included), plus RoboDepth's own ``dark``,
``color_quant`` and ``iso_noise`` (:data:`OWN`), written here after RoboDepth's
``corruptions/utils.py``. :data:`PARAMETERS` lists the values both use (for ``describe`` and
the docs); the library applies its own copy of the 15.

Input and output are ``uint8 H x W x 3`` RGB arrays of the same size; as the reference
``corrupt()`` does, a float result is clipped to ``[0, 255]`` and truncated to ``uint8``.

Randomness comes only from a ``numpy.random.Generator`` built by :func:`corruption_rng` from
``(seed, corruption, key)``, where ``key`` names the frame (``"<folder> <frame> <side>"`` in
the datasets, ``""`` for a single image), so the same inputs always give the same bytes, on
any machine, in any order, in any process. For the library's corruptions one 32-bit seed is
drawn from that generator and NumPy's global state (and the ``seed`` argument of
``glass_blur`` / ``impulse_noise``) is seeded with it for the one call, then restored. The
severity is deliberately **not** part of the seed ("common random numbers"): the five
severities of one frame share their random pattern (noise field, fog map, frost photograph and
crop, snow layer, blur angle) and differ only by the parameter, so the damage grows smoothly
with the severity. ``per_severity_draws=True`` draws a fresh pattern for every severity
instead (RoboDepth's generator draws independently).
"""
from __future__ import annotations

import functools
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "CORRUPTIONS",
    "GROUPS",
    "PARAMETERS",
    "SEVERITIES",
    "VERSION",
    "corrupt",
    "corruption_rng",
    "OWN",
    "describe",
    "grid_image",
    "resolve_conditions",
]

#: Bumped whenever an algorithm or parameter changes: robustness results record it, and results
#: of different versions are never compared.
VERSION = 2
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
    "frost": "(image weight, frost weight) of one of the six reference frost photographs",
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
    img = np.ascontiguousarray(img)
    if corruption in _OWN_FUNCS:
        out = _OWN_FUNCS[corruption](img, PARAMETERS[corruption][severity - 1], rng)
    else:
        out = _reference(corruption)(img, severity, rng)
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8)  # truncation, as the reference corrupt()
    return out


# --------------------------------------------------------------------------------------------
# the 15 ImageNet-C corruptions: imagecorruptions-imaug, seeded per image
# --------------------------------------------------------------------------------------------
#: The library draws from NumPy's global random state (and ``glass_blur`` from numba's, seeded by
#: its ``seed`` argument; ``impulse_noise`` from a Generator built from its ``seed``). One call at a
#: time seeds that state from the frame's generator and restores it afterwards.
_GLOBAL_STATE = threading.Lock()
_SEED_ARGUMENT = frozenset({"glass_blur", "impulse_noise"})


@functools.lru_cache(maxsize=1)
def _library() -> dict[str, Callable]:
    """``imagecorruptions.corruption_dict`` (imported on first use: it pulls in numba and SciPy)."""
    from imagecorruptions import corruption_dict
    return corruption_dict


def _reference(name: str):
    def run(img, severity, rng):
        seed = int(rng.integers(0, 2 ** 32))
        kwargs = {"seed": seed} if name in _SEED_ARGUMENT else {}
        with _GLOBAL_STATE:
            saved = np.random.get_state()
            np.random.seed(seed)
            try:
                return np.asarray(_library()[name](Image.fromarray(img), severity, **kwargs))
            finally:
                np.random.set_state(saved)
    return run


# --------------------------------------------------------------------------------------------
# RoboDepth's three extras (``corruptions/utils.py`` of RoboDepth: low_light, color_quant, iso_noise)
# --------------------------------------------------------------------------------------------
def _dark(img, c, rng):
    level, photons, sigma = c
    x = img.astype(np.float64) / 255.0
    lo, hi = float(x.min()), float(x.max())
    y = ((x - lo) / (hi - lo)) ** 2 * level if hi > lo else np.zeros_like(x)
    y = np.clip(rng.poisson(y * photons) / photons, 0, 1)
    y = y + rng.normal(0.0, sigma, size=y.shape)
    return np.clip(y, 0, 1) * 255.0


def _color_quant(img, bits, rng):
    mask = np.uint8((0xFF << (8 - int(bits))) & 0xFF)
    return img & mask


def _iso_noise(img, c, rng):
    photons, sigma = c
    x = img.astype(np.float64) / 255.0
    x = np.clip(rng.poisson(x * photons) / float(photons), 0, 1)
    return np.clip(x + rng.normal(0.0, sigma, size=x.shape), 0, 1) * 255.0


#: The project's own code: RoboDepth's extras only (not in ImageNet-C).
OWN: tuple[str, ...] = ("dark", "color_quant", "iso_noise")
_OWN_FUNCS = {"dark": _dark, "color_quant": _color_quant, "iso_noise": _iso_noise}


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
