"""The strategy-owned modules: window attention against a slow per-pixel reference,
the adapter's structure, and the uncertainty head."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stereodistill_plugins.adu.modules import (
    AttentionAdapter,
    UncertaintyHead,
    WindowAttention,
    relative_position_index,
)


def test_relative_position_index_golden_window2():
    # tokens (0,0) (0,1) (1,0) (1,1); index = (dy + 1) * 3 + (dx + 1)
    expected = [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    assert relative_position_index(2).tolist() == expected


def _window_attention_slow(mod: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Pixel-by-pixel: each query attends to the real pixels of its own window only."""
    b, c, h, w = x.shape
    ws, nh, d = mod.window, mod.heads, mod.head_dim
    table = mod.bias_table.detach()
    out = torch.zeros_like(x)
    feats = x.permute(0, 2, 3, 1)  # B H W C
    qkv = mod.qkv(feats)  # B H W 3C
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    for n in range(b):
        for yq in range(h):
            for xq in range(w):
                wy, wx = yq // ws, xq // ws
                keys = [(yk, xk) for yk in range(wy * ws, min(h, wy * ws + ws))
                        for xk in range(wx * ws, min(w, wx * ws + ws))]
                heads_out = []
                for hd in range(nh):
                    sl = slice(hd * d, (hd + 1) * d)
                    logits = []
                    for yk, xk in keys:
                        rel = (yq - yk + ws - 1) * (2 * ws - 1) + (xq - xk + ws - 1)
                        dot = float(q[n, yq, xq, sl] @ k[n, yk, xk, sl]) / math.sqrt(d)
                        logits.append(dot + float(table[rel, hd]))
                    mx = max(logits)
                    ex = [math.exp(v_ - mx) for v_ in logits]
                    z = sum(ex)
                    acc = torch.zeros(d, dtype=x.dtype)
                    for e_, (yk, xk) in zip(ex, keys):
                        acc = acc + (e_ / z) * v[n, yk, xk, sl]
                    heads_out.append(acc)
                out[n, :, yq, xq] = mod.proj(torch.cat(heads_out))
    return out


@pytest.mark.parametrize("size", [(3, 6, 9), (4, 9, 10)])  # (window, H, W): exact / padded on both axes
def test_window_attention_matches_slow_reference(size):
    torch.manual_seed(0)
    mod = WindowAttention(channels=4, heads=2, window=size[0]).double()
    with torch.no_grad():
        mod.bias_table.normal_(std=0.5)
    x = torch.randn(2, 4, size[1], size[2], dtype=torch.float64)
    with torch.no_grad():
        got = mod(x)
        ref = _window_attention_slow(mod, x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-10)


def test_window_attention_is_local_to_windows():
    torch.manual_seed(1)
    mod = WindowAttention(channels=8, heads=2, window=7).double()
    x = torch.randn(1, 8, 7, 7, dtype=torch.float64)
    junk = 100 * torch.randn(1, 8, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        alone = mod(x)
        beside = mod(torch.cat([x, junk], dim=-1))[..., :7]
    torch.testing.assert_close(alone, beside, rtol=1e-9, atol=1e-10)


def test_adapter_structure_and_shapes():
    torch.manual_seed(0)
    ad = AttentionAdapter(16, 64, window=7)
    assert ad.attn.heads == 2  # C_T / 32
    assert ad.mlp[0].out_features == 128 and isinstance(ad.mlp[1], nn.GELU)
    x = torch.randn(2, 16, 6, 20)
    y = ad(x)
    assert y.shape == (2, 64, 6, 20)
    # literal composition: x1 = LN(conv x); x2 = x1 + WMSA(x1); y = x2 + MLP(x2)
    with torch.no_grad():
        x1 = ad.norm(ad.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x2 = x1 + ad.attn(x1)
        ref = x2 + ad.mlp(x2.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(ad(x), ref)
    assert AttentionAdapter(8, 16).attn.heads == 1
    assert AttentionAdapter(8, 96, heads=4).attn.heads == 4
    assert AttentionAdapter(8, 96, heads=5).attn.heads == 4  # largest divisor of 96 <= 5


def test_adapter_gradients_reach_every_parameter():
    torch.manual_seed(0)
    ad = AttentionAdapter(8, 32, window=7)
    x = torch.randn(2, 8, 3, 10, requires_grad=True)
    ad(x).pow(2).mean().backward()
    for name, p in ad.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_uncertainty_head_shape_init_and_clamp():
    head = UncertaintyHead(4)
    assert head.conv1.out_channels == 2
    f = torch.randn(2, 4, 8, 12)
    s = head(f)
    assert s.shape == (2, 1, 8, 12)
    assert torch.allclose(s, torch.full_like(s, -3.0), atol=0.05)  # near-uniform b at start
    with torch.no_grad():
        head.conv2.bias.fill_(100.0)
    assert head(f).max().item() == 8.0
    assert UncertaintyHead(1).conv1.out_channels == 1
