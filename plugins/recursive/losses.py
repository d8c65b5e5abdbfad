"""RSD loss terms (docs/methods.md 3.3 and 3.4), built on the harness toolkit.

Disparities are dicts ``{scale i: B x 2 x h_i x w_i}`` of width-normalised two-channel maps
(channel 0 = left view ``d~^l``, channel 1 = right view ``d~^r``); image pyramids are lists
``[I^0, I^1, ...]`` matching those scales. Every function returns an unweighted scalar; the
strategy applies the configured weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.distill.geometry import warp_stereo
from harness.distill.losses import feature_distance, lr_consistency, photometric_error, smoothness

__all__ = [
    "appearance_loss",
    "feature_loss",
    "lr_loss",
    "mono_self_terms",
    "nonlocal_loss",
    "output_loss",
    "scale_pyramid",
    "smoothness_loss",
    "stereo_self_terms",
]


def scale_pyramid(img: Tensor, num_scales: int = 4) -> list[Tensor]:
    """``[I, I/2, I/4, ...]`` by area down-sampling (``tf.image.resize_area``), ``h // 2^i``."""
    h, w = img.shape[-2:]
    return [img] + [F.interpolate(img, size=(h // 2**i, w // 2**i), mode="area") for i in range(1, num_scales)]


def _scales(disp: dict[int, Tensor]) -> list[int]:
    return sorted(disp)


def appearance_loss(disp: dict[int, Tensor], left: list[Tensor], right: list[Tensor], alpha: float = 0.85) -> Tensor:
    """``L_ap = sum_i sum_{v in l, r} mean[alpha (1 - SSIM_3x3(I^_v, I_v)) / 2 + (1 - alpha) |I^_v - I_v|]``

    with ``I^_l = W_x(I_r, -d~^l)`` (``warp_stereo(..., "r2l")``) and ``I^_r = W_x(I_l, +d~^r)``
    (``"l2r"``), border padding; :func:`harness.distill.losses.photometric_error` per pixel.
    """
    total = []
    for i in _scales(disp):
        d = disp[i]
        l_est = warp_stereo(right[i], d[:, :1], "r2l", normalised=True)
        r_est = warp_stereo(left[i], d[:, 1:2], "l2r", normalised=True)
        total.append(photometric_error(l_est, left[i], alpha).mean() + photometric_error(r_est, right[i], alpha).mean())
    return torch.stack(total).sum()


def lr_loss(disp: dict[int, Tensor]) -> Tensor:
    """``L_lr = sum_i [mean|d~^l - W_x(d~^r, -d~^l)| + mean|d~^r - W_x(d~^l, +d~^r)|]``."""
    return torch.stack(
        [lr_consistency(disp[i][:, :1], disp[i][:, 1:2], normalised=True) for i in _scales(disp)]
    ).sum()


def smoothness_loss(disp: dict[int, Tensor], left: list[Tensor], right: list[Tensor]) -> Tensor:
    """``L_sm = sum_i 2^-i sum_v [mean(|dxx d~^v| e^-mean_c|dxx I_v|) + mean(|dyy d~^v| e^-mean_c|dyy I_v|)]``
    (second order, edge-aware, no mean normalisation; ``smoothness(order=2)``)."""
    return torch.stack(
        [
            (smoothness(disp[i][:, :1], left[i], order=2) + smoothness(disp[i][:, 1:2], right[i], order=2)) / 2**i
            for i in _scales(disp)
        ]
    ).sum()


def mono_self_terms(disp: dict[int, Tensor], left: list[Tensor], right: list[Tensor],
                    alpha: float = 0.85) -> dict[str, Tensor]:
    """Mono-Net's self-supervised terms ``{"ap", "lr", "sm"}`` (unweighted)."""
    return {"ap": appearance_loss(disp, left, right, alpha), "lr": lr_loss(disp),
            "sm": smoothness_loss(disp, left, right)}


def stereo_self_terms(iterations: list[dict[int, Tensor]], final: dict[int, Tensor], left, right,
                      alpha: float = 0.85) -> dict[str, Tensor]:
    """Stereo-Net's terms: ``L_ap`` and ``L_lr`` averaged over the iterations' estimates,
    ``L_sm`` on the final estimate only. ``left`` / ``right`` are images or pyramids."""
    if isinstance(left, Tensor):
        n = len(final)
        left, right = scale_pyramid(left, n), scale_pyramid(right, n)
    if not iterations:
        raise ValueError("stereo_self_terms needs at least one iteration")
    ap = torch.stack([appearance_loss(d, left, right, alpha) for d in iterations]).mean()
    lr = torch.stack([lr_loss(d) for d in iterations]).mean()
    return {"ap": ap, "lr": lr, "sm": smoothness_loss(final, left, right)}


def output_loss(student: dict[int, Tensor], teacher: dict[int, Tensor]) -> Tensor:
    """Output-space distillation ``L_out = sum_i mean|d~_M^{l,i} - sg(d~_S^{l,i})|`` (left channel)."""
    return torch.stack(
        [(student[i][:, :1] - teacher[i][:, :1].detach()).abs().mean() for i in _scales(student)]
    ).sum()


def feature_loss(student: dict[str, Tensor], teacher: dict[str, Tensor], names, stop_grad: bool = True) -> Tensor:
    """Feature-space distillation ``L_feat = sum_k mean|F_M^k - F_S^k|`` over ``names``
    (``feature_distance(p=1)``); ``sg`` on the teacher when ``stop_grad`` (default [D]; the
    release back-propagates into the Stereo-Net too)."""
    terms = []
    for k in names:
        t = teacher[k].detach() if stop_grad else teacher[k]
        terms.append(feature_distance(student[k], t, p=1))
    return torch.stack(terms).sum()


def nonlocal_loss(student: dict[str, Tensor], teacher: dict[str, Tensor], names, stop_grad: bool = True) -> Tensor:
    """Long-range dependency distillation ``L_nl = sum_k mean|A_M^k - A_S^k|`` over affinity
    maps (``B x HW x HW``); ``sg`` on the teacher when ``stop_grad``."""
    terms = []
    for k in names:
        t = teacher[k].detach() if stop_grad else teacher[k]
        if student[k].shape != t.shape:
            raise ValueError(f"affinity {k}: shapes differ {tuple(student[k].shape)} vs {tuple(t.shape)}")
        terms.append((student[k] - t).abs().mean())
    return torch.stack(terms).sum()
