"""A small learned stereo teacher: siamese features, a stride-4 cost volume, soft-argmin.

Layout (``W`` = ``base_width``, ``D`` = ``max_disp // 4`` disparity levels at stride 4):

1. **Siamese feature extractor** (shared weights), image -> stride 4, ``W`` channels.
2. **Cost volume** at stride 4 over levels ``d = 0 .. D-1`` (``4 d`` px at full resolution):
   ``"correlation"``: ``mean_c f_l(x) * f_r(x - d)``; ``"concat"``: ``[f_l, f_r(x - d)]``
   reduced to one channel by three 3D convs. Columns with ``x < d`` have no match (0 for
   correlation, zero right features for concat).
3. **Aggregation**: a 2D encoder-decoder over ``[cost volume, left features]`` going
   s4 -> s8 -> s16 -> s32 and back up with skip connections. Its decoder features
   ``dec_s32, dec_s16, dec_s8, dec_s4`` are exposed for distillation.
4. **Soft-argmin**: logits = ``scale * cost + head(dec_s4)`` (``scale`` learned), softmax over
   the ``D`` levels, expected disparity in full-resolution pixels at stride 4.
5. **Upsampling and refinement**: bilinear x4 (values are already full-resolution pixels),
   then ``refine_steps`` residual conv blocks at full resolution, each fed the left image, the
   right image warped by the current disparity and their absolute difference (so sub-pixel
   corrections come from image evidence, not the left image alone); ReLU keeps the disparity
   non-negative.

Depth is ``fx * baseline / disp`` clamped to ``[min_depth, max_depth]``.

:meth:`StereoTeacher.self_loss` trains it either supervised (smooth-L1 on disparity where
``depth_gt`` is valid) or self-supervised (left-image reconstruction from the right image,
``0.85 SSIM(3x3) + 0.15 L1``, plus ``1e-3`` edge-aware smoothness), with the shared toolkit of
``harness.distill``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.distill.geometry import warp_stereo
from harness.distill.losses import photometric_error, silog, smoothness
from harness.models.blocks import BasicBlock, ConvBNReLU, init_weights, normalise_image
from harness.types import DepthOutput, FeatureSpec

__all__ = ["StereoTeacher"]

COSTS = ("correlation", "concat")


def _shift_right(x: Tensor, d: int) -> Tensor:
    """``out[..., x] = x[..., x - d]`` for ``x >= d`` and 0 elsewhere (along the last axis)."""
    if d == 0:
        return x
    return F.pad(x[..., :-d], (d, 0))


def _upsample_to(x: Tensor, ref: Tensor) -> Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def _require(batch: dict, keys: tuple[str, ...], who: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{who} needs batch key(s) {missing}; got {sorted(batch)}")


class _FeatureExtractor(nn.Sequential):
    """Image -> stride-4 features (BN output without final ReLU, so correlations are signed)."""

    def __init__(self, width: int) -> None:
        super().__init__(
            ConvBNReLU(3, width, 3, stride=2),
            ConvBNReLU(width, width, 3),
            BasicBlock(width, width, stride=2),
            BasicBlock(width, width),
            ConvBNReLU(width, width, 3, relu=False),
        )


class _ConcatCost(nn.Module):
    """``[f_l, f_r(x - d)]`` volume (channels reduced first) -> three 3D convs -> one channel."""

    def __init__(self, width: int) -> None:
        super().__init__()
        c = max(1, width // 2)
        self.reduce = nn.Conv2d(width, c, 1, bias=False)
        self.net = nn.Sequential(
            nn.Conv3d(2 * c, c, 3, 1, 1, bias=False),
            nn.BatchNorm3d(c),
            nn.ReLU(inplace=True),
            nn.Conv3d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm3d(c),
            nn.ReLU(inplace=True),
            nn.Conv3d(c, 1, 3, 1, 1),
        )

    def forward(self, fl: Tensor, fr: Tensor, levels: int) -> Tensor:
        fl, fr = self.reduce(fl), self.reduce(fr)
        vol = torch.stack(
            [torch.cat([fl, _shift_right(fr, d)], dim=1) for d in range(levels)], dim=2
        )  # B x 2c x D x h x w
        return self.net(vol)[:, 0]


class StereoTeacher(nn.Module):
    """Learned stereo teacher with a stride-4 cost volume (see the module docstring).

    Args:
        max_disp: largest disparity in full-resolution pixels; ``max_disp // 4`` levels at
            stride 4 cover ``0, 4, ..., 4 (D - 1)`` px (soft-argmin interpolates between them).
        base_width: feature width ``W``; aggregation widths are ``W * (1, 2, 4, 4)`` at
            strides ``(4, 8, 16, 32)``.
        cost: ``"correlation"`` or ``"concat"``.
        min_depth, max_depth: clamp range of the returned depth.
    """

    mode = "frozen"
    input_keys = frozenset({"image", "image_right", "K", "baseline"})
    trainable = True
    #: supervised losses ``self_loss`` can train with (``teacher_train.loss``; first = default)
    train_losses = ("smooth_l1_rel", "silog")

    def __init__(self, max_disp: int = 48, base_width: int = 32, cost: str = "correlation",
                 min_depth: float = 0.1, max_depth: float = 100.0, refine_steps: int = 2,
                 refine_width: int = 8, subpixel: bool = True) -> None:
        super().__init__()
        if cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
        if max_disp < 8:
            raise ValueError(f"max_disp must be >= 8 (two levels at stride 4), got {max_disp}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.max_disp = int(max_disp)
        # correlation volumes sample every full-resolution pixel of disparity: the right image is
        # also encoded shifted by 1..3 px, so level 4j+k compares f_l(x) with f_{r,k}(x - j)
        self.subpixel = 4 if (subpixel and cost == "correlation") else 1
        self.levels = self.max_disp // 4 * self.subpixel
        self.base_width = base_width
        self.cost = cost
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.smooth_weight = 1e-3
        self.rel_weight = 10.0
        self.ssim_alpha = 0.85

        w, d = base_width, self.levels
        self.agg_channels = {4: w, 8: 2 * w, 16: 4 * w, 32: 4 * w}
        c4, c8, c16, c32 = (self.agg_channels[s] for s in (4, 8, 16, 32))

        self.extractor = _FeatureExtractor(w)
        self.concat_cost = _ConcatCost(w) if cost == "concat" else None
        # Aggregation encoder.
        self.agg_in = nn.Sequential(ConvBNReLU(d + w, c4, 3), BasicBlock(c4, c4))
        self.down8 = BasicBlock(c4, c8, stride=2)
        self.down16 = BasicBlock(c8, c16, stride=2)
        self.down32 = BasicBlock(c16, c32, stride=2)
        # Aggregation decoder (features exposed as dec_s*).
        self.dec32 = ConvBNReLU(c32, c32, 3)
        self.dec16 = ConvBNReLU(c32 + c16, c16, 3)
        self.dec8 = ConvBNReLU(c16 + c8, c8, 3)
        self.dec4 = ConvBNReLU(c8 + c4, c4, 3)
        self.logit_head = nn.Conv2d(c4, d, 3, 1, 1)
        self.cost_scale = nn.Parameter(torch.tensor(4.0))
        # Full-resolution residual refinement (``refine_steps`` steps). Each step sees the left image, the right image warped by the current
        # disparity and their difference, so sub-pixel corrections come from image evidence.
        r = refine_width
        self.refine = nn.ModuleList(
            nn.Sequential(ConvBNReLU(1 + 3 + 3 + 1, r, 3), BasicBlock(r, r), nn.Conv2d(r, 1, 3, 1, 1))
            for _ in range(refine_steps)
        )
        init_weights(self)
        nn.init.normal_(self.logit_head.weight, std=1e-2)
        nn.init.zeros_(self.logit_head.bias)
        for step in self.refine:
            nn.init.normal_(step[-1].weight, std=1e-3)
            nn.init.zeros_(step[-1].bias)
        self.register_buffer(
            "disp_values", 4.0 / self.subpixel * torch.arange(d, dtype=torch.float32).view(1, d, 1, 1),
            persistent=False,
        )

    # ------------------------------------------------------------------ introspection
    def feature_specs(self) -> list[FeatureSpec]:
        """``dec_s4 .. dec_s32`` of the aggregation decoder."""
        return [FeatureSpec(f"dec_s{s}", self.agg_channels[s], s) for s in (4, 8, 16, 32)]

    # ------------------------------------------------------------------ network
    def cost_volume(self, fl: Tensor, fr: Tensor | list[Tensor]) -> Tensor:
        """``B x D x h x w`` matching score (higher = better match) at stride 4.

        ``fr`` is the right features, or (sub-pixel volumes) a list of the right features of
        the right image shifted by ``k = 0 .. subpixel-1`` full-resolution pixels.
        """
        if self.concat_cost is not None:
            return self.concat_cost(fl, fr, self.levels)
        shifted = fr if isinstance(fr, list) else [fr]
        n = len(shifted)
        return torch.stack(
            [(fl * _shift_right(shifted[d % n], d // n)).mean(1) for d in range(self.levels)], dim=1
        )

    def forward(self, batch: dict[str, Any], student_out: DepthOutput | None = None) -> DepthOutput:
        """Left-view disparity (px) and metric depth at full resolution.

        Needs ``image``, ``image_right`` (``B x 3 x H x W`` in ``[0, 1]``, ``H, W`` divisible
        by 32), ``K`` (``B x 3 x 3``, scaled to the input) and ``baseline`` (``B``).
        ``student_out`` is ignored.
        """
        _require(batch, ("image", "image_right", "K", "baseline"), "StereoTeacher")
        left, right = batch["image"], batch["image_right"]
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
            raise ValueError(
                f"image and image_right must both be B x 3 x H x W, got "
                f"{tuple(left.shape)} and {tuple(right.shape)}"
            )
        h, w = left.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be divisible by 32, got {h} x {w}")
        b = left.shape[0]

        # Siamese features: one pass over the stacked pair.
        right_n = normalise_image(right)
        views = [right_n] + [F.pad(right_n[..., :-k], (k, 0, 0, 0), mode="replicate") for k in range(1, self.subpixel)]
        feats = self.extractor(torch.cat([normalise_image(left), *views], dim=0))
        fl = feats[:b]
        fr = [feats[b * (k + 1): b * (k + 2)] for k in range(self.subpixel)]
        cost = self.cost_volume(fl, fr if self.subpixel > 1 else fr[0])

        a4 = self.agg_in(torch.cat([cost, fl], dim=1))
        a8 = self.down8(a4)
        a16 = self.down16(a8)
        a32 = self.down32(a16)
        d32 = self.dec32(a32)
        d16 = self.dec16(torch.cat([_upsample_to(d32, a16), a16], dim=1))
        d8 = self.dec8(torch.cat([_upsample_to(d16, a8), a8], dim=1))
        d4 = self.dec4(torch.cat([_upsample_to(d8, a4), a4], dim=1))

        logits = self.cost_scale * cost + self.logit_head(d4)
        prob = torch.softmax(logits, dim=1)
        disp4 = (prob * self.disp_values.to(prob.dtype)).sum(1, keepdim=True)  # full-res px
        disp_up = F.interpolate(disp4, size=(h, w), mode="bilinear", align_corners=False)
        left_n, right_n = normalise_image(left), normalise_image(right)
        disp = disp_up
        for step in self.refine:
            warped = warp_stereo(right_n, disp, "r2l")
            err = (left_n - warped).abs().mean(1, keepdim=True)
            disp = F.relu(disp + step(torch.cat([disp / self.max_disp, left_n, warped, err], dim=1)))

        return DepthOutput(
            disp={0: disp},
            depth={0: self.disp_to_depth(disp, batch["K"], batch["baseline"])},
            features={"dec_s4": d4, "dec_s8": d8, "dec_s16": d16, "dec_s32": d32},
            aux={"cost_volume_s4": cost, "disp_s4": disp4},
            disp_units="px",
            depth_kind="metric",
        )

    def disp_to_depth(self, disp: Tensor, K: Tensor, baseline: Tensor) -> Tensor:
        """``fx * baseline / disp`` clamped to ``[min_depth, max_depth]`` (disp in px)."""
        fb = self._focal_baseline(K, baseline, disp)
        return (fb / disp.clamp(min=1e-6)).clamp(self.min_depth, self.max_depth)

    @staticmethod
    def _focal_baseline(K: Tensor, baseline: Tensor, like: Tensor) -> Tensor:
        fx = K[:, 0, 0].to(like)
        base = torch.as_tensor(baseline).to(like).reshape(-1)
        return (fx * base).view(-1, 1, 1, 1)

    # ------------------------------------------------------------------ training
    def self_loss(self, batch: dict[str, Any], out: DepthOutput, loss: str = "smooth_l1_rel") -> dict[str, Tensor]:
        """The teacher's own training loss; the terms are already weighted, sum them.

        With ``depth_gt`` in ``batch`` (``loss``, config ``teacher_train.loss``; one of
        :attr:`train_losses`), on the refined output plus, at half weight, the stride-4
        soft-argmin output (predictions of another size resized bilinearly to the GT grid), at
        pixels where ``depth_gt > 0`` (and ``depth_gt_mask`` if given):

        * ``"smooth_l1_rel"`` (default): ``disp_l1`` (smooth-L1, px) and ``disp_rel`` (10 x mean
          ``|d - d*| / d*``) between the disparity and ``d* = fx * baseline / depth_gt``;
        * ``"silog"``: ``silog`` (BTS SILog, x10, lambda 0.85) on the depth ``fx * baseline / d``
          (docs/methods.md 1.5(a), ADU-Depth's teacher stage).

        Otherwise self-supervised: ``{"photo": 0.85 SSIM + 0.15 L1 of left vs warped right,
        "smooth": 1e-3 * edge-aware smoothness}``.
        """
        if loss not in self.train_losses:
            raise ValueError(f"teacher_train.loss={loss!r} is not one of {list(self.train_losses)}")
        disp = out.disp[0]
        if "depth_gt" not in batch:
            return self._photometric_loss(batch, disp)
        _require(batch, ("K", "baseline"), "StereoTeacher.self_loss (supervised)")
        gt = batch["depth_gt"].to(disp)
        valid = torch.isfinite(gt) & (gt > 0)
        if "depth_gt_mask" in batch:
            valid = valid & batch["depth_gt_mask"].to(torch.bool)
        # the refined output and (half weight) the stride-4 soft-argmin before refinement, each on
        # the GT grid
        preds = [(weight, pred if pred.shape[-2:] == gt.shape[-2:] else
                  F.interpolate(pred, size=gt.shape[-2:], mode="bilinear", align_corners=False))
                 for weight, pred in [(1.0, disp)] + ([(0.5, out.aux["disp_s4"])] if "disp_s4" in out.aux else [])]
        if loss == "silog":
            fb = (batch["K"], batch["baseline"])
            return {"silog": sum(w * silog(self.disp_to_depth(p, *fb), gt, valid) for w, p in preds)}
        if not bool(valid.any()):
            return {"disp_l1": disp.sum() * 0.0, "disp_rel": disp.sum() * 0.0}
        gt_disp = self._focal_baseline(batch["K"], batch["baseline"], disp) / gt.clamp(min=1e-6)
        terms = {"disp_l1": disp.new_zeros(()), "disp_rel": disp.new_zeros(())}
        for weight, pred in preds:
            p, g = pred[valid], gt_disp[valid]
            terms["disp_l1"] = terms["disp_l1"] + weight * F.smooth_l1_loss(p, g)
            # relative error |d - d*| / d* (= depth abs_rel to first order): far pixels, whose
            # disparities are small, would otherwise hardly count
            terms["disp_rel"] = terms["disp_rel"] + weight * self.rel_weight * ((p - g).abs() / g).mean()
        return terms

    def _photometric_loss(self, batch: dict[str, Any], disp: Tensor) -> dict[str, Tensor]:
        _require(batch, ("image", "image_right"), "StereoTeacher.self_loss (self-supervised)")
        left, right = batch["image"], batch["image_right"]
        if disp.shape[-2:] != left.shape[-2:]:
            raise ValueError("self-supervised self_loss needs disparity at the input resolution")
        recon = warp_stereo(right, disp, "r2l")
        photo = photometric_error(recon, left, self.ssim_alpha).mean()
        smooth = smoothness(disp, left, order=1)
        return {"photo": photo, "smooth": self.smooth_weight * smooth}
