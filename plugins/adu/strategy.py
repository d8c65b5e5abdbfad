"""ADU-Depth (Wu et al., arXiv 2309.14744): attention-based distillation with uncertainty
modelling, from a frozen stereo teacher to the monocular harness student (docs/methods.md 1).

Only the abstract of the paper could be read: the *structure* (stereo teacher on left-right
pairs trained first; attention-adapted feature distillation; focal-depth-adapted response
distillation; explicit uncertainty guiding both to emphasise hard regions) is from the paper,
every formula below is the documented default of docs/methods.md 1.5 ([D]).

Loss terms (config weights ``gt``, ``feat``, ``resp``, ``unc``; defaults 1, 1, 1, 0.1), with
``D_S`` the student depth, ``D_T`` the (mirrored-back) teacher depth, ``s`` the uncertainty
head's log-scale and ``w`` the stop-gradient hard-region weight:

* ``gt``   -- SILog (BTS, lambda 0.85, x10) against ground truth, averaged over ``gt_scales``
  (each scale upsampled bilinearly to full resolution).
* ``unc``  -- Laplacian NLL ``mean(r e^{-s} + s)``, ``r = |log sg(D_S) - log D_T|``.
* ``feat`` -- ``sum_k mean_p w^k ||LN(Phi_k(F_S^k)) - LN(F_T^k)||^2 / C_T^k`` (parameter-free
  channel LayerNorm; ``w^k`` = ``w`` average-pooled to the feature's grid).
* ``resp`` -- ``sum_p w m e / sum_p w``, ``e = |log D_S - log D_T|``, ``m`` the focal
  modulation ``sg((1 - exp(-e / tau))^gamma)`` (``focal_mode="focal"``) or the depth-range
  weight ``(min(D_T / D_max, 1))^kappa`` (``focal_mode="depth_range"``).

With ``resp_mask="lr"`` the ``resp`` weight is multiplied by the teacher's left-right
consistency mask (:func:`lr_consistent`).

``w = 1 + beta clip(b / mean(b), 0, c_max)`` with ``b = e^s`` and the mean per image
(``uncertainty_mode="emphasise"``) or ``w = e^{-s}`` (``"attenuate"``); ``w = 1`` during the
first ``warmup_epochs`` epochs.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import DepthOutput, HarnessError, LossDict, Needs, StepContext, Strategy
from harness.distill import flips
from harness.distill.flips import partner_on_left
from harness.distill.geometry import warp_stereo
from harness.distill.losses import feature_distance, focal_modulation, laplacian_nll, masked_mean, silog

from .modules import AttentionAdapter, UncertaintyHead

__all__ = [
    "ADUStrategy",
    "DEFAULT_FEATURE_PAIRS",
    "feat_term",
    "gt_term",
    "hard_region_weight",
    "lr_consistent",
    "resp_term",
    "teacher_residual",
    "unc_term",
]

#: student feature -> teacher feature, one pair per distilled stride (K_f = {8, 16, 32}).
#: The harness student has no decoder stage at stride 32, so its encoder output is used there.
DEFAULT_FEATURE_PAIRS = {"dec_s8": "dec_s8", "dec_s16": "dec_s16", "enc_s32": "dec_s32"}
UNCERTAINTY_MODES = ("emphasise", "attenuate")
FOCAL_MODES = ("focal", "depth_range")
RESP_MASKS = ("none", "lr")


# --------------------------------------------------------------------------------------------
# Loss terms (pure functions; golden-value tested)
# --------------------------------------------------------------------------------------------
def _up(x: Tensor, size) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def gt_term(depths: list[Tensor], gt: Tensor, mask: Tensor) -> Tensor:
    """Mean over ``depths`` (any sizes) of SILog against ``gt`` after bilinear upsampling."""
    size = gt.shape[-2:]
    return torch.stack([silog(_up(d, size), gt, mask) for d in depths]).mean()


def teacher_residual(d_s: Tensor, d_t: Tensor) -> Tensor:
    """``r = |log sg(D_S) - log D_T|`` per pixel (no gradient to either depth)."""
    return (torch.log(d_s.detach()) - torch.log(d_t.detach())).abs()


def unc_term(residual: Tensor, log_scale: Tensor) -> Tensor:
    """Laplacian NLL ``mean(r e^{-s} + s)``; only ``log_scale`` receives gradient."""
    return laplacian_nll(residual.detach(), log_scale)


def hard_region_weight(log_scale: Tensor, mode: str = "emphasise", beta: float = 1.0,
                       c_max: float = 5.0) -> Tensor:
    """Stop-gradient per-pixel weight ``w`` from the log-scale ``s`` (``B x 1 x H x W``).

    ``emphasise``: ``1 + beta * clip(b / mean(b), 0, c_max)``, ``b = e^s``, mean per image.
    ``attenuate``: ``e^{-s}`` (classic heteroscedastic weighting).
    """
    s = log_scale.detach()
    if mode == "emphasise":
        b = torch.exp(s)
        rel = b / b.mean(dim=(1, 2, 3), keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
        return 1.0 + beta * rel.clamp(0.0, c_max)
    if mode == "attenuate":
        return torch.exp(-s)
    raise ValueError(f"uncertainty_mode must be one of {UNCERTAINTY_MODES}, got {mode!r}")


def feat_term(adapted: Mapping[str, Tensor], targets: Mapping[str, Tensor], weight: Tensor | None = None,
              sample_mask: Tensor | None = None) -> Tensor:
    """Sum over pairs of ``mean_p w^k ||LN(a) - LN(t)||^2 / C`` (parameter-free channel LN).

    ``adapted[k]`` and ``targets[k]`` are ``B x C x h x w`` with equal shapes; ``weight`` is
    the full-resolution ``w`` (``B x 1 x H x W``, None = 1), average-pooled to each ``h x w``.
    ``sample_mask`` (``B`` bool/float, None = all) drops samples: the mean then runs over the
    pixels of the kept samples only (0 if none is kept).
    """
    total = None
    for k, a in adapted.items():
        t = targets[k].detach()
        d = feature_distance(a, t, layernorm=True, p=2, reduction="none")  # B x 1 x h x w
        if weight is not None:
            d = d * F.adaptive_avg_pool2d(weight.detach(), d.shape[-2:])
        m = None if sample_mask is None else sample_mask.to(d.dtype).view(-1, 1, 1, 1)
        term = masked_mean(d, m)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("feat_term needs at least one feature pair")
    return total


@torch.no_grad()
def lr_consistent(disp_left: Tensor, disp_right: Tensor, threshold: float = 1.0) -> Tensor:
    """Left-right consistency of a stereo teacher, per left pixel (float 0/1, ``B x 1 x H x W``)::

        valid(x) = 1[ |d_L(x) - d_R(x - d_L(x))| <= threshold ]   (px)

    ``d_L`` is the left-view disparity, ``d_R`` the right-view one (both in px, positive); the
    right map is sampled where the left pixel's match lies (``warp_stereo(..., "r2l")``).
    Occluded pixels, mismatches and teacher errors that the two views do not share fail it."""
    seen = warp_stereo(disp_right, disp_left, "r2l")
    return ((disp_left - seen).abs() <= threshold).to(disp_left.dtype)


def resp_term(d_s: Tensor, d_t: Tensor, weight: Tensor | None = None, focal_mode: str = "focal",
              tau: float = 0.1, gamma: float = 2.0, d_max: float = 80.0, kappa: float = 1.0) -> Tensor:
    """``sum_p w m e / sum_p w`` with ``e = |log D_S - log D_T|`` (``D_T`` constant) and the
    stop-gradient modulation ``m`` of ``focal_mode`` (see the module docstring)."""
    d_t = d_t.detach()
    e = (torch.log(d_s) - torch.log(d_t)).abs()
    if focal_mode == "focal":
        m = focal_modulation(e, tau=tau, gamma=gamma, detach=True)
    elif focal_mode == "depth_range":
        m = (d_t / d_max).clamp(0.0, 1.0).pow(kappa)
    else:
        raise ValueError(f"focal_mode must be one of {FOCAL_MODES}, got {focal_mode!r}")
    w = torch.ones_like(e) if weight is None else weight.detach().expand_as(e)
    return (w * m * e).sum() / w.sum().clamp_min(torch.finfo(e.dtype).tiny)


# --------------------------------------------------------------------------------------------
# Strategy
# --------------------------------------------------------------------------------------------
class ADUStrategy(Strategy):
    """ADU-Depth: frozen stereo teacher -> monocular student (docs/methods.md 1, all formulas [D]).

    Args (every one is a ``method.*`` config key):
        feature_pairs: ``{student feature: teacher feature}``, one pair per distilled stride
            (strides must match); default ``dec_s8->dec_s8, dec_s16->dec_s16, enc_s32->dec_s32``.
        window, heads, mlp_ratio: attention-adapter shape (7, ``C_T // 32``, 2).
        unc_feature: student feature the uncertainty head reads (``dec_s1``, the last decoder
            stage, full resolution).
        unc_detach_input: stop the NLL gradient at the head's input (default False: the head is
            an auxiliary branch of the student decoder).
        uncertainty_mode: ``"emphasise"`` (default) or ``"attenuate"``.
        beta, c_max: hard-region weight ``1 + beta clip(b / mean b, 0, c_max)`` (1, 5).
        warmup_epochs: epochs with ``w = 1`` while the head calibrates (1).
        focal_mode: ``"focal"`` (default, ``tau``, ``gamma``) or ``"depth_range"`` (``d_max``,
            ``kappa``).
        feat_kd_on_flipped: distil features on samples whose teacher output was mirrored back
            (default True).
        gt_scales: student scales supervised by SILog, each upsampled to full resolution
            (default ``(0, 1, 2, 3)``, as the baseline; chosen on val over the spec's ``(0,)``).
        resp_mask: ``"none"`` (docs/methods.md default) or ``"lr"``: ``resp`` only where the teacher is
            left-right consistent (a second teacher pass on the mirrored, swapped pair gives the
            right-view disparity; :func:`lr_consistent` with ``lr_threshold`` px). The teacher's
            errors near cars and poles are then not distilled where its two views disagree.
        loss_weights: ``gt``, ``feat``, ``resp``, ``unc`` (1, 1, 1, 0.1).
    """

    teacher_mode = "frozen"
    eval_scale_policy = "none"
    default_loss_weights = {"gt": 1.0, "feat": 1.0, "resp": 1.0, "unc": 0.1}

    def __init__(
        self,
        feature_pairs: Mapping[str, str] | None = None,
        window: int = 7,
        heads: int | None = None,
        mlp_ratio: float = 2.0,
        unc_feature: str = "dec_s1",
        unc_detach_input: bool = False,
        uncertainty_mode: str = "emphasise",
        beta: float = 1.0,
        c_max: float = 5.0,
        warmup_epochs: int = 1,
        focal_mode: str = "focal",
        tau: float = 0.1,
        gamma: float = 2.0,
        d_max: float = 80.0,
        kappa: float = 1.0,
        feat_kd_on_flipped: bool = True,
        gt_scales: tuple[int, ...] | list[int] = (0, 1, 2, 3),
        resp_mask: str = "none",
        lr_threshold: float = 1.0,
        loss_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__(loss_weights)
        unknown = set(self.loss_weights) - set(self.default_loss_weights)
        if unknown:
            raise HarnessError(f"method.loss_weights has unknown term(s) {sorted(unknown)}; "
                               f"ADU-Depth has {sorted(self.default_loss_weights)}")
        self.choice("uncertainty_mode", uncertainty_mode, UNCERTAINTY_MODES)
        self.choice("resp_mask", resp_mask, RESP_MASKS)
        if not float(lr_threshold) > 0:
            raise HarnessError(f"method.lr_threshold must be positive (px), got {lr_threshold!r}")
        self.resp_mask = resp_mask
        self.lr_threshold = float(lr_threshold)
        self.choice("focal_mode", focal_mode, FOCAL_MODES)
        pairs = dict(DEFAULT_FEATURE_PAIRS if feature_pairs is None else feature_pairs)
        if not pairs and float(self.loss_weights["feat"]) != 0.0:
            raise HarnessError("method.feature_pairs is empty but loss_weights.feat is not 0")
        gt_scales = tuple(int(i) for i in gt_scales)
        if not gt_scales:
            raise HarnessError("method.gt_scales must name at least one scale")
        self.feature_pairs = pairs
        self.window = int(window)
        self.heads = heads
        self.mlp_ratio = float(mlp_ratio)
        self.unc_feature = unc_feature
        self.unc_detach_input = bool(unc_detach_input)
        self.uncertainty_mode = uncertainty_mode
        self.beta = float(beta)
        self.c_max = float(c_max)
        self.warmup_epochs = int(warmup_epochs)
        self.focal_mode = focal_mode
        self.tau, self.gamma = float(tau), float(gamma)
        self.d_max, self.kappa = float(d_max), float(kappa)
        self.feat_kd_on_flipped = bool(feat_kd_on_flipped)
        self.gt_scales = gt_scales
        self._epoch = 0

        keys = {"image", "image_right", "meta"}
        if self._on("gt"):
            keys |= {"depth_gt", "depth_gt_mask"}
        self.required_batch_keys = frozenset(keys)
        self.student_needs = Needs(depth=True, scales=tuple(sorted({0, *gt_scales})),
                                   features=frozenset({*pairs, unc_feature}))
        self.teacher_needs = Needs(depth=True, features=frozenset(pairs.values()))
        self.adapters = nn.ModuleDict()
        self.unc_head: UncertaintyHead | None = None

    def _on(self, term: str) -> bool:
        return float(self.loss_weights.get(term, 0.0)) != 0.0

    # -- construction ----------------------------------------------------------------------
    def build(self, student: nn.Module, teacher: nn.Module | None) -> None:
        """One attention adapter per feature pair (``C_S -> C_T``) and the uncertainty head."""
        if teacher is None:
            raise HarnessError("ADU-Depth needs the frozen stereo teacher (config `teacher`)")
        s_specs = {s.name: s for s in student.feature_specs()}
        t_specs = {s.name: s for s in teacher.feature_specs()}
        self.adapters = nn.ModuleDict()
        for s_name, t_name in self.feature_pairs.items():
            if s_name not in s_specs or t_name not in t_specs:
                raise HarnessError(f"method.feature_pairs {s_name}->{t_name}: the student has "
                                   f"{sorted(s_specs)}, the teacher {sorted(t_specs)}")
            fs, ft = s_specs[s_name], t_specs[t_name]
            if fs.stride != ft.stride:
                raise HarnessError(f"method.feature_pairs {s_name}->{t_name}: strides differ "
                                   f"({fs.stride} vs {ft.stride})")
            self.adapters[s_name] = AttentionAdapter(fs.channels, ft.channels, heads=self.heads,
                                                     window=self.window, mlp_ratio=self.mlp_ratio)
        if self.unc_feature not in s_specs:
            raise HarnessError(f"method.unc_feature={self.unc_feature!r}: the student has {sorted(s_specs)}")
        self.unc_head = UncertaintyHead(s_specs[self.unc_feature].channels)

    # -- events ----------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = int(epoch)

    @property
    def weighting_active(self) -> bool:
        """False during the warm-up epochs (``w = 1`` there)."""
        return self._epoch >= self.warmup_epochs

    # -- per step --------------------------------------------------------------------------
    def teacher_forward(self, teacher: nn.Module | None, batch: dict[str, Any],
                        s_out: dict[str, DepthOutput]) -> DepthOutput | None:
        """The frozen teacher on canonical pairs; with ``resp_mask="lr"`` also its left-right
        consistency (``aux["lr_valid"]``, in the frame of each sample as the batch gives it)."""
        out = super().teacher_forward(teacher, batch, s_out)
        if out is None or self.resp_mask != "lr":
            return out
        canon, mirrored = flips.canonical(batch)
        with torch.no_grad():
            # the right view as the reference: mirroring the (right, left) pair makes it canonical
            swapped = dict(canon, image=torch.flip(canon["image_right"], dims=[-1]),
                           image_right=torch.flip(canon["image"], dims=[-1]))
            disp_right = torch.flip(teacher(swapped).disp[0], dims=[-1])
            disp_left = flips.mirror_back(out.disp[0], mirrored)  # back into the canonical frame
            valid = lr_consistent(disp_left, disp_right, self.lr_threshold)
        out.aux["lr_valid"] = flips.mirror_back(valid, mirrored)
        return out

    def compute_loss(self, batch: dict[str, Any], s_out: dict[str, DepthOutput], t_out: DepthOutput | None,
                     ctx: StepContext) -> LossDict:
        out = s_out["clean"]
        d_s = out.depth[0]
        terms: dict[str, Tensor] = {}
        if self._on("gt"):
            terms["gt"] = gt_term([out.depth[i] for i in self.gt_scales], batch["depth_gt"], batch["depth_gt_mask"])
        if t_out is None:
            raise HarnessError("ADU-Depth needs the teacher output")
        d_t = _up(t_out.depth[0], d_s.shape[-2:])

        feat_in = out.features[self.unc_feature]
        log_scale = self.unc_head(feat_in.detach() if self.unc_detach_input else feat_in)
        log_scale = _up(log_scale, d_s.shape[-2:])
        terms["unc"] = unc_term(teacher_residual(d_s, d_t), log_scale)
        w = (hard_region_weight(log_scale, self.uncertainty_mode, self.beta, self.c_max)
             if self.weighting_active else None)

        if self._on("feat"):
            adapted = {s: self.adapters[s](out.features[s]) for s in self.feature_pairs}
            targets = {s: t_out.features[t] for s, t in self.feature_pairs.items()}
            keep = None
            if not self.feat_kd_on_flipped:
                keep = ~partner_on_left(batch)
            terms["feat"] = feat_term(adapted, targets, w, keep)
        w_resp = w
        if self.resp_mask == "lr":
            valid = _up(t_out.aux["lr_valid"], d_s.shape[-2:])
            w_resp = valid if w is None else w * valid
        terms["resp"] = resp_term(d_s, d_t, w_resp, self.focal_mode, self.tau, self.gamma, self.d_max, self.kappa)
        return self.weighted(terms)
