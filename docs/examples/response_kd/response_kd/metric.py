"""A per-image metric: ``mean |log pred - log gt|`` over the protocol's valid pixels."""
from __future__ import annotations

import torch
from torch import Tensor


def abs_log(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """``B x 1 x H x W`` depths after the protocol's scaling and clamping and its valid mask ->
    one value per image (NaN for an image without valid pixels)."""
    err = (torch.log(pred.clamp_min(1e-6)) - torch.log(gt.clamp_min(1e-6))).abs()
    m = mask.to(err.dtype)
    return (err * m).flatten(1).sum(1) / m.flatten(1).sum(1)
