"""Small building blocks shared by the harness's students and teachers.

Everything here is plain ``torch.nn`` (no torchvision). The ResNet encoder reproduces the
torchvision ResNet-18/34 layout (without the classifier), so parameter counts match, but it is
randomly initialised: no ImageNet weights ship with the harness.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BasicBlock",
    "ConvBNReLU",
    "ConvELU",
    "ReflectConv3x3",
    "ResNetEncoder",
    "UpsampleStage",
    "disp_to_depth",
    "init_weights",
    "normalise_image",
    "upsample2x",
]

#: Monodepth2 normalises inputs with these scalars (not per-channel ImageNet statistics).
IMAGENET_MEAN = 0.45
IMAGENET_STD = 0.225

#: BasicBlocks per ResNet stage, keyed by depth.
RESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def normalise_image(image: Tensor) -> Tensor:
    """Map a ``[0, 1]`` image to the encoder's input range, ``(x - 0.45) / 0.225``."""
    return (image - IMAGENET_MEAN) / IMAGENET_STD


def disp_to_depth(disp: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Monodepth2's sigmoid-to-depth conversion.

    ``scaled = 1/max_depth + (1/min_depth - 1/max_depth) * disp`` and ``depth = 1 / scaled``,
    so ``disp`` in ``[0, 1]`` maps to depth in ``[min_depth, max_depth]`` (0 -> max, 1 -> min).
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return 1.0 / scaled_disp


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour x2 upsampling (Monodepth2 decoder)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ConvBNReLU(nn.Sequential):
    """``Conv2d(k, stride, bias=False) -> BatchNorm2d -> ReLU`` with "same" zero padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, identity (or 1x1 conv-BN projection) shortcut."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18/34 feature pyramid without the classifier.

    ``forward`` returns ``[s2, s4, s8, s16, s32]``: the stem after conv1/BN/ReLU (stride 2)
    and the outputs of ``layer1..layer4``. Widths are ``base_width * (1, 1, 2, 4, 8)`` and are
    listed in :attr:`channels`; :attr:`strides` gives the matching strides.
    """

    strides = (2, 4, 8, 16, 32)

    def __init__(self, num_layers: int = 18, base_width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if num_layers not in RESNET_LAYERS:
            raise ValueError(
                f"num_layers must be one of {sorted(RESNET_LAYERS)} (BasicBlock ResNets), "
                f"got {num_layers}"
            )
        if base_width < 1:
            raise ValueError(f"base_width must be positive, got {base_width}")
        w = base_width
        self.channels = (w, w, 2 * w, 4 * w, 8 * w)
        self.conv1 = nn.Conv2d(in_channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks = RESNET_LAYERS[num_layers]
        self.layer1 = self._make_layer(w, w, blocks[0], 1)
        self.layer2 = self._make_layer(w, 2 * w, blocks[1], 2)
        self.layer3 = self._make_layer(2 * w, 4 * w, blocks[2], 2)
        self.layer4 = self._make_layer(4 * w, 8 * w, blocks[3], 2)
        init_weights(self)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, n: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels, 1) for _ in range(n - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        s2 = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(s2))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        s32 = self.layer4(s16)
        return [s2, s4, s8, s16, s32]


class ReflectConv3x3(nn.Module):
    """Reflection-padded 3x3 convolution with bias (Monodepth2's ``Conv3x3``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x))


class ConvELU(nn.Module):
    """Reflection-padded 3x3 conv followed by ELU (Monodepth2's ``ConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ReflectConv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    @property
    def in_channels(self) -> int:
        return self.conv.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.conv.out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlin(self.conv(x))


class UpsampleStage(nn.Module):
    """One Monodepth2 decoder stage: ``conv0 -> upsample x2 -> concat(skips) -> conv1``.

    ``conv0`` maps ``in_channels -> out_channels`` at the coarse resolution, the result is
    upsampled (nearest) and concatenated with ``skip_channels`` of skip features (encoder) and
    ``extra_channels`` of conditioning, then ``conv1`` maps the concatenation back to
    ``out_channels``. :meth:`set_extra_channels` rebuilds ``conv1`` for a new number of extra
    channels while keeping the learned weights of the existing inputs; weights for newly added
    inputs start at zero, so widening a trained stage does not change its output.
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int = 0,
                 extra_channels: int = 0) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.skip_channels = skip_channels
        self.extra_channels = extra_channels
        self.conv0 = ConvELU(in_channels, out_channels)
        self.conv1 = ConvELU(out_channels + skip_channels + extra_channels, out_channels)

    def set_extra_channels(self, n: int) -> None:
        """Rebuild ``conv1`` so it accepts ``n`` conditioning channels after the skips."""
        if n < 0:
            raise ValueError(f"extra channels must be >= 0, got {n}")
        if n == self.extra_channels:
            return
        base = self.out_channels + self.skip_channels
        old = self.conv1.conv.conv
        new = ConvELU(base + n, self.out_channels).to(device=old.weight.device,
                                                       dtype=old.weight.dtype)
        conv = new.conv.conv
        keep = base + min(n, self.extra_channels)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:, :keep] = old.weight[:, :keep]
            conv.bias.copy_(old.bias)
        self.conv1 = new
        self.extra_channels = n

    def forward(self, x: Tensor, skips: list[Tensor] | None = None) -> Tensor:
        x = upsample2x(self.conv0(x))
        if skips:
            x = torch.cat([x, *skips], dim=1)
        return self.conv1(x)


def init_weights(module: nn.Module) -> None:
    """torchvision-style init: Kaiming-normal (fan_out, ReLU) convs, BN to identity."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
