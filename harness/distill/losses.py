"""Shared loss toolkit (docs/methods.md 0.3 and 7.6). Small, documented, differentiable functions.

Conventions: tensors are ``B x C x H x W``; masks are boolean or float weights broadcastable to
the input; functions return a scalar (mean over the valid / weighted elements) unless the
docstring says *per-pixel*. Where a ``reduction`` argument exists, ``"none"`` returns the
per-element map instead of the mean. A masked mean over an empty mask is 0 (still attached to the
graph), never NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.distill.geometry import warp_stereo

__all__ = [
    "bce",
    "channel_layernorm",
    "depth_consistency",
    "feature_distance",
    "focal_modulation",
    "kl_rows",
    "laplacian_nll",
    "log1p_l1",
    "lr_consistency",
    "masked_mean",
    "min_reprojection",
    "photometric_error",
    "ranking_labels",
    "ranking_loss",
    "silog",
    "smoothness",
    "ssim",
]


def masked_mean(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """``sum(x * m) / sum(m)`` with ``m`` broadcast to ``x`` (bool or float weights).

    ``mask=None`` is a plain mean. Values of ``x`` where ``m == 0`` are ignored even if they are
    NaN/inf. An all-zero mask returns ``0`` (connected to ``x``'s graph).
    """
    if mask is None:
        return x.mean()
    x, m = torch.broadcast_tensors(x, mask.to(x.dtype))
    keep = m != 0
    num = torch.where(keep, x * m, torch.zeros_like(x)).sum()
    den = m.sum()
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(x.dtype).tiny), num * 0.0)


def _reduce(x: Tensor, mask: Tensor | None, reduction: str) -> Tensor:
    if reduction == "mean":
        return masked_mean(x, mask)
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


# --------------------------------------------------------------------------------------------
# Photometric terms
# --------------------------------------------------------------------------------------------
def box_mean(t: Tensor, window: int) -> Tensor:
    """Unpadded ``window x window`` mean filter (= ``avg_pool2d(t, window, stride=1)``) as two
    depthwise 1-D convolutions (forward + backward on the CPU: 1.7x faster at 7x7, equal at 3x3)."""
    c = t.shape[1]
    k = t.new_full((c, 1, window, 1), 1.0 / window)
    return F.conv2d(F.conv2d(t, k, groups=c), k.transpose(2, 3), groups=c)


def ssim(x: Tensor, y: Tensor, window: int = 3, c1: float = 0.01**2, c2: float = 0.03**2) -> Tensor:
    """Per-pixel, per-channel SSIM index (1 = identical), ``B x C x H x W``.

    Local statistics by ``window x window`` average pooling after reflection padding
    (Monodepth/Monodepth2 3x3, SC-Depth 7x7)::

        SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))

    with ``C1 = 0.01^2``, ``C2 = 0.03^2`` (images in [0, 1]). Not clamped (range [-1, 1]).
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    pad = window // 2
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    mu_x, mu_y, xx, yy, xy = box_mean(torch.cat([x, y, x * x, y * y, x * y], dim=1), window).chunk(5, dim=1)
    sigma_x = xx - mu_x * mu_x
    sigma_y = yy - mu_y * mu_y
    sigma_xy = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
    return num / den


def photometric_error(pred: Tensor, target: Tensor, alpha: float = 0.85, window: int = 3) -> Tensor:
    """Per-pixel ``pe(a, b) = alpha * clip((1 - SSIM(a, b)) / 2, 0, 1) + (1 - alpha) * |a - b|``.

    Averaged over channels: returns ``B x 1 x H x W`` (docs/methods.md 0.3; alpha = 0.85).
    """
    l1 = (pred - target).abs().mean(dim=1, keepdim=True)
    dssim = ((1.0 - ssim(pred, target, window)) / 2.0).clamp(0.0, 1.0).mean(dim=1, keepdim=True)
    return alpha * dssim + (1.0 - alpha) * l1


def min_reprojection(errors: list[Tensor], identity_errors: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Monodepth2 per-pixel minimum reprojection with auto-masking.

    Args:
        errors: per-pixel photometric errors ``pe(I_t, warp_s)`` for each source, ``B x 1 x H x W``.
        identity_errors: ``pe(I_t, I_s)`` of the *unwarped* sources, or None (no auto-mask).

    Returns:
        ``(loss_map, automask)``, both ``B x 1 x H x W``. ``loss_map = min(min_s errors,
        min_s identity_errors)`` is Monodepth2's ``to_optimise`` (so ``loss_map.mean()`` is its
        loss; pixels where an identity error wins carry no gradient to depth).
        ``automask = 1[min_s errors < min_s identity_errors]`` (float). Ties go to the identity
        (Monodepth2 breaks them with 1e-5 random noise instead; this version is deterministic).
        Use ``masked_mean(min_s errors, automask)`` for the masked-average variant.
    """
    if not errors:
        raise ValueError("errors must contain at least one per-pixel error map")
    reproj = torch.cat(list(errors), dim=1).amin(dim=1, keepdim=True)
    if not identity_errors:
        return reproj, torch.ones_like(reproj)
    ident = torch.cat(list(identity_errors), dim=1).amin(dim=1, keepdim=True)
    automask = (reproj < ident).to(reproj.dtype)
    return torch.minimum(reproj, ident), automask


def smoothness(disp: Tensor, img: Tensor, order: int = 1, normalise: bool | None = None) -> Tensor:
    """Edge-aware smoothness of a disparity map (scalar).

    order 1 (docs/methods.md 0.3, Monodepth2)::

        L = mean(|dx d*| e^{-mean_c |dx I|}) + mean(|dy d*| e^{-mean_c |dy I|}),  d* = d / mean(d)

    order 2 (docs/methods.md 3.3, RSD/Monodepth-style second derivatives, no normalisation)::

        L = mean(|dxx d| e^{-mean_c |dxx I|}) + mean(|dyy d| e^{-mean_c |dyy I|})

    ``mean(d)`` is per image and channel over H, W. ``normalise`` overrides the default (True for
    order 1, False for order 2). ``img`` must have the spatial size of ``disp``.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    if normalise is None:
        normalise = order == 1
    if normalise:
        disp = disp / disp.mean(dim=(2, 3), keepdim=True).clamp_min(1e-7)

    def dx(t: Tensor) -> Tensor:
        return t[:, :, :, :-1] - t[:, :, :, 1:]

    def dy(t: Tensor) -> Tensor:
        return t[:, :, :-1, :] - t[:, :, 1:, :]

    gdx, gdy, gix, giy = dx(disp), dy(disp), dx(img), dy(img)
    if order == 2:
        gdx, gdy, gix, giy = dx(gdx), dy(gdy), dx(gix), dy(giy)
    wx = torch.exp(-gix.abs().mean(dim=1, keepdim=True))
    wy = torch.exp(-giy.abs().mean(dim=1, keepdim=True))
    tx, ty = gdx.abs() * wx, gdy.abs() * wy
    # A map too small for a derivative along an axis (e.g. H = 2 with order 2) contributes 0.
    lx = tx.mean() if tx.numel() else tx.sum()
    ly = ty.mean() if ty.numel() else ty.sum()
    return lx + ly


def lr_consistency(disp_l: Tensor, disp_r: Tensor, normalised: bool = False) -> Tensor:
    """Left-right disparity consistency (Monodepth; docs/methods.md 3.3), scalar::

        L = mean|d^l - W_x(d^r, -d^l)| + mean|d^r - W_x(d^l, +d^r)|

    i.e. the right disparity sampled at ``x - d^l`` must match the left one and vice versa
    (``warp_stereo`` ``"r2l"`` / ``"l2r"``). Disparities in pixels, or width-normalised
    (``normalised=True``). Both inputs ``B x 1 x H x W``.
    """
    r_in_l = warp_stereo(disp_r, disp_l, "r2l", normalised=normalised)
    l_in_r = warp_stereo(disp_l, disp_r, "l2r", normalised=normalised)
    return (disp_l - r_in_l).abs().mean() + (disp_r - l_in_r).abs().mean()


def depth_consistency(projected_depth: Tensor, interpolated_depth: Tensor, eps: float = 1e-7) -> Tensor:
    """Per-pixel SC-Depth geometry inconsistency ``|D_proj - D_interp| / (D_proj + D_interp)``.

    Inputs are the last two outputs of :func:`harness.distill.geometry.warp_temporal`; the result
    lies in [0, 1] for positive depths. Average with :func:`masked_mean` over the valid mask.
    """
    return (projected_depth - interpolated_depth).abs() / (projected_depth + interpolated_depth).clamp_min(eps)


# --------------------------------------------------------------------------------------------
# Depth supervision
# --------------------------------------------------------------------------------------------
def silog(pred: Tensor, gt: Tensor, mask: Tensor | None = None, lam: float = 0.85, scale: float = 10.0) -> Tensor:
    """BTS scale-invariant log loss (docs/methods.md 1.5(a)), scalar::

        g = log pred - log gt   over valid pixels of the whole batch
        L = scale * sqrt(mean(g^2) - lam * mean(g)^2)

    ``mask`` selects valid GT pixels (None = all). Exactly 0 (with zero gradient) when
    ``pred == gt``; an empty mask gives 0.
    """
    if mask is None:
        mask = torch.ones_like(gt, dtype=torch.bool)
    m = torch.broadcast_to(mask.to(torch.bool), gt.shape)
    one = torch.ones((), dtype=pred.dtype, device=pred.device)
    g = torch.log(torch.where(m, pred, one)) - torch.log(torch.where(m, gt, one))
    mean_g2 = masked_mean(g * g, m)
    mean_g = masked_mean(g, m)
    var = (mean_g2 - lam * mean_g * mean_g).clamp_min(0.0)
    pos = var > 0
    return torch.where(pos, scale * torch.sqrt(torch.where(pos, var, one)), var * 0.0)


def log1p_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """``log(1 + |pred - target|)`` (Depth Hints' proxy loss; in metres it weighs the same
    relative error more the farther the pixel), masked mean (or per-pixel map)."""
    return _reduce(torch.log1p((pred - target).abs()), mask, reduction)


def laplacian_nll(residual: Tensor, log_scale: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Laplacian negative log-likelihood without constants (docs/methods.md 1.5(b))::

        L = |r| * exp(-s) + s,   s = log b   (optimum s = log |r|)

    Detach ``residual`` yourself if the NLL must not move the depth (ADU-Depth does).
    """
    return _reduce(residual.abs() * torch.exp(-log_scale) + log_scale, mask, reduction)


def focal_modulation(err: Tensor, tau: float = 0.1, gamma: float = 2.0, detach: bool = True) -> Tensor:
    """Per-pixel focal weight ``m = (1 - exp(-err / tau))^gamma`` (docs/methods.md 1.5(d)).

    Easy pixels (``err -> 0``) get ``m -> 0``, hard ones ``m -> 1``. Stop-gradient by default
    (``sg`` in the spec).
    """
    if detach:
        err = err.detach()
    return (1.0 - torch.exp(-err / tau)).clamp_min(0.0).pow(gamma)


# --------------------------------------------------------------------------------------------
# Feature / relational distillation
# --------------------------------------------------------------------------------------------
def channel_layernorm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Parameter-free LayerNorm over the channel dimension of ``B x C x H x W`` (per pixel)."""
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


def feature_distance(
    a: Tensor,
    b: Tensor,
    layernorm: bool = False,
    p: int = 2,
    mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Feature-map distance, per pixel averaged over channels, then (masked) mean over pixels.

    ``p=2``: ``||a - b||_2^2 / C`` (ADU-Depth 1.5(c)); ``p=1``: ``||a - b||_1 / C`` (RSD 3.4).
    ``layernorm=True`` applies :func:`channel_layernorm` to both first. ``mask`` may be float
    weights ``w`` (``B x 1 x H x W``): the result is then ``sum(w d) / sum(w)``; for ADU's
    ``(1/|Omega|) sum w d`` use ``(w * feature_distance(..., reduction="none")).mean()``.
    ``reduction="none"`` returns the ``B x 1 x H x W`` map. Shapes of ``a`` and ``b`` must match
    (adapt channels first).
    """
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if layernorm:
        a, b = channel_layernorm(a), channel_layernorm(b)
    diff = a - b
    if p == 2:
        d = (diff * diff).mean(dim=1, keepdim=True)
    elif p == 1:
        d = diff.abs().mean(dim=1, keepdim=True)
    else:
        raise ValueError(f"p must be 1 or 2, got {p}")
    return _reduce(d, mask, reduction)


def kl_rows(p: Tensor, q: Tensor, log_p: bool = False, log_q: bool = False, eps: float = 1e-8) -> Tensor:
    """Mean over rows of ``KL(P_i || Q_i) = sum_j P_ij (log P_ij - log Q_ij)``, scalar.

    Input convention: ``p`` is the *target* (teacher affinity ``A_T``), ``q`` the prediction
    (student ``A_S``), both ``... x N x M`` with rows (last dim) summing to 1. Pass
    log-probabilities (``log_softmax``) with ``log_p`` / ``log_q`` = True for numerical
    stability; probabilities are clamped at ``eps`` before the log. Entries with ``P_ij = 0``
    contribute 0. Detach the teacher side yourself (``L_rel = KL(sg(A_T) || A_S)``, docs/methods.md 4.4).
    """
    if p.shape != q.shape:
        raise ValueError(f"shapes differ: {tuple(p.shape)} vs {tuple(q.shape)}")
    if log_p:
        lp = p
        pp = p.exp()
    else:
        pp = p
        lp = torch.log(p.clamp_min(eps))
    lq = q if log_q else torch.log(q.clamp_min(eps))
    # Zero-probability target entries contribute 0; mask the logs first so that no -inf enters
    # the product (keeps gradients NaN-free).
    support = pp > 0
    zero = torch.zeros((), dtype=pp.dtype, device=pp.device)
    lp = torch.where(support, lp, zero)
    lq = torch.where(support, lq, zero)
    return (pp * (lp - lq)).sum(dim=-1).mean()


def ranking_labels(depth_a: Tensor, depth_b: Tensor, threshold: float = 1.15) -> Tensor:
    """Ordinal labels from a reference depth: ``+1`` if ``a / b >= threshold``, ``-1`` if
    ``b / a >= threshold``, else ``0`` (ignored by :func:`ranking_loss`). SC-DepthV3 uses 1.15."""
    ratio = depth_a / depth_b.clamp_min(1e-8)
    labels = torch.zeros_like(ratio)
    labels = torch.where(ratio >= threshold, torch.ones_like(ratio), labels)
    labels = torch.where(ratio <= 1.0 / threshold, -torch.ones_like(ratio), labels)
    return labels


def ranking_loss(depth_a: Tensor, depth_b: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Pairwise ordinal logistic loss ``log(1 + exp(-l (a - b)))`` (docs/methods.md 5.4(c)).

    ``depth_a``, ``depth_b``: predicted depths of the two pixels of each pair (any equal shapes);
    ``labels`` in {-1, 0, +1} (+1: a is farther than b). Pairs with label 0 are ignored: the mean
    runs over non-zero labels only (0 if there are none). Computed as ``softplus(-l (a - b))``.
    """
    per_pair = F.softplus(-labels * (depth_a - depth_b))
    if reduction == "none":
        return per_pair
    return _reduce(per_pair, labels != 0, reduction)


def bce(prob: Tensor, target: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on probabilities: ``-(y log p + (1 - y) log(1 - p))``.

    Logs are clamped at -100 (PyTorch's ``binary_cross_entropy`` convention); ``target`` may be
    soft. Masked mean or per-element map.
    """
    loss = F.binary_cross_entropy(prob, target.to(prob.dtype), reduction="none")
    return _reduce(loss, mask, reduction)
