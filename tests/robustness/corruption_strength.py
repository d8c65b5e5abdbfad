"""Corruption strength against the reference: mean |change| (8-bit levels) per corruption and
severity on a natural photograph, ours / reference.

The reference is what RoboDepth builds KITTI-C with: ``imagecorruptions`` for the 15 ImageNet-C
corruptions (called directly, on NumPy's global random state seeded differently from ours, so the
ratio also shows that the per-frame seeding changes only the draw, not the strength) and, for
``dark``, ``color_quant`` and ``iso_noise``, RoboDepth's ``corruptions/utils.py`` formulas written
out below on the global state, with PIL's ``posterize`` for ``color_quant``.

Random corruptions are averaged over draws (:func:`strength_table`).
``python -m tests.robustness.corruption_strength`` prints the markdown table of docs/robustness.md.
"""
from __future__ import annotations

import numpy as np
import PIL.ImageOps
import skimage.data
from PIL import Image

from harness.data import corruptions as C

_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)


def _robodepth(img: np.ndarray, name: str, severity: int) -> np.ndarray:
    x = img / 255.0
    if name == "color_quant":
        return np.asarray(PIL.ImageOps.posterize(Image.fromarray(img), 5 - severity + 1))
    if name == "dark":
        level = (0.6, 0.5, 0.4, 0.3, 0.2)[severity - 1]
        x = ((x - x.min()) / (x.max() - x.min())) ** 2 * level
        photons, sigma = 10 * (60, 25, 12, 5, 3)[severity - 1], 0.1 * _SIGMA[severity - 1]
    else:  # iso_noise
        photons, sigma = 25, 0.7 * _SIGMA[severity - 1]
    x = np.clip(np.random.poisson(x * photons) / photons, 0, 1)
    return np.uint8(np.clip(x + np.random.normal(size=x.shape, scale=sigma), 0, 1) * 255)


def reference(img: np.ndarray, name: str, severity: int, seed: int = 12345) -> np.ndarray:
    """The reference output for ``name`` at ``severity`` (global NumPy state seeded with ``seed``)."""
    np.random.seed(seed)
    if name in C.OWN:
        return _robodepth(img, name, severity)
    import imagecorruptions

    kwargs = {"seed": seed} if name in ("glass_blur", "impulse_noise") else {}
    return imagecorruptions.corrupt(img, corruption_name=name, severity=severity, **kwargs)


def mean_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def natural_image() -> np.ndarray:
    """scikit-image's ``chelsea`` (a 300 x 451 photograph)."""
    return np.ascontiguousarray(skimage.data.chelsea())


#: the corruptions whose output does not depend on the random draw: one draw measures them
DETERMINISTIC = frozenset({"brightness", "contrast", "defocus_blur", "zoom_blur", "color_quant", "pixelate",
                           "jpeg_compression"})


def strength_table(img: np.ndarray | None = None, draws: int = 10) -> dict[str, list[tuple[float, float]]]:
    """``{corruption: [(ours, reference) mean |change| for severities 1..5]}``, each the mean over
    ``draws`` random draws (frames ``chelsea 0..`` for ours, global seeds ``12345..`` for the
    reference): which of the six frost photographs is drawn alone moves one frost draw by 2x."""
    img = natural_image() if img is None else img
    table = {}
    for name in C.CORRUPTIONS:
        n = 1 if name in DETERMINISTIC else draws
        table[name] = [(np.mean([mean_change(C.corrupt(img, name, s, seed=0, key=f"chelsea {i}"), img)
                                 for i in range(n)]),
                        np.mean([mean_change(reference(img, name, s, seed=12345 + i), img) for i in range(n)]))
                       for s in C.SEVERITIES]
    return table


def markdown(table: dict[str, list[tuple[float, float]]]) -> str:
    lines = ["| corruption | code | " + " | ".join(f"severity {s}" for s in C.SEVERITIES) + " |",
             "|---|---|" + "---|" * len(C.SEVERITIES)]
    for name, row in table.items():
        code = "own (RoboDepth's)" if name in C.OWN else "imagecorruptions"
        cells = [f"{ours:.1f} / {ref:.1f} ({ours / ref:.2f})" for ours, ref in row]
        lines.append(f"| `{name}` | {code} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(strength_table()))
