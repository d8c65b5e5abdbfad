"""Building blocks of Recursive Stereo Distillation (RSD; docs/methods.md 3.2).

Everything here is written from the method description (docs/methods.md section 3, read from the
authors' TensorFlow release); no code was copied. Conventions follow the harness: tensors are
``B x C x H x W``, disparities are width-normalised (``d~ = d_px / W``), channel 0 is the
left-view disparity ``d~^l`` (synthesises the left image from the right one), channel 1 the
right-view disparity ``d~^r``.

Contents
--------
* :class:`ResASPPNet` -- the "resASPPNet" encoder/decoder both RSD networks share (ELU,
  bottleneck residual blocks, ASPP with dilations 6/12/18 + global pooling, nearest x2 up-convs,
  two-channel ``0.3 * sigmoid`` disparity heads at four scales), widths scaled by ``base_width``
  (64 = the paper's network).
* :class:`AdaptiveRefinement` -- the feature-driven adaptive refinement module (per-pixel
  predicted 3x3 kernels: a convex combination of the estimate's neighbourhood, or the release's
  ``softmax(-z^2)`` over the 18 taps of the two disparity channels).
* :func:`nonlocal_affinity` / :func:`nonlocal_residual` -- the parameter-free non-local block
  (``A = softmax_row(X^T X)`` on properly flattened ``C x HW`` features).
* :func:`edge_aware_flip_fusion` -- RSD's test-time fusion of a prediction and the prediction
  of the mirrored image.
* :func:`photometric_augment` -- RSD/Monodepth colour augmentation of a stereo pair.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ASPP",
    "AdaptiveRefinement",
    "Bottleneck",
    "DISP_SCALE",
    "ResASPPNet",
    "disp_activation",
    "edge_aware_flip_fusion",
    "head_bias",
    "horizontal_edge_weight",
    "nonlocal_affinity",
    "nonlocal_residual",
    "photometric_augment",
]

#: RSD/Monodepth disparity heads output ``DISP_SCALE * sigmoid(z)`` (width-normalised).
DISP_SCALE = 0.3
#: Residual weight of the non-local block in Mono-Net (``X + 0.01 A X``).
NONLOCAL_WEIGHT = 0.01


def disp_activation(kind: str, centre: float = 0.0) -> Callable[[Tensor], Tensor]:
    """``"sigmoid"``: ``0.3 * sigmoid(z)`` (non-negative); ``"tanh"``: ``0.3 * tanh(z - centre)``
    (signed; ``centre`` = the heads' initial bias, so an untrained head gives a zero increment)."""
    if kind == "sigmoid":
        return lambda z: DISP_SCALE * torch.sigmoid(z)
    if kind == "tanh":
        return lambda z: DISP_SCALE * torch.tanh(z - centre)
    raise ValueError(f"disparity activation must be 'sigmoid' or 'tanh', got {kind!r}")


def head_bias(init_disp: float) -> float:
    """Bias that makes an untrained ``0.3 sigmoid`` head output ``init_disp`` (0.15 -> 0)."""
    if not 0.0 < init_disp < DISP_SCALE:
        raise ValueError(f"init_disp must be in (0, {DISP_SCALE}), got {init_disp}")
    p = init_disp / DISP_SCALE
    return math.log(p / (1.0 - p))


class ConvELU(nn.Sequential):
    """``k x k`` conv with "same" zero padding (Monodepth's ``conv``), ELU unless ``act=False``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: bool = True,
                 dilation: int = 1) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, padding=dilation * (k - 1) // 2, dilation=dilation)
        ]
        if act:
            layers.append(nn.ELU())
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """ELU bottleneck residual block: 1x1 (m) -> 3x3 (m, stride) -> 1x1 (4m, linear), plus a
    linear 1x1 projection shortcut when the shape changes; ELU after the sum."""

    expansion = 4

    def __init__(self, cin: int, mid: int, stride: int = 1) -> None:
        super().__init__()
        cout = self.expansion * mid
        self.conv1 = ConvELU(cin, mid, 1)
        self.conv2 = ConvELU(mid, mid, 3, stride)
        self.conv3 = ConvELU(mid, cout, 1, act=False)
        self.shortcut = ConvELU(cin, cout, 1, stride, act=False) if (cin != cout or stride != 1) else None

    def forward(self, x: Tensor) -> Tensor:
        short = x if self.shortcut is None else self.shortcut(x)
        return F.elu(self.conv3(self.conv2(self.conv1(x))) + short)


def _res_stage(cin: int, mid: int, blocks: int) -> nn.Sequential:
    """``blocks`` bottlenecks; the LAST one has stride 2 (Monodepth's ``resblock``)."""
    layers = []
    for i in range(blocks):
        stride = 2 if i == blocks - 1 else 1
        layers.append(Bottleneck(cin, mid, stride))
        cin = Bottleneck.expansion * mid
    return nn.Sequential(*layers)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: concat of [global-avg-pool -> 1x1 (broadcast back), 1x1,
    3x3 dilation 6, 12, 18], ``depth`` channels each, all linear (as in the release)."""

    def __init__(self, cin: int, depth: int, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.pool_conv = nn.Conv2d(cin, depth, 1)
        self.branches = nn.ModuleList(
            [nn.Conv2d(cin, depth, 1)] + [nn.Conv2d(cin, depth, 3, padding=r, dilation=r) for r in rates]
        )
        self.out_channels = depth * (2 + len(rates))

    def forward(self, x: Tensor) -> Tensor:
        g = self.pool_conv(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return torch.cat([g] + [b(x) for b in self.branches], dim=1)


class UpConv(nn.Sequential):
    """Nearest x2 upsampling followed by a 3x3 ELU conv (Monodepth's ``upconv``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvELU(cin, cout, 3))


def nonlocal_affinity(x: Tensor) -> Tensor:
    """Row-softmax affinity ``A = softmax_row(X^T X)`` of ``B x C x H x W`` features.

    ``X`` is the feature map flattened to ``B x C x HW`` (channel-major, i.e. properly: column
    ``j`` of ``X`` is the feature vector of pixel ``j``), so ``A`` is ``B x HW x HW`` with
    ``A_ij`` = how much pixel ``i`` attends to pixel ``j``; rows sum to 1. No learned projections.
    """
    X = x.flatten(2)
    return torch.softmax(torch.bmm(X.transpose(1, 2), X), dim=-1)


def nonlocal_residual(x: Tensor, affinity: Tensor, weight: float = NONLOCAL_WEIGHT) -> Tensor:
    """``x + weight * (A X)``: every pixel adds the affinity-weighted mean of all pixels' features
    (``y_i = sum_j A_ij x_j``, i.e. ``Y = X A^T`` in ``C x HW`` form)."""
    X = x.flatten(2)
    y = torch.bmm(X, affinity.transpose(1, 2))
    return x + weight * y.view_as(x)


class ResASPPNet(nn.Module):
    """RSD's "resASPPNet" (docs/methods.md 3.2), widths scaled by ``w = base_width`` (paper: 64).

    Encoder: conv1 7x7/2 (w) -> pool1 3x3/2 -> conv2 3 bottlenecks (w, out 4w, 1/8) -> conv3 4
    bottlenecks (2w, out 8w, 1/16) -> pool3 3x3/2 -> ASPP (4w each, 20w, 1/32).
    Decoder (nearest x2 + 3x3 up-convs, skips conv3, conv2, pool1, conv1): iconv5 (4w, 1/16),
    iconv4 (2w, 1/8, disp4), iconv3 (w, 1/4, disp3), iconv2 (w/2, 1/2, disp2), iconv1 (w/4, 1,
    disp1); disp3..disp1 stages also receive the nearest-upsampled disparity of the coarser head.

    ``forward`` returns a dict: ``z`` (pre-activation head outputs, scale index 0..3 = strides
    1, 2, 4, 8), ``disp`` (activated; the activation is an argument so the recursive Stereo-Net
    can use signed increments), ``features`` (``enc_s2``..``enc_s32``, ``dec_s1``..``dec_s16``
    = iconv1..iconv5), ``affinity`` (``{16: A, 8: A}`` of the up-conv outputs up5 / up4 when
    ``affinities=True``). With ``nonlocal_residual=True`` the up-conv outputs at 1/16 and 1/8
    are replaced by ``X + 0.01 A X`` before the skip concatenation (Mono-Net).

    ``init_disp``: initial output of the disparity heads (their bias; 0.15 = zero bias, the
    release's TF-slim initialisation).
    """

    strides = (1, 2, 4, 8)

    def __init__(self, in_channels: int = 3, base_width: int = 64, nonlocal_residual: bool = False,
                 disp_channels: int = 2, init_disp: float = 0.15) -> None:
        super().__init__()
        w = int(base_width)
        if w < 4 or w % 4:
            raise ValueError(f"base_width must be a positive multiple of 4, got {base_width}")
        self.in_channels = in_channels
        self.base_width = w
        self.use_nonlocal_residual = bool(nonlocal_residual)
        self.disp_channels = disp_channels
        dc = disp_channels
        self.enc_channels = {2: w, 4: w, 8: 4 * w, 16: 8 * w}
        self.dec_channels = {16: 4 * w, 8: 2 * w, 4: w, 2: w // 2, 1: w // 4}

        self.conv1 = ConvELU(in_channels, w, 7, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.conv2 = _res_stage(w, w, 3)
        self.conv3 = _res_stage(4 * w, 2 * w, 4)
        self.aspp = ASPP(8 * w, 4 * w)
        self.enc_channels[32] = self.aspp.out_channels

        c = self.dec_channels
        self.up5, self.iconv5 = UpConv(self.aspp.out_channels, c[16]), ConvELU(c[16] + 8 * w, c[16])
        self.up4, self.iconv4 = UpConv(c[16], c[8]), ConvELU(c[8] + 4 * w, c[8])
        self.up3, self.iconv3 = UpConv(c[8], c[4]), ConvELU(c[4] + w + dc, c[4])
        self.up2, self.iconv2 = UpConv(c[4], c[2]), ConvELU(c[2] + w + dc, c[2])
        self.up1, self.iconv1 = UpConv(c[2], c[1]), ConvELU(c[1] + dc, c[1])
        self.heads = nn.ModuleDict({str(i): nn.Conv2d(c[2**i], dc, 3, padding=1) for i in range(4)})
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # slim's default initialiser (Glorot uniform, zero bias)
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.init_bias = head_bias(init_disp)
        for h in self.heads.values():
            nn.init.constant_(h.bias, self.init_bias)

    def forward(self, x: Tensor, act: Callable[[Tensor], Tensor] | None = None,
                affinities: bool = True) -> dict:
        act = act or disp_activation("sigmoid")
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be divisible by 32, got {h} x {w}")
        conv1 = self.conv1(x)
        pool1 = self.pool(conv1)
        conv2 = self.conv2(pool1)
        conv3 = self.conv3(conv2)
        aspp = self.aspp(self.pool(conv3))
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731

        aff: dict[int, Tensor] = {}
        z: dict[int, Tensor] = {}
        disp: dict[int, Tensor] = {}

        def nonlocal_(t: Tensor, stride: int) -> Tensor:
            if not (affinities or self.use_nonlocal_residual):
                return t
            a = nonlocal_affinity(t)
            if affinities:
                aff[stride] = a
            return nonlocal_residual(t, a) if self.use_nonlocal_residual else t

        up5 = nonlocal_(self.up5(aspp), 16)
        iconv5 = self.iconv5(torch.cat([up5, conv3], 1))
        up4 = nonlocal_(self.up4(iconv5), 8)
        iconv4 = self.iconv4(torch.cat([up4, conv2], 1))
        z[3] = self.heads["3"](iconv4)
        disp[3] = act(z[3])
        iconv3 = self.iconv3(torch.cat([self.up3(iconv4), pool1, up(disp[3])], 1))
        z[2] = self.heads["2"](iconv3)
        disp[2] = act(z[2])
        iconv2 = self.iconv2(torch.cat([self.up2(iconv3), conv1, up(disp[2])], 1))
        z[1] = self.heads["1"](iconv2)
        disp[1] = act(z[1])
        iconv1 = self.iconv1(torch.cat([self.up1(iconv2), up(disp[1])], 1))
        z[0] = self.heads["0"](iconv1)
        disp[0] = act(z[0])
        features = {
            "enc_s2": conv1, "enc_s4": pool1, "enc_s8": conv2, "enc_s16": conv3, "enc_s32": aspp,
            "dec_s16": iconv5, "dec_s8": iconv4, "dec_s4": iconv3, "dec_s2": iconv2, "dec_s1": iconv1,
        }
        return {"z": dict(sorted(z.items())), "disp": dict(sorted(disp.items())), "features": features,
                "affinity": aff}


REFINE_MODES = ("convex", "release")


class AdaptiveRefinement(nn.Module):
    """Feature-driven adaptive refinement (docs/methods.md 3.2), full resolution.

    ``mode="convex"`` (default, [D]): a per-pixel convex combination of the 3x3 neighbourhood
    of the estimate ``d`` itself, plus an optional bounded residual::

        w   = softmax_over_9_taps(K(concat(d, F)))        (per pixel and disparity channel)
        d'  = sum_taps w * unfold(d)  [+ 0.3 tanh(R(concat(d, F)))]   (clamped >= 0)

    ``K`` is the release's kernel predictor (five 3x3 convs, widths ``(k1, k1, k1/2, k1/2, C*9)``)
    whose last layer is linear and zero-initialised, so an untrained module is a 3x3 box filter of
    ``d``; ``R`` is a zero-initialised 3x3 conv on the predictor's penultimate features (off with
    ``residual=False``). The output therefore follows its input one-to-one (a constant ``c`` gives
    ``c``) and the refined head learns as fast as the unrefined one. The unfold always replicates
    the border here (zero taps would pull border disparities towards 0).

    ``mode="release"`` ([C]): ``kappa = softmax(-z^2)`` over the ``C*9 = 18`` channels (ELU on
    the last predictor conv too), ``d`` unfolded and multiplied by ``kappa``, a 3x3 conv
    (``C*9 -> C``) and ``0.3 sigmoid``. Its output barely depends on its input (each tap carries
    ~``d/18`` into a Glorot 18 -> 2 conv; constant inputs 0 .. 0.3 move the output from 0.0200
    to 0.01996), so the full-resolution teacher stays flat; kept for reproducing the release.

    ``padding="replicate"`` (default, [D]) pads every conv (and, in release mode, the unfold) by
    replicating the border; ``"zeros"`` is the release's TF "SAME" zero padding.
    """

    def __init__(self, feat_channels: int, width: int = 64, disp_channels: int = 2, kernel: int = 3,
                 padding: str = "replicate", init_disp: float = 0.15, mode: str = "convex",
                 residual: bool = True) -> None:
        super().__init__()
        if padding not in ("replicate", "zeros"):
            raise ValueError(f"refinement padding must be 'replicate' or 'zeros', got {padding!r}")
        if mode not in REFINE_MODES:
            raise ValueError(f"refinement mode must be one of {REFINE_MODES}, got {mode!r}")
        self.padding = padding
        self.mode = mode
        self.kernel = kernel
        self.disp_channels = disp_channels
        taps = disp_channels * kernel * kernel
        widths = (width, width, max(1, width // 2), max(1, width // 2))
        layers: list[nn.Module] = []
        cin = disp_channels + feat_channels
        for cout in widths:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding), nn.ELU()]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.logits = nn.Conv2d(cin, taps, 3, padding=1, padding_mode=padding)
        self.out = (nn.Conv2d(taps, disp_channels, 3, padding=1, padding_mode=padding)
                    if mode == "release" else None)
        self.residual = (nn.Conv2d(cin, disp_channels, 3, padding=1, padding_mode=padding)
                         if mode == "convex" and residual else None)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if mode == "convex":
            for m in (self.logits, self.residual):
                if m is not None:
                    nn.init.zeros_(m.weight)
        else:
            nn.init.constant_(self.out.bias, head_bias(init_disp))

    def kernels(self, disp: Tensor, feat: Tensor) -> Tensor:
        """Per-pixel tap weights ``B x (C*9) x H x W``: in ``"convex"`` mode summing to 1 over the
        9 taps of each disparity channel, in ``"release"`` mode over all ``C*9`` channels."""
        return self._kernels(self.body(torch.cat([disp, feat], 1)))

    def _kernels(self, h: Tensor) -> Tensor:
        z = self.logits(h)
        if self.mode == "release":
            return torch.softmax(-(F.elu(z) ** 2), dim=1)
        b, _, hh, ww = z.shape
        k2 = self.kernel * self.kernel
        return torch.softmax(z.view(b, self.disp_channels, k2, hh, ww), dim=2).view_as(z)

    def unfold(self, disp: Tensor) -> Tensor:
        """3x3 neighbourhoods of ``disp``: ``B x (C*9) x H x W`` (channel-major: c*9 + tap)."""
        b, c, h, w = disp.shape
        p = self.kernel // 2
        mode = "replicate" if (self.padding == "replicate" or self.mode == "convex") else "constant"
        padded = F.pad(disp, (p, p, p, p), mode=mode)
        return F.unfold(padded, self.kernel).view(b, c * self.kernel * self.kernel, h, w)

    def forward(self, disp: Tensor, feat: Tensor, act: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Refined disparity. ``act`` is the release head's activation (``"release"`` mode only;
        the convex update stays in the units of ``disp``)."""
        h = self.body(torch.cat([disp, feat], 1))
        taps = self._kernels(h) * self.unfold(disp)
        if self.mode == "release":
            return (act or disp_activation("sigmoid"))(self.out(taps))
        b, _, hh, ww = taps.shape
        refined = taps.view(b, self.disp_channels, -1, hh, ww).sum(dim=2)
        if self.residual is not None:
            refined = (refined + DISP_SCALE * torch.tanh(self.residual(h))).clamp_min(0.0)
        return refined


# --------------------------------------------------------------------------------------------
# Test-time flip fusion (RSD "Final_disp_M", edge-aware variant of Monodepth post-processing)
# --------------------------------------------------------------------------------------------
def horizontal_edge_weight(disp: Tensor, kernel: int = 21, sharpness: float = 32.0) -> Tensor:
    """Soft "disparity drops to the right" indicator, ``B x C x H x W`` in (0, 1).

    With ``p = (kernel - 1) // 2``: ``g(x) = mean(d[x-p .. x-1]) - mean(d[x+1 .. x+p])``
    (zero padding outside the image), min-max normalised per image over all of ``disp``'s
    channels and pixels, and ``w = sigmoid(sharpness * (g_norm - 0.5))``. High where the
    disparity on the left of ``x`` is larger than on its right (the right side of a foreground
    object), where a left-view prediction is reliable.
    """
    b, c, h, w = disp.shape
    p = max(1, (kernel - 1) // 2)
    flat = disp.reshape(b * c * h, 1, w)
    padded = F.pad(flat, (p + 1, p + 1))
    box = F.avg_pool1d(padded, p, stride=1)  # box[k] = mean(padded[k .. k+p-1])
    # left window of x: padded[x+1 .. x+p] = box[x+1]; right window: padded[x+p+2 .. x+2p+1]
    g = (box[..., 1:1 + w] - box[..., p + 2:p + 2 + w]).reshape(b, c, h, w)
    lo = g.amin(dim=(1, 2, 3), keepdim=True)
    hi = g.amax(dim=(1, 2, 3), keepdim=True)
    norm = (g - lo) / (hi - lo).clamp_min(1e-12)
    return torch.sigmoid(sharpness * (norm - 0.5))


def _border_ramp(w: int, hard: float, like: Tensor) -> Tensor:
    """``1 - clip(20 (x - hard), 0, 1)`` on ``x = linspace(0, 1, w)``: 1 on the first ``hard``
    fraction of the width, 0 from ``hard + 0.05`` on (RSD/Monodepth post-processing masks)."""
    x = torch.linspace(0.0, 1.0, w, dtype=like.dtype, device=like.device)
    return (1.0 - (20.0 * (x - hard)).clamp(0.0, 1.0)).view(1, 1, 1, w)


def edge_aware_flip_fusion(disp: Tensor, disp_flipped_back: Tensor, kernel: int = 21,
                           hard: float = 0.01, sharpness: float = 32.0) -> Tensor:
    """Fuse a left-view disparity and the prediction for the mirrored image (mirrored back).

    ``disp`` is the prediction on the image, ``disp_flipped_back`` = ``flip(predict(flip(image)))``,
    both ``B x 1 x H x W``. The left border strip (hard for ``hard`` of the width, ramping to 0
    by ``hard + 5 %``) comes from the mirrored-input prediction, the right strip from the
    direct one, and the interior is ``w_d d + w_f d_f`` with weights from
    :func:`horizontal_edge_weight` of each prediction in its own (un-mirrored / mirrored) frame,
    normalised to sum to 1.
    """
    if disp.shape != disp_flipped_back.shape:
        raise ValueError(f"shapes differ: {tuple(disp.shape)} vs {tuple(disp_flipped_back.shape)}")
    mirrored = torch.flip(disp_flipped_back, dims=[-1])
    # normalise the edge response jointly over both predictions of an image (the release
    # normalises over its [direct, mirrored] test batch)
    both = torch.cat([disp, mirrored], dim=1)
    g = horizontal_edge_weight(both, kernel, sharpness)
    w_d, w_f = g[:, :1], torch.flip(g[:, 1:2], dims=[-1])
    total = w_d + w_f
    mid = (disp * w_d + disp_flipped_back * w_f) / total
    left = _border_ramp(disp.shape[-1], hard, disp)
    right = torch.flip(left, dims=[-1])
    middle = 1.0 - left - right
    return right * disp + left * disp_flipped_back + middle * mid


# --------------------------------------------------------------------------------------------
# Augmentation (docs/methods.md 3.5): gamma, brightness, per-channel colour, same for both views
# --------------------------------------------------------------------------------------------
def photometric_augment(left: Tensor, right: Tensor, prob: float = 0.5, gamma=(0.8, 1.2),
                        brightness=(0.5, 2.0), colour=(0.8, 1.2),
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """With probability ``prob`` per sample: ``clip((I ** g) * b * c_rgb, 0, 1)`` with
    ``g ~ U(gamma)``, ``b ~ U(brightness)``, ``c_rgb ~ U(colour)^3``, identical for both views."""
    b = left.shape[0]
    dev, dt = left.device, left.dtype

    def u(lo_hi, *shape):
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, device="cpu").to(dev, dt)

    on = (torch.rand(b, generator=generator, device="cpu") < prob).to(dev).view(b, 1, 1, 1)
    g = u(gamma, b, 1, 1, 1)
    br = u(brightness, b, 1, 1, 1)
    col = u(colour, b, 3, 1, 1)

    def aug(img: Tensor) -> Tensor:
        out = (img.clamp_min(0.0) ** g) * br * col
        return torch.where(on, out.clamp(0.0, 1.0), img)

    return aug(left), aug(right)
