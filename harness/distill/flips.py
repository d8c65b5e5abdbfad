"""Mirrored training samples and canonical stereo pairs.

A dataset may mirror a training sample (its ``flip_mode``): ``"mirror"`` mirrors every view and
keeps their roles, so the partner view ``image_right`` then lies to the *left* of ``image``;
``"swap"`` mirrors and swaps the two views, so the pair stays canonical (partner on the right).
A split line with side ``r`` targets the right camera, whose partner (the left camera) lies on
the left as well. ``meta["flipped"]``, ``meta["swapped"]`` and ``meta["side"]`` tell the cases
apart: the partner lies on the left exactly when ``(side == "r") xor swapped xor flipped``, for
the usual left-camera split ``flipped & ~swapped``.

A stereo network trained on canonical pairs (partner on the right) must be given canonical
pairs. :func:`canonical` mirrors the samples whose partner lies on the left, which makes them
canonical, and :func:`mirror_back` mirrors what the network returns for them back into the
sample's own frame::

    canon, mask = canonical(batch)
    out = mirror_back(teacher(canon), mask)

:meth:`harness.Strategy.teacher_forward` does exactly this for frozen stereo teachers, so a
method that keeps the default never sees the difference. A batch without ``meta`` is taken as
canonical.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor

from harness.types import DepthOutput

__all__ = ["canonical", "flip_where", "mirror_back", "mirror_intrinsics", "partner_on_left", "reads_pair",
           "run_canonical"]

#: batch keys holding ``B x ... x H x W`` maps that follow the image when it is mirrored
IMAGE_KEYS = ("image", "image_right", "depth_gt", "depth_gt_mask", "semantic", "pseudo_depth",
              "proxy_disp", "proxy_conf")
#: batch keys holding ``B x 4 x 4`` camera transforms (a single one, or a dict of them)
TRANSFORM_KEYS = ("T_l2r", "T_t2s")

_T = TypeVar("_T", Tensor, DepthOutput)


def _bools(value: Any, b: int, device) -> Tensor:
    if value is None:
        return torch.zeros(b, dtype=torch.bool, device=device)
    return torch.as_tensor(value, device=device).bool().reshape(b)


def partner_on_left(batch: Mapping[str, Any], batch_size: int | None = None, device=None) -> Tensor:
    """``B`` bool: the samples whose ``image_right`` lies to the left of ``image`` (not a
    canonical stereo pair), from ``meta["flipped"/"swapped"/"side"]``; all False without ``meta``.

    ``batch_size`` and ``device`` default to those of ``batch["image"]``.
    """
    img = batch.get("image")
    if batch_size is None:
        batch_size = int(img.shape[0])
    if device is None and torch.is_tensor(img):
        device = img.device
    meta = batch.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    flipped = _bools(meta.get("flipped"), batch_size, device)
    swapped = _bools(meta.get("swapped"), batch_size, device)
    side = meta.get("side")
    if isinstance(side, str):
        side = [side] * batch_size
    right = _bools(None if side is None else [s == "r" for s in side], batch_size, device)
    return right ^ swapped ^ flipped


def flip_where(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror (last axis) the samples of ``x`` (``B x ...``) where ``mask`` (``B`` bool) is set."""
    if not bool(mask.any()):
        return x
    sel = mask.to(x.device).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(sel, torch.flip(x, dims=[-1]), x)


def mirror_intrinsics(K: Tensor, mask: Tensor, width: int) -> Tensor:
    """``B x 3 x 3`` intrinsics of the mirrored image for the samples in ``mask``
    (``cx -> W - 1 - cx``, skew negated; its own inverse)."""
    if not bool(mask.any()):
        return K
    K2 = K.clone()
    K2[:, 0, 2] = width - 1 - K[:, 0, 2]
    K2[:, 0, 1] = -K[:, 0, 1]
    return torch.where(mask.to(K.device).view(-1, 1, 1), K2, K)


def _mirror_transform(T: Tensor, mask: Tensor) -> Tensor:
    """``M T M`` with ``M = diag(-1, 1, 1, 1)`` for the samples in ``mask`` (``B x 4 x 4``)."""
    m = torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=T.dtype, device=T.device)
    mirrored = T * m.view(4, 1) * m.view(1, 4)
    return torch.where(mask.to(T.device).view(-1, 1, 1), mirrored, T)


def canonical(batch: Mapping[str, Any]) -> tuple[dict[str, Any], Tensor]:
    """A copy of ``batch`` in which every sample is a canonical stereo pair, and the mask of the
    samples that were mirrored to make it so (``B`` bool, see :func:`partner_on_left`).

    For those samples the image-like keys (``image``, ``image_right``, ``frames``, GT and
    precomputed maps) are mirrored, ``K``/``K_inv`` and the camera transforms (``T_l2r``,
    ``T_t2s``) follow the mirror, and ``meta["flipped"]`` is toggled, so ``canonical`` of the
    result masks nothing. Other keys are passed on as they are. ``batch`` is not changed.
    """
    mask = partner_on_left(batch)
    out = dict(batch)
    if not bool(mask.any()):
        return out, mask
    width = batch["image"].shape[-1]
    for key in IMAGE_KEYS:
        if torch.is_tensor(out.get(key)):
            out[key] = flip_where(out[key], mask)
    if isinstance(out.get("frames"), Mapping):
        out["frames"] = {k: flip_where(v, mask) for k, v in out["frames"].items()}
    if torch.is_tensor(out.get("K")):
        out["K"] = mirror_intrinsics(out["K"], mask, width)
    if torch.is_tensor(out.get("K_inv")):
        out["K_inv"] = torch.linalg.inv(mirror_intrinsics(torch.linalg.inv(out["K_inv"]), mask, width))
    for key in TRANSFORM_KEYS:
        value = out.get(key)
        if torch.is_tensor(value):
            out[key] = _mirror_transform(value, mask)
        elif isinstance(value, Mapping):
            out[key] = {k: _mirror_transform(v, mask) for k, v in value.items()}
    meta = dict(out.get("meta") or {})
    meta["flipped"] = _bools(meta.get("flipped"), mask.shape[0], mask.device) ^ mask
    out["meta"] = meta
    return out, mask


def mirror_back(output: _T, mask: Tensor) -> _T:
    """Mirror the outputs of the samples in ``mask`` back into their own frame: a tensor or every
    tensor of a :class:`~harness.DepthOutput` with a batch axis of ``len(mask)`` and at least 3
    dimensions (maps; per-sample vectors pass as they are)."""
    if not bool(mask.any()):
        return output
    b = mask.shape[0]

    def back(t: Tensor) -> Tensor:
        return flip_where(t, mask) if t.dim() >= 3 and t.shape[0] == b else t

    return back(output) if torch.is_tensor(output) else output.map(back)


def reads_pair(model, batch: Mapping[str, Any]) -> bool:
    """Whether ``model`` is a stereo network: its ``input_keys`` include ``image_right`` (one
    that declares no ``input_keys``: whether ``batch`` has that view)."""
    keys = getattr(model, "input_keys", None)
    return "image_right" in (batch if keys is None else keys)


def run_canonical(model, batch: Mapping[str, Any]) -> DepthOutput:
    """``model(canonical(batch))`` with its outputs mirrored back: a stereo network on mirrored
    samples. Gradients flow as the caller's grad mode says."""
    canon, mask = canonical(batch)
    return mirror_back(model(canon), mask)
