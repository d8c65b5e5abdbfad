"""Video self-supervision toolkit (docs/methods.md 5.4(a), 7.6): a light pose network and the
SC-Depth photometric + geometry-consistency loss over adjacent frames.

Shared by the ``ssmde`` method and the video-supervised ``baseline`` (its like-for-like
control), so both train the student and the pose net with exactly the same terms:

* :class:`PoseNet` -- a 6-channel image pair -> ``T_{first -> second}`` (``B x 4 x 4``);
* :func:`split_frames` -- one batched student pass over ``[I_t, I_{t-1}, I_{t+1}]``;
* :func:`pair_terms` / :func:`photo_geo_loss` -- one warp's per-pixel maps and the masked
  photometric / geometry losses with auto-mask, dynamic down-weighting and per-pixel source
  selection; :func:`photo_geo_terms` runs them over scales with a pose net.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.distill.geometry import pose_vec_to_mat, warp_temporal
from harness.distill.losses import depth_consistency, masked_mean, photometric_error
from harness.types import DepthOutput

__all__ = [
    "BIG",
    "PairTerms",
    "PoseNet",
    "SOURCES",
    "pair_terms",
    "photo_geo_loss",
    "photo_geo_terms",
    "split_frames",
    "valid_mask",
]

#: source frame offsets and the names of their student outputs (see :func:`split_frames`)
SOURCES = ((-1, "prev"), (1, "next"))

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



#: stands in for "no valid source" in per-pixel minima (public: the strategy uses it too)
BIG = 1e6


# --------------------------------------------------------------------------------------------
# (a) photometric + geometry consistency
# --------------------------------------------------------------------------------------------
class PairTerms(NamedTuple):
    """Per-pixel maps (``B x 1 x H x W``) of one warp ``source -> target`` (SC-Depth's
    ``compute_pairwise_loss``), all in the target's pixel grid."""

    pe: Tensor  #: ``alpha (1 - SSIM)/2 + (1 - alpha) |I_t - I^_s|``, channel mean (not weighted)
    color: Tensor  #: ``mean_c |I_t - I^_s|`` (selects the best source, auto-mask)
    identity: Tensor  #: ``mean_c |I_t - I_s|`` of the un-warped source (auto-mask)
    diff_depth: Tensor  #: ``|D_proj - D_interp| / (D_proj + D_interp)``
    inside: Tensor  #: float, 1 where the projection lands in the source image, in front of it


def pair_terms(target: Tensor, source: Tensor, depth_t: Tensor, depth_s: Tensor, T_t2s: Tensor, K: Tensor,
               *, alpha: float = 0.85, ssim_window: int = 7) -> PairTerms:
    """Warp ``source`` into the ``target`` view with ``depth_t`` and ``T_t2s`` and compare.

    ``depth_s`` (the source view's depth) is sampled at the projections for the geometry
    consistency term.
    """
    w = warp_temporal(source, depth_t, T_t2s, K, depth_src=depth_s)
    pe = photometric_error(w.image, target, alpha=alpha, window=ssim_window)
    color = (target - w.image).abs().mean(dim=1, keepdim=True)
    identity = (target - source).abs().mean(dim=1, keepdim=True)
    diff_depth = depth_consistency(w.projected_depth, w.interpolated_depth)
    return PairTerms(pe, color, identity, diff_depth, w.valid)


def valid_mask(p: PairTerms, automask: bool) -> Tensor:
    """In-image (and, with ``automask``, ``color < identity``) as a float mask."""
    v = p.inside > 0
    if automask:
        v = v & (p.color < p.identity)
    return v.to(p.pe.dtype)


def _select(group: list[PairTerms], automask: bool, dynamic_weight: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per pixel, the entry of ``group`` (maps in one pixel grid) with the lowest colour error
    among those projecting inside their source; returns ``(weighted pe, diff_depth, valid)``."""
    pe, dd, valid, key = [], [], [], []
    for p in group:
        w = p.pe
        if dynamic_weight:  # SC-Depth: down-weight dynamic / inconsistent pixels, no gradient
            w = w * (1.0 - p.diff_depth).clamp(0.0, 1.0).detach()
        pe.append(w)
        dd.append(p.diff_depth)
        valid.append(valid_mask(p, automask))
        key.append(torch.where(p.inside > 0, p.color, torch.full_like(p.color, BIG)).detach())
    if len(group) == 1:
        return pe[0], dd[0], valid[0]
    idx = torch.cat(key, dim=1).argmin(dim=1, keepdim=True)
    pick = lambda maps: torch.cat(maps, dim=1).gather(1, idx)  # noqa: E731
    return pick(pe), pick(dd), pick(valid)


def photo_geo_loss(forward: list[PairTerms], backward: list[PairTerms], *, min_over: str = "sources",
                   automask: bool = True, dynamic_weight: bool = True) -> tuple[Tensor, Tensor]:
    """``(L_ph, L_geo)`` of docs/methods.md 5.4(a) from the warps of both directions.

    ``forward[k]``: source ``k`` warped into the target view (target depth, ``T_{t->s}``);
    ``backward[k]``: the target warped into source ``k``'s view (its depth, ``T_{s->t}``).

    ``min_over`` chooses where the per-pixel best-source selection happens:

    * ``"sources"`` (default): within each pixel grid — the target view picks the better of its
      sources per pixel; each source view has one warp (from the target);
    * ``"all"``: over all ``2 x n_sources`` maps at once (SC-Depth's code, which mixes the target
      and source pixel grids);
    * ``"none"``: no selection, every map counts.

    ``L_ph = masked_mean(selected weighted pe, valid)`` and ``L_geo = masked_mean(selected
    diff_depth, valid)`` over all selected maps together, ``valid`` = in-image x auto-mask.
    """
    if min_over == "sources":
        groups = [list(forward)] + [[b] for b in backward]
    elif min_over == "all":
        groups = [list(forward) + list(backward)]
    elif min_over == "none":
        groups = [[p] for p in list(forward) + list(backward)]
    else:
        raise ValueError(f"min_over must be 'sources', 'all' or 'none', got {min_over!r}")
    groups = [g for g in groups if g]
    sel = [_select(g, automask, dynamic_weight) for g in groups]
    pe = torch.cat([s[0] for s in sel], dim=1)
    dd = torch.cat([s[1] for s in sel], dim=1)
    valid = torch.cat([s[2] for s in sel], dim=1)
    return masked_mean(pe, valid), masked_mean(dd, valid)



def _up(x: Tensor, size) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def source_frames(batch: dict[str, Any]) -> list[Tensor]:
    """``[I_{t-1}, I_{t+1}]`` from ``batch["frames"]`` (keys ``-1``/``1`` or ``"-1"``/``"1"``)."""
    frames = batch["frames"]
    return [frames[o] if o in frames else frames[str(o)] for o, _ in SOURCES]


def split_frames(student: nn.Module, batch: dict[str, Any]) -> dict[str, DepthOutput]:
    """One student pass over ``[I_t, I_{t-1}, I_{t+1}]`` (batched), split into ``"clean"``
    (the target) and ``"prev"`` / ``"next"`` outputs (disparity and depth at every scale)."""
    images = torch.cat([batch["image"], *source_frames(batch)], dim=0)
    out = student(images)
    parts = {}
    for j, name in enumerate(["clean"] + [n for _, n in SOURCES]):
        parts[name] = DepthOutput(
            disp={i: d.chunk(3)[j] for i, d in out.disp.items()},
            depth={i: d.chunk(3)[j] for i, d in out.depth.items()},
            disp_units=out.disp_units,
            depth_kind=out.depth_kind,
        )
    return parts


def photo_geo_terms(pose_net: PoseNet, batch: dict[str, Any], s_out: dict[str, DepthOutput], scales,
                    *, alpha: float = 0.85, ssim_window: int = 7, min_over: str = "sources",
                    automask: bool = True, dynamic_weight: bool = True
                    ) -> tuple[Tensor, Tensor, list[PairTerms], list[Tensor]]:
    """``(L_ph, L_geo)`` averaged over ``scales`` (each upsampled to full resolution) from the
    :func:`split_frames` outputs, with poses from one batched ``pose_net`` pass in both
    directions. Also returns the full-resolution forward warps (scale 0) and ``T_{t->s}``."""
    img, K = batch["image"], batch["K"]
    size = img.shape[-2:]
    sources = source_frames(batch)
    n = len(sources)
    T = pose_net(torch.cat([img] * n + sources, dim=0), torch.cat(sources + [img] * n, dim=0)).chunk(2 * n)
    T_fwd, T_bwd = list(T[:n]), list(T[n:])
    photo, geo, fwd0 = [], [], []
    for i in scales:
        d_t = _up(s_out["clean"].depth[i], size)
        d_src = [_up(s_out[name].depth[i], size) for _, name in SOURCES]
        fwd = [pair_terms(img, src, d_t, d_s, t, K, alpha=alpha, ssim_window=ssim_window)
               for src, d_s, t in zip(sources, d_src, T_fwd)]
        bwd = [pair_terms(src, img, d_s, d_t, t, K, alpha=alpha, ssim_window=ssim_window)
               for src, d_s, t in zip(sources, d_src, T_bwd)]
        p, g = photo_geo_loss(fwd, bwd, min_over=min_over, automask=automask, dynamic_weight=dynamic_weight)
        photo.append(p)
        geo.append(g)
        if i == 0:
            fwd0 = fwd
    return torch.stack(photo).mean(), torch.stack(geo).mean(), fwd0, T_fwd
