"""The monocular student: a Monodepth2-style ResNet encoder / U-Net decoder.

Every distillation method is evaluated with this same network, so it must expose what the
methods need without being forked (``docs/methods.md`` sections 1.4, 2.3, 7.3):

* named features ``enc_s2..enc_s32`` (encoder) and ``dec_s16..dec_s1`` (decoder, each taken
  after the stage's second conv), described by :meth:`MonoStudent.feature_specs`;
* multi-scale sigmoid disparities and metric depths at scales ``0..3`` (strides 1, 2, 4, 8);
* conditioning: extra channels concatenated at a decoder stage (``cond["decoder_extra"]``,
  after :meth:`MonoStudent.decoder_extra_channels`) and additive injection into a decoder
  feature (``cond["inject"]``).
"""
from __future__ import annotations

import math

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.models.blocks import (
    ReflectConv3x3,
    ResNetEncoder,
    UpsampleStage,
    disp_to_depth,
    normalise_image,
)
from harness.types import DepthOutput, FeatureSpec

__all__ = ["MonoStudent"]

#: Decoder strides, coarse to fine; stage ``dec_s{s}`` is built at stride ``s``.
DECODER_STRIDES = (16, 8, 4, 2, 1)
#: Keys :meth:`MonoStudent.forward` understands in ``cond``.
COND_KEYS = frozenset({"decoder_extra", "inject"})


class MonoStudent(nn.Module):
    """Monodepth2 depth network (ResNet-18/34 encoder, skip-connected upsampling decoder).

    Args:
        num_layers: encoder depth, 18 (``[2, 2, 2, 2]`` BasicBlocks) or 34 (``[3, 4, 6, 3]``).
        base_width: encoder stem width; stages are ``base_width * (1, 1, 2, 4, 8)`` and the
            decoder widths ``base_width / 4 * (1, 2, 4, 8, 16)`` at strides ``1..16``
            (Monodepth2's 16..256 for ``base_width=64``).
        min_depth, max_depth: range of :func:`~harness.models.blocks.disp_to_depth`.
        scales: disparity-head scales (0 = full resolution ... 4 = 1/16).
        in_channels: input channels (3 for RGB).
        init_disp: None (default initialisation) or the sigmoid output the disparity heads start
            from (their bias is set to ``logit(init_disp)``, weights unchanged). Photometric
            self-supervision from scratch needs a start inside the image: the default start
            (sigmoid 0.5, depth 0.2 m) asks for disparities wider than the image.

    Input height and width must be divisible by 32 and at least 64. Inputs are ``[0, 1]``
    images; the network normalises them itself (Monodepth2's ``(x - 0.45) / 0.225``).
    """

    #: config keys that change neither the architecture nor the computation (harness.report.cost)
    cost_neutral_keys = frozenset({"init_disp", "min_depth", "max_depth"})

    def __init__(self, num_layers: int = 18, base_width: int = 64, min_depth: float = 0.1,
                 max_depth: float = 100.0, scales: tuple[int, ...] = (0, 1, 2, 3),
                 in_channels: int = 3, init_disp: float | None = None) -> None:
        super().__init__()
        if init_disp is not None and not 0 < init_disp < 1:
            raise ValueError(f"init_disp must be None or in (0, 1), got {init_disp}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        scales = tuple(sorted(set(int(s) for s in scales)))
        if not scales or any(s < 0 or s > 4 for s in scales):
            raise ValueError(f"scales must be a non-empty subset of 0..4, got {scales}")
        self.num_layers = num_layers
        self.base_width = base_width
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.scales = scales
        self.in_channels = in_channels

        self.encoder = ResNetEncoder(num_layers, base_width, in_channels)
        enc_ch = dict(zip(ResNetEncoder.strides, self.encoder.channels))
        self.enc_channels: dict[int, int] = enc_ch
        # base_width/4 * (1, 2, 4, 8, 16) at strides (1, 2, 4, 8, 16) == base_width * s / 4.
        self.dec_channels: dict[int, int] = {
            s: max(1, base_width * s // 4) for s in DECODER_STRIDES
        }

        # Stage at stride s: input from stride 2s (encoder s32 for the first stage), skip from
        # the encoder at stride s (none at stride 1).
        self.stages = nn.ModuleDict()
        prev = enc_ch[32]
        for s in DECODER_STRIDES:
            skip = enc_ch.get(s, 0)
            self.stages[str(s)] = UpsampleStage(prev, self.dec_channels[s], skip_channels=skip)
            prev = self.dec_channels[s]
        self.disp_heads = nn.ModuleDict(
            {str(i): ReflectConv3x3(self.dec_channels[2**i], 1) for i in scales}
        )
        if init_disp is not None:
            for head in self.disp_heads.values():
                nn.init.constant_(head.conv.bias, math.log(init_disp / (1.0 - init_disp)))

    # ------------------------------------------------------------------ introspection
    def feature_specs(self) -> list[FeatureSpec]:
        """Every feature :meth:`forward` returns, encoder first, fine to coarse, then decoder."""
        specs = [FeatureSpec(f"enc_s{s}", c, s) for s, c in self.enc_channels.items()]
        specs += [FeatureSpec(f"dec_s{s}", self.dec_channels[s], s) for s in DECODER_STRIDES]
        return specs

    @property
    def extra_channels(self) -> dict[int, int]:
        """Conditioning channels each decoder stage currently expects (only non-zero ones)."""
        return {
            s: self.stages[str(s)].extra_channels
            for s in DECODER_STRIDES
            if self.stages[str(s)].extra_channels
        }

    # ------------------------------------------------------------------ conditioning
    def decoder_extra_channels(self, spec: dict[int, int]) -> None:
        """Widen the decoder stage at stride ``s`` by ``spec[s]`` input channels.

        The extra channels are concatenated after the skip features at the stage's
        concatenation point (resolution = stride ``s``, ``s`` in ``{1, 2, 4, 8, 16}``), right
        before the conv that produces ``dec_s{s}``. ``spec[s]`` is the total number of extra
        channels (calling again with the same spec is a no-op; 0 removes them). Existing
        weights are kept and the new input weights start at zero, so the widened network
        computes the same function until it is trained.
        """
        for s, n in spec.items():
            s = int(s)
            if s not in DECODER_STRIDES:
                raise ValueError(
                    f"decoder_extra stride {s} is not a decoder stage; use one of {DECODER_STRIDES}"
                )
            self.stages[str(s)].set_extra_channels(int(n))

    def _check_cond(
        self, cond: dict[str, Any] | None
    ) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
        cond = cond or {}
        unknown = set(cond) - COND_KEYS
        if unknown:
            raise ValueError(f"unknown cond key(s) {sorted(unknown)}; known: {sorted(COND_KEYS)}")
        extra = {int(s): t for s, t in (cond.get("decoder_extra") or {}).items()}
        inject = {int(s): t for s, t in (cond.get("inject") or {}).items()}
        widened = self.extra_channels
        missing = set(widened) - set(extra)
        if missing:
            raise ValueError(
                f"decoder stage(s) at stride {sorted(missing)} were widened by "
                f"decoder_extra_channels() and need cond['decoder_extra'][stride] tensors"
            )
        for s, t in extra.items():
            if s not in widened:
                raise ValueError(
                    f"cond['decoder_extra'] has stride {s}, but that stage was not widened; "
                    f"call decoder_extra_channels({{{s}: C}}) first (widened: {widened})"
                )
            if t.dim() != 4 or t.shape[1] != widened[s]:
                raise ValueError(
                    f"cond['decoder_extra'][{s}] must be B x {widened[s]} x h x w, "
                    f"got {tuple(t.shape)}"
                )
        for s, t in inject.items():
            if s not in DECODER_STRIDES:
                raise ValueError(f"inject stride {s} is not a decoder stage {DECODER_STRIDES}")
            if t.dim() != 4 or t.shape[1] != self.dec_channels[s]:
                raise ValueError(
                    f"cond['inject'][{s}] must be B x {self.dec_channels[s]} x h x w "
                    f"(channels of dec_s{s}), got {tuple(t.shape)}"
                )
        return extra, inject

    # ------------------------------------------------------------------ forward
    def forward(self, image: Tensor, cond: dict[str, Any] | None = None) -> DepthOutput:
        """Predict multi-scale disparity/depth and expose features.

        ``cond`` may hold ``"decoder_extra": {stride: B x C x h x w}`` (required for every
        widened stage; resized with nearest to the stage resolution if needed) and
        ``"inject": {stride: B x C_dec x h x w}`` (added to ``dec_s{stride}`` before the next
        stage and the disparity head; resized bilinearly if needed). ``features["dec_s*"]``
        are the post-injection maps, i.e. what the rest of the decoder sees.
        """
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"image must be B x {self.in_channels} x H x W, got {tuple(image.shape)}"
            )
        h, w = image.shape[-2:]
        if h % 32 or w % 32 or h < 64 or w < 64:
            raise ValueError(
                f"input height and width must be divisible by 32 and at least 64 (the stride-32 "
                f"map needs 2 pixels for reflection padding), got {h} x {w}"
            )
        extra, inject = self._check_cond(cond)

        enc = self.encoder(normalise_image(image))
        features = {f"enc_s{s}": f for s, f in zip(ResNetEncoder.strides, enc)}
        enc_by_stride = dict(zip(ResNetEncoder.strides, enc))

        out = DepthOutput(disp_units="sigmoid", depth_kind="metric")
        x = enc_by_stride[32]
        for s in DECODER_STRIDES:
            size = (h // s, w // s)
            skips = [enc_by_stride[s]] if s in enc_by_stride else []
            if s in extra:
                t = extra[s].to(dtype=x.dtype)
                if tuple(t.shape[-2:]) != size:
                    t = F.interpolate(t, size=size, mode="nearest")
                skips.append(t)
            x = self.stages[str(s)](x, skips)
            if s in inject:
                t = inject[s].to(dtype=x.dtype)
                if tuple(t.shape[-2:]) != size:
                    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                x = x + t
            features[f"dec_s{s}"] = x
            i = s.bit_length() - 1  # scale index: stride 2**i
            if i in self.scales:
                disp = torch.sigmoid(self.disp_heads[str(i)](x))
                out.disp[i] = disp
                out.depth[i] = disp_to_depth(disp, self.min_depth, self.max_depth)
        out.disp = dict(sorted(out.disp.items()))
        out.depth = dict(sorted(out.depth.items()))
        out.features = features
        return out

    @torch.no_grad()
    def predict(self, image: Tensor, cond: dict[str, Any] | None = None) -> Tensor:
        """Full-resolution metric depth ``B x 1 x H x W`` (eval path, no gradients).

        Runs in eval mode (BatchNorm running statistics) and restores the previous mode.
        ``cond`` is only needed for a student widened with :meth:`decoder_extra_channels`.
        """
        was_training = self.training
        self.eval()
        try:
            if 0 not in self.scales:
                raise RuntimeError("predict() needs scale 0 in MonoStudent.scales")
            return self.forward(image, cond).depth[0]
        finally:
            self.train(was_training)
