"""Modules and schedules the SS-MDE strategy owns (docs/methods.md 5.3, 5.4(c), 5.4(e)).

* :class:`PoseNet` — the lightweight pose network of the public video toolkit
  (``harness.distill.video``; re-exported here).
* :class:`MaskRefiner` — the optional learned part of the multi-view mask filter (off by default).
* :func:`forgetting_factor` — the pseudo-supervision weight ``phi(e)``.
* :func:`snapshot_teacher` / :func:`ema_update` — the self-distillation teacher.

All modules are dropped at test time; evaluation uses the harness student alone.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from harness.distill.video import PoseNet

__all__ = ["MaskRefiner", "PoseNet", "ema_update", "forgetting_factor", "snapshot_teacher"]

class MaskRefiner(nn.Module):
    """Optional learned refiner of the multi-view mask filter (docs/methods.md 5.4(e) item 4).

    Three convs (3x3, 3x3, 1x1) on ``[I_t (3), log D_T (1), teacher consistency (1),
    teacher photometric error (1), student photometric error (1)]`` -> sigmoid soft mask
    ``M~`` in (0, 1), ``B x 1 x H x W``. Its last conv starts at zero bias and zero weights, so
    ``M~`` starts at 0.5 everywhere.
    """

    in_channels = 7

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(self.in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 1, 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, image: Tensor, log_depth: Tensor, consistency: Tensor, err_teacher: Tensor,
                err_student: Tensor) -> Tensor:
        x = torch.cat([image, log_depth, consistency, err_teacher, err_student], dim=1)
        return torch.sigmoid(self.net(x))


def forgetting_factor(epoch: int, mode: str = "exponential", phi0: float = 1.0, decay: float = 0.9,
                      total_epochs: int | None = None, linear_fraction: float = 0.5) -> float:
    """Weight ``phi(e)`` of the pseudo-supervision at (0-based, global) epoch ``e``.

    ``"exponential"`` (default [D]): ``phi0 * decay**e``.
    ``"linear"``: ``phi0 * max(0, 1 - e / E_f)`` with ``E_f = linear_fraction * total_epochs``
    (needs ``total_epochs``). ``"constant"``: ``phi0`` (ablation: no forgetting).
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if mode == "exponential":
        return float(phi0) * float(decay) ** int(epoch)
    if mode == "linear":
        if not total_epochs:
            raise ValueError("forgetting='linear' needs total_epochs")
        e_f = float(linear_fraction) * float(total_epochs)
        if e_f <= 0:
            return 0.0
        return float(phi0) * max(0.0, 1.0 - epoch / e_f)
    if mode == "constant":
        return float(phi0)
    raise ValueError(f"forgetting must be 'exponential', 'linear' or 'constant', got {mode!r}")


def snapshot_teacher(student: nn.Module) -> nn.Module:
    """A frozen deep copy of ``student``: eval mode, no parameter requires a gradient."""
    teacher = copy.deepcopy(student)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``theta_T <- m theta_T + (1 - m) theta_S`` for parameters and floating-point buffers
    (BatchNorm running statistics); integer buffers (``num_batches_tracked``) are copied."""
    if not 0.0 <= momentum <= 1.0 or math.isnan(momentum):
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.mul_(momentum).add_(ps.detach().to(pt.dtype), alpha=1.0 - momentum)
    for bt, bs in zip(teacher.buffers(), student.buffers()):
        if bt.dtype.is_floating_point:
            bt.mul_(momentum).add_(bs.detach().to(bt.dtype), alpha=1.0 - momentum)
        else:
            bt.copy_(bs)
