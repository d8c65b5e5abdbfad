"""Modules and schedules the SS-MDE strategy owns (METHODS.md 5.3, 5.4(c), 5.4(e)).

* :class:`PoseNet` — a lightweight pose network: a 6-channel image pair -> 6-DoF motion
  (axis-angle + translation, both scaled by 0.01 as in SC-Depth) -> ``4 x 4`` transform.
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

from harness.distill.geometry import pose_vec_to_mat

__all__ = ["MaskRefiner", "PoseNet", "ema_update", "forgetting_factor", "snapshot_teacher"]

#: Monodepth2's input normalisation, also used by the harness student.
_MEAN, _STD = 0.45, 0.225


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class PoseNet(nn.Module):
    """Lightweight pose network on a concatenated image pair.

    ``forward(target, source)`` returns ``T_{t->s}`` (``B x 4 x 4``): the rigid motion that maps
    points of the *first* image's camera into the *second* one's, as
    :func:`harness.distill.geometry.warp_temporal` expects. Both directions are predicted by
    calling it with the pair in both orders (SC-Depth's ``poses`` / ``poses_inv``).

    Layout: seven stride-2 conv-BN-ReLU layers (widths ``w, 2w, 4w, 8w, 16w, 16w, 16w`` with
    kernels 7, 5, 3, ...; SfMLearner-style, much lighter than a ResNet-18), a ``1 x 1`` conv to
    6 channels, global average pooling and the factor ``pose_scale = 0.01`` (SC-Depth). The
    head keeps PyTorch's default (random) initialisation: an exactly-identity start would make
    the auto-mask reject every pixel (warped == source) and nothing would receive a gradient.

    Args:
        width: first-layer width ``w``.
        pose_scale: multiplier of the raw 6-vector (axis-angle and translation alike).
    """

    def __init__(self, width: int = 16, pose_scale: float = 0.01) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width, 16 * width, 16 * width, 16 * width]
        kernels = [7, 5, 3, 3, 3, 3, 3]
        layers, cin = [], 6
        for w, k in zip(widths, kernels):
            layers.append(_conv(cin, w, k, 2))
            cin = w
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, 6, 1)
        self.pose_scale = float(pose_scale)

    def pose_vector(self, target: Tensor, source: Tensor) -> Tensor:
        """The scaled 6-vector ``B x 6``: ``[axis-angle (3), translation (3)]``."""
        x = torch.cat([(target - _MEAN) / _STD, (source - _MEAN) / _STD], dim=1)
        return self.pose_scale * self.head(self.encoder(x)).mean(dim=(2, 3))

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        vec = self.pose_vector(target, source)
        return pose_vec_to_mat(vec[:, :3], vec[:, 3:])


class MaskRefiner(nn.Module):
    """Optional learned refiner of the multi-view mask filter (METHODS.md 5.4(e) item 4).

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
