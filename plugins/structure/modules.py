"""Networks of the structure-centric method: the semantic teacher, the pose net and the
isomorphic-graph modules (docs/methods.md 4.3, 4.4 (c)).

Only plain ``torch.nn`` is used; the harness's internal building blocks are not imported (plugins
use the public API only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import DepthOutput, FeatureSpec
from harness.distill.losses import kl_rows

__all__ = ["GraphOut", "IsoGraph", "PoseNet", "SemanticTeacher", "node_grid"]

_MEAN, _STD = 0.45, 0.225


def _normalise(x: Tensor) -> Tensor:
    return (x - _MEAN) / _STD


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _ResBlock(nn.Module):
    """ResNet basic block (two 3x3 conv-BN, projection shortcut when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(_ConvBNReLU(cin, cout, 3, stride), _ConvBNReLU(cout, cout, 3, relu=False))
        self.short = None if (stride == 1 and cin == cout) else _ConvBNReLU(cin, cout, 1, stride, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + (x if self.short is None else self.short(x)))


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# Semantic teacher
# --------------------------------------------------------------------------------------------
class SemanticTeacher(nn.Module):
    """A small semantic-segmentation network standing in for the paper's "semantic expert".

    ResNet-style encoder (widths ``W, W, 2W, 4W, 8W`` at strides 2..32) with a light FPN
    (lateral 1x1 convs to ``feat_channels``, top-down sum, 3x3 smoothing, global-context term
    at stride 32) and a segmentation head at stride 4 upsampled to full resolution.

    * ``forward(batch)`` reads ONLY ``batch["image"]`` and returns a :class:`DepthOutput` with
      no depth: ``features`` ``sem_s8``, ``sem_s16``, ``sem_s32`` (the FPN maps) and
      ``aux["semantic_logits"]`` (``B x num_classes x H x W``).
    * ``self_loss(batch, out)``: cross-entropy against ``batch["semantic"]`` (labels
      ``0..num_classes-1``, ``ignore_index`` ignored), term ``ce``.
    * ``checkpoint``: optional path of a local state dict (plain or under ``"state_dict"``); it
      is loaded strictly and the teacher is then not trained by the harness (``trainable`` is
      False). Nothing is ever downloaded.

    ``input_keys`` lists ``semantic`` so the harness's teacher-training data provides labels;
    the forward pass never reads them. ``outputs`` tells the harness this model has no depth.
    """

    mode = "frozen"
    input_keys = frozenset({"image", "semantic"})
    outputs = frozenset({"semantic_features"})
    trainable = True

    def __init__(self, num_classes: int = 7, base_width: int = 16, feat_channels: int = 64,
                 ignore_index: int = 255, checkpoint: str | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        w, f = int(base_width), int(feat_channels)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.feat_channels = f
        self.stem = nn.Sequential(_ConvBNReLU(3, w, 3, 2), _ConvBNReLU(w, w, 3))  # s2
        self.layer1 = _ResBlock(w, w, 2)  # s4
        self.layer2 = _ResBlock(w, 2 * w, 2)  # s8
        self.layer3 = nn.Sequential(_ResBlock(2 * w, 4 * w, 2), _ResBlock(4 * w, 4 * w))  # s16
        self.layer4 = nn.Sequential(_ResBlock(4 * w, 8 * w, 2), _ResBlock(8 * w, 8 * w))  # s32
        self.lat = nn.ModuleDict({"8": nn.Conv2d(2 * w, f, 1), "16": nn.Conv2d(4 * w, f, 1), "32": nn.Conv2d(8 * w, f, 1)})
        self.context = nn.Conv2d(8 * w, f, 1)
        self.smooth = nn.ModuleDict({k: _ConvBNReLU(f, f, 3) for k in ("8", "16", "32")})
        self.head = nn.Sequential(_ConvBNReLU(f + w, f, 3), nn.Conv2d(f, self.num_classes, 1))
        _init(self)
        self.checkpoint = checkpoint
        if checkpoint:
            self.load_checkpoint(checkpoint)

    def load_checkpoint(self, path: str) -> None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"teacher.checkpoint {p}: no such file")
        state: Any = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        self.load_state_dict(state, strict=True)
        self.trainable = False

    def feature_specs(self) -> list[FeatureSpec]:
        return [FeatureSpec(f"sem_s{s}", self.feat_channels, s) for s in (8, 16, 32)]

    def forward(self, batch: dict[str, Any], student_out: DepthOutput | None = None) -> DepthOutput:
        image = batch["image"]
        h, w = image.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be divisible by 32, got {h} x {w}")
        s2 = self.stem(_normalise(image))
        s4 = self.layer1(s2)
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        s32 = self.layer4(s16)
        p32 = self.smooth["32"](self.lat["32"](s32) + self.context(s32.mean(dim=(2, 3), keepdim=True)))
        p16 = self.smooth["16"](self.lat["16"](s16) + F.interpolate(p32, size=s16.shape[-2:], mode="bilinear", align_corners=False))
        p8 = self.smooth["8"](self.lat["8"](s8) + F.interpolate(p16, size=s8.shape[-2:], mode="bilinear", align_corners=False))
        up8 = F.interpolate(p8, size=s4.shape[-2:], mode="bilinear", align_corners=False)
        logits = F.interpolate(self.head(torch.cat([up8, s4], dim=1)), size=(h, w), mode="bilinear", align_corners=False)
        return DepthOutput(
            features={"sem_s8": p8, "sem_s16": p16, "sem_s32": p32},
            aux={"semantic_logits": logits},
            depth_kind="relative",
        )

    def self_loss(self, batch: dict[str, Any], out: DepthOutput) -> dict[str, Tensor]:
        labels = batch["semantic"].long()
        logits = out.aux["semantic_logits"]
        if labels.shape[-2:] != logits.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        valid = labels != self.ignore_index
        if not bool(valid.any()):
            return {"ce": logits.sum() * 0.0}
        return {"ce": F.cross_entropy(logits, labels, ignore_index=self.ignore_index)}


# --------------------------------------------------------------------------------------------
# Pose net
# --------------------------------------------------------------------------------------------
class PoseNet(nn.Module):
    """Monodepth2-style pose network on a 6-channel frame pair.

    A small ResNet (widths ``W, W, 2W, 4W, 8W``, stride 32) on ``[first, second]``, then the
    Monodepth2 pose decoder (1x1 squeeze, two 3x3 convs, 1x1 to 6 channels, spatial mean),
    scaled by ``scale`` (0.01). The last conv starts with tiny weights (std 1e-3, zero bias), so
    training starts from (almost) no motion. Returns ``(axisangle, translation)``, each ``B x 3``: the motion
    that maps points of the ``first`` camera into the ``second`` (Monodepth2 convention; see
    :meth:`harness.distill.geometry.pose_vec_to_mat`'s ``invert`` flag for the earlier frame).
    """

    def __init__(self, base_width: int = 16, scale: float = 0.01) -> None:
        super().__init__()
        w = int(base_width)
        self.scale = float(scale)
        self.encoder = nn.Sequential(
            _ConvBNReLU(6, w, 7, 2),
            nn.MaxPool2d(3, 2, 1),
            _ResBlock(w, w),
            _ResBlock(w, 2 * w, 2),
            _ResBlock(2 * w, 4 * w, 2),
            _ResBlock(4 * w, 8 * w, 2),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(8 * w, 4 * w, 1), nn.ReLU(inplace=True),
            nn.Conv2d(4 * w, 4 * w, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(4 * w, 4 * w, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(4 * w, 6, 1),
        )
        _init(self)
        # start near the identity motion: with Kaiming init the raw outputs are O(1-10), i.e.
        # translations of several cm against an initial depth of ~0.2 m, so the first warps
        # land tens of pixels away and the min-reprojection never leaves the identity
        nn.init.normal_(self.decoder[-1].weight, std=1e-3)
        nn.init.zeros_(self.decoder[-1].bias)

    def forward(self, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([_normalise(first), _normalise(second)], dim=1)
        out = self.decoder(self.encoder(x)).mean(dim=(2, 3)) * self.scale
        return out[:, :3], out[:, 3:]


# --------------------------------------------------------------------------------------------
# Isomorphic graphs
# --------------------------------------------------------------------------------------------
def node_grid(base: tuple[int, int], height: int, width: int, ref: tuple[int, int] = (192, 640)) -> tuple[int, int]:
    """Node grid for an input of ``height x width``: ``base`` (defined at ``ref``) scaled by the
    input size, rounded, at least 1 x 1 (6 x 20 -> 3 x 10 at 96 x 320)."""
    return (max(1, int(round(base[0] * height / ref[0]))), max(1, int(round(base[1] * width / ref[1]))))


@dataclass
class GraphOut:
    """One stride's graph pair: nodes, adjacencies (log), the aggregated student nodes and the
    two losses."""

    x_s: Tensor  # B x N x d   student nodes
    x_t: Tensor  # B x N x d   teacher nodes
    log_a_s: Tensor  # B x N x N  log A_S
    log_a_t: Tensor  # B x N x N  log A_T
    h_s: Tensor  # B x N x d   X_S + ReLU(A_T X_S W_g)
    grid: tuple[int, int]
    rel: Tensor  # mean_rows KL(sg(A_T) || A_S)
    node: Tensor  # mean_n (1 - cos(H_S[n], sg(X_T[n])))


class IsoGraph(nn.Module):
    """Learnable isomorphic graphs between a student and a teacher feature map (docs/methods.md 4.4 (c)).

    1. Nodes: both maps are adaptive-average-pooled to the same ``h_g x w_g`` grid (node ``n``
       of one graph covers the same image region as node ``n`` of the other: the graphs are
       isomorphic) and projected by per-model linear layers to ``dim``: ``X_S``, ``X_T``.
    2. Adjacency per model: ``A_m = softmax_row((X_m W_q^m)(X_m W_k^m)^T / sqrt(dim))``;
       optional top-``k``: the ``k`` largest entries of each row of the teacher's logits select
       the edges kept in BOTH graphs (the others get probability 0).
    3. Cross-model aggregation: ``H_S = X_S + ReLU(A_T X_S W_g)``.
    4. Losses: ``rel = mean_rows KL(sg(A_T) || A_S)``, ``node = mean_n (1 - cos(H_S, sg(X_T)))``.

    ``A_T`` carries gradient in the aggregation (so the teacher-side projector and adjacency
    learner train through the node loss and the decoder fusion) unless
    ``detach_teacher_adjacency``; it is always detached in ``rel``.
    """

    def __init__(self, student_channels: int, teacher_channels: int, dim: int = 128,
                 topk: int | None = None, detach_teacher_adjacency: bool = False) -> None:
        super().__init__()
        self.dim = int(dim)
        self.topk = None if topk in (None, 0) else int(topk)
        self.detach_teacher_adjacency = bool(detach_teacher_adjacency)
        self.proj_s = nn.Linear(student_channels, self.dim)
        self.proj_t = nn.Linear(teacher_channels, self.dim)
        self.q_s = nn.Linear(self.dim, self.dim, bias=False)
        self.k_s = nn.Linear(self.dim, self.dim, bias=False)
        self.q_t = nn.Linear(self.dim, self.dim, bias=False)
        self.k_t = nn.Linear(self.dim, self.dim, bias=False)
        self.gcn = nn.Linear(self.dim, self.dim, bias=False)

    @staticmethod
    def nodes(feat: Tensor, grid: tuple[int, int]) -> Tensor:
        """``B x C x h x w`` -> ``B x N x C`` (adaptive average pooling, row-major nodes)."""
        return F.adaptive_avg_pool2d(feat, grid).flatten(2).transpose(1, 2)

    def logits(self, x: Tensor, q: nn.Linear, k: nn.Linear) -> Tensor:
        return q(x) @ k(x).transpose(1, 2) / math.sqrt(self.dim)

    def forward(self, f_s: Tensor, f_t: Tensor, grid: tuple[int, int]) -> GraphOut:
        x_s = self.proj_s(self.nodes(f_s, grid))
        x_t = self.proj_t(self.nodes(f_t.to(f_s.dtype), grid))
        ls, lt = self.logits(x_s, self.q_s, self.k_s), self.logits(x_t, self.q_t, self.k_t)
        n = ls.shape[-1]
        if self.topk is not None and self.topk < n:
            idx = lt.detach().topk(self.topk, dim=-1).indices
            keep = torch.zeros_like(lt, dtype=torch.bool).scatter_(-1, idx, True)
            ls = ls.masked_fill(~keep, float("-inf"))
            lt = lt.masked_fill(~keep, float("-inf"))
        log_a_s = F.log_softmax(ls, dim=-1)
        log_a_t = F.log_softmax(lt, dim=-1)
        a_t = log_a_t.exp()
        if self.detach_teacher_adjacency:
            a_t = a_t.detach()
        h_s = x_s + F.relu(a_t @ self.gcn(x_s))
        rel = kl_rows(log_a_t.detach(), log_a_s, log_p=True, log_q=True)
        node = (1.0 - F.cosine_similarity(h_s, x_t.detach(), dim=-1, eps=1e-8)).mean()
        return GraphOut(x_s, x_t, log_a_s, log_a_t, h_s, tuple(grid), rel, node)

    @staticmethod
    def to_map(h: Tensor, grid: tuple[int, int]) -> Tensor:
        """``B x N x d`` nodes -> ``B x d x h_g x w_g`` map."""
        b, _, d = h.shape
        return h.transpose(1, 2).reshape(b, d, grid[0], grid[1])
