"""Modules the ``selective`` strategy owns: the MaskDecoder, the Teacher-Student adapters, the
straight-through binariser, and the mask-conditioned forward of the student.

Song & Yoon's MonoNet is one shared encoder ``E`` with two Monodepth2-topology decoders:
``MaskDec`` (two soft masks per scale) and ``DepthDec`` (disparity), the latter conditioned on the
binarised masks (``docs/methods.md`` 2.3). Here ``E`` + ``DepthDec`` are the harness student
(:class:`harness.models.student.MonoStudent`, widened with ``decoder_extra_channels``) and
``MaskDec`` is :class:`MaskDecoder`, owned by the strategy. At test time all three run.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import DepthOutput, HarnessError

__all__ = [
    "FeatureAdapter",
    "MaskDecoder",
    "binarise",
    "forward_with_masks",
]

#: Decoder strides of a Monodepth2 decoder, coarse to fine.
DECODER_STRIDES = (16, 8, 4, 2, 1)


class _ConvELU(nn.Module):
    """Reflection-padded 3x3 conv + ELU (Monodepth2 ``ConvBlock``)."""

    def __init__(self, cin: int, cout: int, elu: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(cin, cout, 3)
        self.act = nn.ELU(inplace=True) if elu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(self.pad(x)))


class MaskDecoder(nn.Module):
    """Monodepth2-topology decoder over the shared encoder features; 2 soft masks per scale.

    Stage at stride ``s`` (16, 8, 4, 2, 1): ``conv0`` (3x3 + ELU) at the coarse resolution,
    nearest x2 upsampling, concatenation with the encoder skip at stride ``s`` (none at stride 1),
    ``conv1`` (3x3 + ELU). A 3x3 head + sigmoid at every requested scale ``i`` (stride ``2**i``)
    gives ``B x 2 x H/2**i x W/2**i`` probabilities: channel 0 = ``y_P`` (use the proxy),
    channel 1 = ``y_S`` (trust the self-supervised estimate).

    Args:
        enc_channels: encoder channels by stride (must hold 32 and every skip stride 2..16).
        dec_channels: decoder width by stride (default: the student's decoder widths).
        scales: output scales (0 = full resolution ... 3 = 1/8).
        out_channels: masks per scale (2).
    """

    def __init__(self, enc_channels: dict[int, int], dec_channels: dict[int, int],
                 scales: tuple[int, ...] = (0, 1, 2, 3), out_channels: int = 2) -> None:
        super().__init__()
        self.scales = tuple(sorted(int(i) for i in scales))
        if not self.scales or any(i < 0 or i > 4 for i in self.scales):
            raise ValueError(f"MaskDecoder scales must be a subset of 0..4, got {scales}")
        missing = [s for s in (2, 4, 8, 16, 32) if s not in enc_channels]
        if missing:
            raise ValueError(f"MaskDecoder needs encoder features at strides {missing}")
        self.out_channels = int(out_channels)
        self.stage0 = nn.ModuleDict()
        self.stage1 = nn.ModuleDict()
        prev = enc_channels[32]
        for s in DECODER_STRIDES:
            c = dec_channels[s]
            self.stage0[str(s)] = _ConvELU(prev, c)
            self.stage1[str(s)] = _ConvELU(c + enc_channels.get(s, 0), c)
            prev = c
        self.heads = nn.ModuleDict(
            {str(i): _ConvELU(dec_channels[2**i], self.out_channels, elu=False) for i in self.scales}
        )

    def forward(self, enc: dict[int, Tensor]) -> dict[int, Tensor]:
        """``enc``: encoder features by stride -> ``{scale: B x 2 x h x w}`` probabilities."""
        x = enc[32]
        out: dict[int, Tensor] = {}
        for s in DECODER_STRIDES:
            x = F.interpolate(self.stage0[str(s)](x), scale_factor=2, mode="nearest")
            if s in enc and s != 32:
                x = torch.cat([x, enc[s]], dim=1)
            x = self.stage1[str(s)](x)
            i = s.bit_length() - 1
            if i in self.scales:
                out[i] = torch.sigmoid(self.heads[str(i)](x))
        return dict(sorted(out.items()))


class FeatureAdapter(nn.Sequential):
    """Teacher-Student hint adapter ``A_k``: 1x1 conv (no bias) + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def binarise(prob: Tensor, threshold: float = 0.5, straight_through: bool = False) -> Tensor:
    """``M = 1[prob > threshold]`` as float.

    ``straight_through=False`` (the default, ``sg`` on ``ŷ``): no gradient reaches ``prob``.
    ``straight_through=True``: forward value ``M``, backward the identity (``dM/dŷ = 1``), i.e.
    ``M + ŷ - sg(ŷ)``.
    """
    hard = (prob > threshold).to(prob.dtype)
    if straight_through:
        return hard + prob - prob.detach()
    return hard


def mask_for_stride(bin_masks: dict[int, Tensor], stride: int, size: tuple[int, int]) -> Tensor:
    """The binarised mask that conditions the decoder stage at ``stride``: the mask of scale
    ``log2(stride)`` if the MaskDecoder has it, else the nearest available scale (ties -> the
    finer one; stride 16 takes scale 3), nearest-resized to ``size``."""
    want = stride.bit_length() - 1
    i = min(bin_masks, key=lambda k: (abs(k - want), k))
    m = bin_masks[i]
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=tuple(size), mode="nearest")
    return m


class _FixedEncoder(nn.Module):
    """Stands in for the student's encoder for one call and returns precomputed features."""

    def __init__(self, features: list[Tensor]) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: Tensor) -> list[Tensor]:  # noqa: ARG002 - input already encoded
        return self.features


@contextmanager
def _reuse_encoder(student: nn.Module, features: list[Tensor]) -> Iterator[None]:
    """Within the block, ``student.encoder`` returns ``features`` instead of recomputing them."""
    real = student._modules["encoder"]
    student._modules["encoder"] = _FixedEncoder(features)
    try:
        yield
    finally:
        student._modules["encoder"] = real


def has_shared_encoder(student: nn.Module) -> bool:
    """True for students whose encoder can be run once and reused (MonoStudent layout)."""
    enc = getattr(student, "encoder", None)
    return isinstance(enc, nn.Module) and hasattr(enc, "strides")


def _normalise(image: Tensor) -> Tensor:
    # MonoStudent normalises its [0, 1] input as Monodepth2 does before the encoder.
    from harness.models.blocks import normalise_image

    return normalise_image(image)


def forward_with_masks(
    student: nn.Module,
    mask_decoder: MaskDecoder,
    image: Tensor,
    cond_strides: tuple[int, ...],
    threshold: float = 0.5,
    straight_through: bool = False,
    encoder_pass: str = "shared",
) -> tuple[DepthOutput, dict[int, Tensor], dict[int, Tensor]]:
    """Run ``E -> MaskDec -> binarise -> DepthDec(cond)`` once; returns ``(out, probs, masks)``.

    ``probs[i]``: soft masks ``ŷ`` at scale ``i`` (``B x 2 x h x w``); ``masks[i]``: binarised
    masks (straight-through gradients only when ``straight_through``). The depth decoder receives
    ``cond={"decoder_extra": {s: M at stride s}}`` for every ``s`` in ``cond_strides``.

    ``encoder_pass="shared"`` runs the student's encoder once: the features feed the MaskDecoder
    and, through a stand-in encoder, the student's own ``forward(image, cond)`` (needs a student
    with an ``encoder`` module exposing ``strides``, i.e. MonoStudent). ``"twice"`` uses only the
    public student API: a first forward with all-zero masks yields the encoder features
    (``features["enc_s*"]``), a second the conditioned depth (one extra encoder + decoder pass).
    Both give the same outputs.
    """
    h, w = image.shape[-2:]
    if encoder_pass == "shared":
        if not has_shared_encoder(student):
            raise HarnessError("selective: encoder_pass='shared' needs a student with an `encoder` "
                               "module exposing `strides` (MonoStudent); use encoder_pass='twice'")
        feats = student.encoder(_normalise(image))
        enc = dict(zip(student.encoder.strides, feats))
    elif encoder_pass == "twice":
        zeros = {s: image.new_zeros(image.shape[0], mask_decoder.out_channels, h // s, w // s)
                 for s in cond_strides}
        first = student(image, cond={"decoder_extra": zeros} if cond_strides else None)
        enc = {int(k.split("_s")[1]): v for k, v in first.features.items() if k.startswith("enc_s")}
        feats = None
    else:
        raise ValueError(f"encoder_pass must be 'shared' or 'twice', got {encoder_pass!r}")

    probs = mask_decoder(enc)
    masks = {i: binarise(p if straight_through else p.detach(), threshold, straight_through)
             for i, p in probs.items()}
    cond = None
    if cond_strides:
        cond = {"decoder_extra": {s: mask_for_stride(masks, s, (h // s, w // s)) for s in cond_strides}}
    if feats is not None:
        with _reuse_encoder(student, feats):
            out = student(image, cond=cond)
    else:
        out = student(image, cond=cond)
    return out, probs, masks
