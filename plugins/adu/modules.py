"""Modules the ADU-Depth strategy owns (docs/methods.md 1.4): training-only, dropped at test time.

* :class:`WindowAttention` -- multi-head self-attention inside non-overlapping ``w x w``
  windows with a learned relative position bias (Swin-style), on ``B x C x H x W`` maps.
  Maps are zero-padded on the right/bottom to a multiple of the window; padded positions are
  masked out as keys, so the output at real pixels does not depend on the padding.
* :class:`AttentionAdapter` -- ``1x1 conv (C_S -> C_T) -> LayerNorm -> W-MSA + residual ->
  MLP (ratio 2, GELU) + residual``: adapts a student feature before it is compared with the
  stereo teacher's feature. It never sees teacher tensors.
* :class:`UncertaintyHead` -- ``3x3 conv (C -> C/2) -> ReLU -> 3x3 conv (-> 1)`` on the
  student's last decoder feature; outputs the Laplacian log-scale ``s = log b``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionAdapter", "UncertaintyHead", "WindowAttention", "relative_position_index"]

#: additive attention-mask value for padded keys (finite, so a row never becomes NaN)
_MASKED = -1e4


def relative_position_index(window: int) -> Tensor:
    """``(w*w) x (w*w)`` long tensor: index into a ``(2w-1)^2`` bias table for each
    (query, key) pair of a window, ``(dy + w - 1) * (2w - 1) + (dx + w - 1)`` with
    ``dy = y_q - y_k``, ``dx = x_q - x_k`` (tokens in row-major order)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + window - 1
    dx = xs[:, None] - xs[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def _layernorm_channels(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """Apply an ``nn.LayerNorm(C)`` over the channel dim of ``B x C x H x W``."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with relative position bias on ``B x C x H x W``.

    Args:
        channels: ``C`` (divisible by ``heads``).
        heads: attention heads.
        window: window side ``w`` (7 in docs/methods.md 1.4).

    ``forward`` pads ``H, W`` up to multiples of ``w`` with zeros, splits the map into
    ``w x w`` windows, runs ``softmax(q k^T / sqrt(d) + bias[rel(q, k)] + pad_mask) v`` per
    window and head, projects, and crops back to ``H x W``.
    """

    def __init__(self, channels: int, heads: int, window: int = 7) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.channels = channels
        self.heads = heads
        self.window = window
        self.head_dim = channels // heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("rel_index", relative_position_index(window), persistent=False)

    def relative_bias(self) -> Tensor:
        """``heads x (w*w) x (w*w)`` bias added to the attention logits."""
        n = self.window * self.window
        return self.bias_table[self.rel_index.reshape(-1)].reshape(n, n, self.heads).permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {c}")
        ws = self.window
        ph, pw = (-h) % ws, (-w) % ws
        x = F.pad(x, (0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        nh, nw = hp // ws, wp // ws
        # B x C x nh x ws x nw x ws -> (B nh nw) x (ws ws) x C
        tokens = x.reshape(b, c, nh, ws, nw, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, c)
        qkv = self.qkv(tokens).reshape(tokens.shape[0], ws * ws, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B nW) x heads x N x d
        bias = self.relative_bias().to(x.dtype)  # heads x N x N
        if ph or pw:
            valid = torch.zeros(hp, wp, dtype=torch.bool, device=x.device)
            valid[:h, :w] = True
            key_ok = valid.reshape(nh, ws, nw, ws).permute(0, 2, 1, 3).reshape(nh * nw, 1, 1, ws * ws)
            pad_mask = torch.where(key_ok, 0.0, _MASKED).to(x.dtype)  # nW x 1 x 1 x N
            mask = (bias.unsqueeze(0) + pad_mask).repeat(b, 1, 1, 1)  # (B nW) x heads x N x N
        else:
            mask = bias.unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(-1, ws * ws, c)
        out = self.proj(out)
        out = out.reshape(b, nh, nw, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        return out[:, :, :h, :w]


class AttentionAdapter(nn.Module):
    """``Phi_k``: ``1x1 conv (C_S -> C_T) -> LayerNorm -> W-MSA + residual -> MLP + residual``.

    Read literally (docs/methods.md 1.4): ``x = LN(conv(F_S))``; ``x = x + WMSA(x)``;
    ``x = x + MLP(x)`` with ``MLP = Linear(C_T, 2 C_T) -> GELU -> Linear(2 C_T, C_T)`` per
    pixel. ``heads = max(1, C_T // 32)`` by default (docs/methods.md: ``C_T / 32``), reduced to the
    largest divisor of ``C_T`` not above it.
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int | None = None,
                 window: int = 7, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if heads is None:
            heads = max(1, out_channels // 32)
        heads = max(h for h in range(1, heads + 1) if out_channels % h == 0)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.norm = nn.LayerNorm(out_channels)
        self.attn = WindowAttention(out_channels, heads, window)
        hidden = max(1, int(round(out_channels * mlp_ratio)))
        self.mlp = nn.Sequential(nn.Linear(out_channels, hidden), nn.GELU(), nn.Linear(hidden, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = _layernorm_channels(self.norm, self.conv(x))
        x = x + self.attn(x)
        return x + self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class UncertaintyHead(nn.Module):
    """``Psi``: Laplacian log-scale ``s = log b`` (``B x 1 x H x W``) from a decoder feature.

    ``3x3 conv (C -> max(1, C/2)) -> ReLU -> 3x3 conv (-> 1)``, zero padding. The output is
    clamped to ``[log_scale_min, log_scale_max]`` (a guard: the NLL's optimum ``log r`` is
    ``-inf`` where the residual is exactly 0). The last conv starts with tiny weights
    (std 1e-3) and bias ``init_log_scale``, so that ``b`` starts almost uniform.
    """

    def __init__(self, in_channels: int, init_log_scale: float = -3.0,
                 log_scale_min: float = -8.0, log_scale_max: float = 8.0) -> None:
        super().__init__()
        mid = max(1, in_channels // 2)
        self.conv1 = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.conv2 = nn.Conv2d(mid, 1, 3, padding=1)
        nn.init.normal_(self.conv2.weight, std=1e-3)
        nn.init.constant_(self.conv2.bias, float(init_log_scale))
        self.log_scale_min = float(log_scale_min)
        self.log_scale_max = float(log_scale_max)

    def forward(self, feature: Tensor) -> Tensor:
        # channels-last: on CPU the weight gradient of these few-channel full-resolution convs
        # is ~6x faster than in NCHW (same values)
        x = feature.contiguous(memory_format=torch.channels_last)
        s = self.conv2(torch.relu(self.conv1(x))).contiguous()
        return s.clamp(self.log_scale_min, self.log_scale_max)
