"""``selective``: selective distillation of stereo knowledge (Song & Yoon, arXiv 2205.08668).

A frozen stereo teacher gives a proxy disparity ``d_P``; a MaskDecoder on the student's encoder
learns, per pixel, whether the proxy or the student's own (self-supervised) estimate is the better
explanation of the stereo pair; the binarised masks condition the student's depth decoder, which
learns from the proxy only inside the proxy mask and from the photometric loss elsewhere; a
Teacher-Student module adds feature hints from the stereo teacher. Specification:
``docs/methods.md`` section 2 (every detail there is a [D] default; see this plugin's README
for which interpretation each option takes).

Loss terms (all through :meth:`Strategy.weighted`; ``Σ_i`` over scales is a mean over scales)::

    photo  = mean_i mean_p  min(pe(I, W(I_r, d_S^i)), pe(I, I_r))     (Monodepth2 auto-mask)
    smooth = mean_i L_sm(disp^i, I^i) / 2^i
    proxy  = mean_i mean_p  M_P^i(p) v(p) log(1 + |D_S^i(p) - D_P(p)|)
    mask   = mean_i [BCE(ŷ_P^i, y_P↓i) + BCE(ŷ_S^i, y_S↓i)]
    ts     = Σ_k mean_p ||A_k(E^k) - G^k||² / C_k       (feature hint)
           | mean_{p: y_P} c_P(p) |log D_S - log D_P|     (response fallback)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import DepthOutput, HarnessError, LossDict, Needs, RunInfo, StepContext, Strategy
from harness.distill.flips import flip_where, mirror_back, partner_on_left
from harness.distill.geometry import focal_baseline, warp_stereo
from harness.distill.losses import (
    bce, box_mean, feature_distance, log1p_l1, masked_mean, min_reprojection, photometric_error, smoothness,
)

from .modules import FeatureAdapter, MaskDecoder, forward_with_masks, has_shared_encoder

__all__ = [
    "SelectiveStrategy",
    "mask_loss",
    "mask_targets",
    "photo_from_errors",
    "photo_loss",
    "proxy_loss",
    "smooth_loss",
    "ts_feature_loss",
    "ts_response_loss",
]

#: batch keys of the self-supervised stereo set-up (the proxy keys are added by the harness when
#: ``proxy_source="precomputed"``; they must not be listed here)
STEREO_KEYS = frozenset({"image", "image_right", "K", "baseline", "meta"})
PROXY_SOURCES = ("online", "precomputed")
TS_MODES = ("auto", "feature", "response")
PHOTO_REGIONS = ("all", "outside_proxy", "self")
PROXY_MASKS = ("pred", "target")
PROXY_FORMS = ("log1p_l1", "abs_log")
#: deprecated spellings of ``proxy_form`` still accepted (result files of earlier runs use them)
PROXY_FORM_ALIASES = {"log_l1": "log1p_l1"}
MASK_TARGETS = ("A", "B")
#: registered teachers known to return ``aux["confidence"]``
CONFIDENCE_TEACHERS = frozenset({"sgbm"})


# --------------------------------------------------------------------------------------------
# Stereo-pair geometry of (possibly mirrored) samples
# --------------------------------------------------------------------------------------------
def _sign(sel: Tensor, like: Tensor) -> Tensor:
    """``+1`` (partner on the right: ``out(x) = right(x - d)``) or ``-1`` per sample."""
    return (1.0 - 2.0 * sel.to(like.dtype)).view(-1, 1, 1, 1)


def _reprojection(img: Tensor, right: Tensor, disp_px: Tensor, sign: Tensor) -> Tensor:
    """``pe(I, W_x(I_r, ±d))`` per pixel, ``B x 1 x H x W``."""
    return photometric_error(warp_stereo(right.to(img.dtype), (sign * disp_px).to(img.dtype), "r2l"), img)


def _up(x: Tensor, size, mode: str = "bilinear") -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest")
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


# --------------------------------------------------------------------------------------------
# Loss terms (pure functions, unit-tested one by one)
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def mask_targets(e_proxy: Tensor, e_self: Tensor, e_ident: Tensor, proxy_valid: Tensor | None = None,
                 margin: float = 0.0, window: int = 1) -> tuple[Tensor, Tensor]:
    """Interpretation A of docs/methods.md 2.4(b), per pixel (float 0/1 maps)::

        y_P = 1[<E_P> < (1 - m) <E_S>] 1[E_P < E_id]      proxy clearly better than own estimate, not static
        y_S = 1[<E_P> >= (1 - m) <E_S>] 1[E_S < E_id]     own estimate better, or as good

    ``m = margin``; ``<E>`` is the ``window x window`` local mean of the error map (replicated
    border; 1 = the pixel itself). ``margin=0, window=1`` is the plain per-pixel comparison,
    which is a coin flip once the student has copied the proxy (``E_S ~ E_P`` up to noise): the
    MaskDecoder then learns "proxy almost everywhere". Comparing local means with a margin
    averages the per-pixel noise out, gives ties to the student's own estimate and keeps the
    proxy where it explains the pair clearly better over a neighbourhood.
    ``proxy_valid`` (bool) marks pixels with a usable proxy; elsewhere ``E_P = +inf`` (so
    ``y_P = 0`` and ``y_S = 1[E_S < E_id]``).
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"mask target margin must be in [0, 1), got {margin}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"mask target window must be a positive odd integer, got {window}")
    local_p, local_s = e_proxy, e_self
    if window > 1:
        p = window // 2
        both = F.pad(torch.cat([e_proxy, e_self], 1), (p, p, p, p), mode="replicate")
        local_p, local_s = box_mean(both, window).chunk(2, dim=1)
    proxy_wins = local_p < (1.0 - margin) * local_s
    if proxy_valid is not None:
        proxy_wins = proxy_wins & proxy_valid.bool()
    y_p = proxy_wins & (e_proxy < e_ident)
    y_s = ~proxy_wins & (e_self < e_ident)
    return y_p.to(e_self.dtype), y_s.to(e_self.dtype)


def photo_loss(img: Tensor, right: Tensor, depths: list[Tensor], fb: Tensor, sign: Tensor,
               weights: list[Tensor] | None = None, automask: bool = True) -> Tensor:
    """Self-supervised stereo photometric term, mean over the scales in ``depths``.

    Each ``depths[j]`` (full resolution, metric or normalised-baseline depth) gives the disparity
    ``fb / D`` that warps the right view; per pixel Monodepth2's ``min(pe(I, W(I_r)),
    pe(I, I_r))`` when ``automask`` (identity pixels carry no gradient), else ``pe(I, W(I_r))``.
    ``weights[j]`` (optional, ``B x 1 x H x W``) restricts the mean to a region (masked mean).
    """
    errors = [_reprojection(img, right, fb / depth, sign) for depth in depths]
    return photo_from_errors(errors, photometric_error(right, img) if automask else None, weights)


def photo_from_errors(errors: list[Tensor], ident: Tensor | None, weights: list[Tensor] | None = None) -> Tensor:
    """:func:`photo_loss` from per-scale reprojection error maps and the identity error map
    (``None``: no auto-mask)."""
    per_scale = []
    for j, err in enumerate(errors):
        loss_map, _ = min_reprojection([err], [ident] if ident is not None else None)
        per_scale.append(loss_map.mean() if weights is None else masked_mean(loss_map, weights[j]))
    return torch.stack(per_scale).mean()


def smooth_loss(disps: dict[int, Tensor], img: Tensor) -> Tensor:
    """``mean_i L_sm(disp^i, I^i) / 2^i`` (first order, edge-aware, mean-normalised disparity);
    ``I^i`` is the image area-downsampled to the scale's size."""
    terms = []
    for i, d in disps.items():
        img_i = img if img.shape[-2:] == d.shape[-2:] else F.interpolate(img, size=d.shape[-2:], mode="area")
        terms.append(smoothness(d, img_i, order=1) / (2**i))
    return torch.stack(terms).mean()


def proxy_loss(depths: list[Tensor], proxy_depth: Tensor, masks: list[Tensor], form: str = "log1p_l1") -> Tensor:
    """Selective proxy supervision, mean over scales::

        log1p_l1 (Depth Hints):         mean_p  M^j(p) log(1 + |D^j(p) - D_P(p)|)
        abs_log (switch):               mean_p  M^j(p) |log D^j(p) - log D_P(p)|

    ``depths[j]`` and ``masks[j]`` are at full resolution; the mean runs over ALL pixels (not a
    masked mean), as in docs/methods.md 2.4(c) and Depth Hints. ``masks`` carry the proxy validity.
    ``abs_log`` weighs relative errors equally at every distance (log-L1 in metres weighs an
    error of x % more the farther the pixel).
    """
    form = PROXY_FORM_ALIASES.get(form, form)
    if form == "log1p_l1":
        per_pixel = [log1p_l1(d, proxy_depth, reduction="none") for d in depths]
    elif form == "abs_log":
        per_pixel = [(torch.log(d) - torch.log(proxy_depth)).abs() for d in depths]
    else:
        raise ValueError(f"proxy loss form must be 'log1p_l1' or 'abs_log', got {form!r}")
    return torch.stack([(m * e).mean() for e, m in zip(per_pixel, masks)]).mean()


def mask_loss(probs: dict[int, Tensor], y_p: Tensor, y_s: Tensor) -> Tensor:
    """``mean_i [BCE(ŷ_P^i, y_P↓i) + BCE(ŷ_S^i, y_S↓i)]``; targets nearest-downsampled."""
    terms = []
    for p in probs.values():
        size = p.shape[-2:]
        terms.append(bce(p[:, 0:1], _up(y_p, size, "nearest")) + bce(p[:, 1:2], _up(y_s, size, "nearest")))
    return torch.stack(terms).mean()


def ts_feature_loss(student_feats: list[Tensor], teacher_feats: list[Tensor]) -> Tensor:
    """``Σ_k mean_p ||A_k(E^k) - G^k||² / C_k`` (adapted student features first, teacher
    features are detached)."""
    return torch.stack([feature_distance(a, g.detach(), p=2) for a, g in zip(student_feats, teacher_feats)]).sum()


def ts_response_loss(depth: Tensor, proxy_depth: Tensor, y_p: Tensor, conf: Tensor | None = None) -> Tensor:
    """Response fallback ``sum_p y_P c_P |log D_S - log D_P| / sum_p y_P`` (``c_P = 1`` when no
    confidence is given): the mean over the pixels where the proxy wins of the
    confidence-weighted log error."""
    err = (torch.log(depth) - torch.log(proxy_depth)).abs()
    if conf is not None:
        err = err * conf
    return masked_mean(err, y_p)


# --------------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------------
class SelectiveStrategy(Strategy):
    """Selective distillation of stereo knowledge (see the module docstring and README).

    Options (``method.*`` in the config):
        proxy_source: ``"online"`` (the cached frozen teacher runs every step on the canonical
            un-mirrored pair; outputs mirrored back) or ``"precomputed"`` (``proxy_disp`` /
            ``proxy_conf`` batch keys made once by the harness; no teacher features, so the TS
            term falls back to its response form).
        proxy_conf: use the teacher's confidence: ``"auto"`` (online: if the teacher returns
            ``aux["confidence"]``; precomputed: resolved from ``teacher.type`` in
            :meth:`on_run_start`), ``True`` or ``False``.
        conf_threshold: a proxy pixel with confidence ``<= conf_threshold`` is invalid.
        mask_targets: ``"A"`` (proxy vs own estimate vs identity) or ``"B"`` (left/right proxy
            validity; needs ``proxy_source="online"`` and a teacher that works on any pair).
        joint_mask_grad: False = ``sg`` on ``ŷ`` before binarising (masks learn from BCE only);
            True = straight-through gradients from the depth losses into the MaskDecoder.
        mask_threshold: binarisation threshold (0.5).
        target_margin, target_window: the mask targets compare ``window x window`` local means
            of the error maps with a relative margin (``y_P`` needs ``<E_P> < (1 - m) <E_S>``;
            ties go to the student), see :func:`mask_targets`; 0 and 1 = the plain rule.
        proxy_mask: which mask gates the proxy term: ``"pred"`` (the binarised MaskDecoder output,
            docs/methods.md 2.4(c)) or ``"target"`` (the reprojection-error target ``y_P``).
        proxy_form: ``"log1p_l1"`` (Depth Hints ``log(1 + |D_S - D_P|)``, docs/methods.md 2.4(c); the
            old name ``"log_l1"`` is a deprecated alias) or
            ``"abs_log"`` (``|log D_S - log D_P|``).
        photo_region: where the photometric term applies: ``"all"`` (auto-mask only, docs/methods.md
            2.4(d)), ``"outside_proxy"`` (``1 - M_P``) or ``"self"`` (``M_S``).
        automask: Monodepth2 identity auto-masking of the photometric term.
        ts_mode: ``"auto"`` (feature hints when the teacher exposes the features, else response),
            ``"feature"`` or ``"response"``.
        ts_pairs: student feature -> teacher feature for the hints.
        cond_strides: decoder stages of the student conditioned on the 2 binarised masks.
        scales: loss scales (0 must be among them).
        baseline_norm: None = metric baseline from the batch (eval policy ``none``); a number
            (Monodepth2: 0.1) = train with that baseline (eval policy ``stereo_factor``, factor
            ``eval_baseline / baseline_norm``, set from ``eval_stereo_factor``).
        eval_baseline: the data's true baseline in metres (0.54 for synth and KITTI); checked
            against the batch when ``baseline_norm`` is set.
        encoder_pass: ``"auto"`` / ``"shared"`` (the encoder runs once per forward) / ``"twice"``
            (public student API only: one extra forward).
    """

    teacher_mode = "frozen"
    precompute: dict[str, str] = {}
    required_batch_keys = STEREO_KEYS
    default_loss_weights = {"photo": 1.0, "smooth": 1e-3, "proxy": 1.0, "mask": 0.1, "ts": 0.1}

    def __init__(
        self,
        proxy_source: str = "online",
        proxy_conf: str | bool = "auto",
        conf_threshold: float = 0.5,
        mask_targets: str = "A",
        joint_mask_grad: bool = False,
        mask_threshold: float = 0.5,
        target_margin: float = 0.2,
        target_window: int = 7,
        proxy_mask: str = "pred",
        proxy_form: str = "log1p_l1",
        photo_region: str = "all",
        automask: bool = True,
        ts_mode: str = "auto",
        ts_pairs: dict[str, str] | None = None,
        cond_strides=(16, 8, 4, 2, 1),
        scales=(0, 1, 2, 3),
        baseline_norm: float | None = None,
        eval_baseline: float = 0.54,
        encoder_pass: str = "auto",
        loss_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__(loss_weights)
        choose = self.choice
        self.proxy_source = choose("proxy_source", proxy_source, PROXY_SOURCES)
        self.proxy_conf = choose("proxy_conf", proxy_conf, ("auto", True, False))
        self.conf_threshold = float(conf_threshold)
        self.mask_target_mode = choose("mask_targets", mask_targets, MASK_TARGETS)
        if self.mask_target_mode == "B" and self.proxy_source != "online":
            raise HarnessError("method.mask_targets='B' needs right-view proxies, which only "
                               "proxy_source='online' can make; use mask_targets='A'")
        self.joint_mask_grad = bool(joint_mask_grad)
        self.mask_threshold = float(mask_threshold)
        if not 0.0 <= float(target_margin) < 1.0:
            raise HarnessError(f"method.target_margin must be in [0, 1), got {target_margin!r}")
        self.target_margin = float(target_margin)
        if int(target_window) < 1 or int(target_window) % 2 == 0:
            raise HarnessError(f"method.target_window must be a positive odd integer, got {target_window!r}")
        self.target_window = int(target_window)
        self.proxy_mask = choose("proxy_mask", proxy_mask, PROXY_MASKS)
        self.proxy_form = choose("proxy_form", PROXY_FORM_ALIASES.get(proxy_form, proxy_form), PROXY_FORMS)
        self.photo_region = choose("photo_region", photo_region, PHOTO_REGIONS)
        self.automask = bool(automask)
        self.ts_mode = choose("ts_mode", ts_mode, TS_MODES)
        self.ts_pairs = dict(ts_pairs or {"enc_s4": "dec_s4", "enc_s8": "dec_s8"})
        self.cond_strides = tuple(int(s) for s in cond_strides)
        bad = [s for s in self.cond_strides if s not in (1, 2, 4, 8, 16)]
        if bad:
            raise HarnessError(f"method.cond_strides: {bad} are not decoder strides (1, 2, 4, 8, 16)")
        self.scales = tuple(sorted(int(i) for i in scales))
        if 0 not in self.scales:
            raise HarnessError(f"method.scales must contain 0 (full resolution), got {list(scales)}")
        if baseline_norm is not None and not float(baseline_norm) > 0:
            raise HarnessError(f"method.baseline_norm must be None or positive, got {baseline_norm!r}")
        self.baseline_norm = None if baseline_norm is None else float(baseline_norm)
        self.eval_baseline = float(eval_baseline)
        self.encoder_pass = choose("encoder_pass", encoder_pass, ("auto", "shared", "twice"))

        # what the harness validates / prepares
        self.eval_scale_policy = "none" if self.baseline_norm is None else "stereo_factor"
        if self.baseline_norm is not None:
            self.eval_stereo_factor = round(self.eval_baseline / self.baseline_norm, 6)
        if self.proxy_source == "online":
            self.teacher_mode = "frozen"
            self.precompute = {}
        else:
            self.teacher_mode = "precomputed"
            self.precompute = {"proxy_disp": "disp"}
            if self.proxy_conf is True:
                self.precompute["proxy_conf"] = "aux:confidence"
        self.required_batch_keys = STEREO_KEYS
        uses_features = self.ts_mode != "response" and self.proxy_source == "online"
        self.student_needs = Needs(
            depth=True, scales=self.scales, accepts_cond=frozenset({"decoder_extra"}),
            features=frozenset(self.ts_pairs) if uses_features else frozenset(),
        )
        self.teacher_needs = Needs(depth=True, features=frozenset(self.ts_pairs.values())
                                   if self.ts_mode == "feature" else frozenset())
        if self.ts_mode == "feature" and self.proxy_source == "precomputed":
            raise HarnessError("method.ts_mode='feature' needs teacher features, which precomputed "
                               "proxies do not carry; use ts_mode='auto' or 'response'")
        self.mask_decoder: MaskDecoder | None = None
        self.adapters = nn.ModuleDict()
        self.ts_kind = "response"
        self.min_depth, self.max_depth = 0.1, 100.0

    # -- construction ----------------------------------------------------------------------
    def on_run_start(self, run: RunInfo) -> None:
        """``proxy_conf="auto"`` with precomputed proxies: precompute the teacher's confidence
        when the configured teacher has one (:data:`CONFIDENCE_TEACHERS`)."""
        if self.proxy_source == "precomputed" and self.proxy_conf == "auto":
            self.proxy_conf = run.teacher in CONFIDENCE_TEACHERS
            if self.proxy_conf:
                self.precompute = {**self.precompute, "proxy_conf": "aux:confidence"}

    def build(self, student: nn.Module, teacher: nn.Module | None) -> None:
        if not hasattr(student, "decoder_extra_channels"):
            raise HarnessError(f"selective needs a student with decoder_extra_channels(); "
                               f"{type(student).__name__} has none")
        specs = {s.name: s for s in student.feature_specs()}
        enc = {s.stride: s.channels for s in specs.values() if s.name.startswith("enc_s")}
        dec = {s.stride: s.channels for s in specs.values() if s.name.startswith("dec_s")}
        student.decoder_extra_channels({s: 2 for s in self.cond_strides})
        self.mask_decoder = MaskDecoder(enc, dec, scales=self.scales, out_channels=2)
        if self.encoder_pass == "auto":
            self.encoder_pass = "shared" if has_shared_encoder(student) else "twice"
        self.min_depth = float(getattr(student, "min_depth", 0.1))
        self.max_depth = float(getattr(student, "max_depth", 100.0))

        t_specs = {s.name: s for s in teacher.feature_specs()} if teacher is not None and \
            hasattr(teacher, "feature_specs") else {}
        have = all(t in t_specs for t in self.ts_pairs.values())
        if self.ts_mode == "feature" and not have:
            raise HarnessError(f"selective ts_mode='feature': the teacher exposes "
                               f"{sorted(t_specs) or 'no features'}, needs {sorted(self.ts_pairs.values())}")
        self.ts_kind = "feature" if self.ts_mode != "response" and have and self.proxy_source == "online" \
            else "response"
        if self.ts_kind == "feature":
            for s_name, t_name in self.ts_pairs.items():
                if s_name not in specs:
                    raise HarnessError(f"selective ts_pairs: the student has no feature {s_name!r}")
                if specs[s_name].stride != t_specs[t_name].stride:
                    raise HarnessError(f"selective ts_pairs: {s_name} (stride {specs[s_name].stride}) and "
                                       f"{t_name} (stride {t_specs[t_name].stride}) differ in stride")
                self.adapters[s_name] = FeatureAdapter(specs[s_name].channels, t_specs[t_name].channels)

    # -- per step --------------------------------------------------------------------------
    def _run_student(self, student: nn.Module, image: Tensor) -> DepthOutput:
        if self.mask_decoder is None:
            raise HarnessError("selective: build() was not called before the first forward")
        out, probs, masks = forward_with_masks(
            student, self.mask_decoder, image, self.cond_strides, threshold=self.mask_threshold,
            straight_through=self.joint_mask_grad, encoder_pass=self.encoder_pass,
        )
        for i in probs:
            out.aux[f"mask_prob_{i}"] = probs[i]
            out.aux[f"mask_{i}"] = masks[i]
        return out

    def student_forward(self, student: nn.Module, batch: dict[str, Any]) -> dict[str, DepthOutput]:
        return {"clean": self._run_student(student, batch["image"])}

    def teacher_forward(self, teacher: nn.Module | None, batch: dict[str, Any],
                        s_out: dict[str, DepthOutput]) -> DepthOutput | None:
        """The frozen teacher on the canonical pair: samples whose partner view lies on the
        left (mirrored with roles kept) are un-mirrored first and the outputs mirrored back.
        With ``mask_targets="B"`` the right-view proxy comes from a second pass on the
        mirrored-and-swapped pair (``aux["disp_right"]``, right-view px)."""
        if teacher is None or self.proxy_source != "online":
            return None
        sel = partner_on_left(batch)
        with torch.no_grad():
            out = _teacher_canonical(teacher, batch, batch["image"], batch["image_right"], sel)
            if self.mask_target_mode == "B":
                # right view as reference: mirroring the (right, left) pair makes it canonical
                right = _teacher_canonical(teacher, batch, batch["image_right"], batch["image"], ~sel)
                out.aux["disp_right"] = right.disp[0]
        return out

    def _proxy(self, batch: dict[str, Any], t_out: DepthOutput | None) -> tuple[Tensor, Tensor | None]:
        if self.proxy_source == "precomputed":
            if "proxy_disp" not in batch:
                raise HarnessError("selective proxy_source='precomputed': the batch has no "
                                   "'proxy_disp' (this harness does not precompute teacher outputs)")
            disp, conf = batch["proxy_disp"], batch.get("proxy_conf")
        else:
            if t_out is None:
                raise HarnessError("selective proxy_source='online' needs the frozen teacher")
            disp, conf = t_out.disp[0], t_out.aux.get("confidence")
        if self.proxy_conf is False:
            conf = None
        return disp.to(batch["image"].dtype), None if conf is None else conf.to(batch["image"].dtype)

    def focal_baseline(self, batch: dict[str, Any]) -> Tensor:
        """``fx * b`` per sample (``B x 1 x 1 x 1``); ``b`` = ``baseline_norm`` when set."""
        return focal_baseline(batch, self.baseline_norm, self.eval_baseline, owner="selective baseline_norm")

    def compute_loss(self, batch: dict[str, Any], s_out: dict[str, DepthOutput],
                     t_out: DepthOutput | None, ctx: StepContext) -> LossDict:
        out = s_out["clean"]
        img, right = batch["image"], batch["image_right"]
        size = img.shape[-2:]
        sign = _sign(partner_on_left(batch), img)
        fb = self.focal_baseline(batch)
        proxy_disp, conf = self._proxy(batch, t_out)
        valid = proxy_disp > 0
        if conf is not None:
            valid = valid & (conf > self.conf_threshold)
        proxy_depth = (fb / proxy_disp.clamp_min(1e-6)).clamp(self.min_depth, self.max_depth)
        depths = [_up(out.depth[i], size) for i in self.scales]

        # per-pixel photometric errors, shared by the photo term and the mask targets
        e_id = photometric_error(right, img)
        errors = [_reprojection(img, right, fb / d, sign) for d in depths]
        y_p, y_s, second = self.mask_targets_for(batch, depths[0], proxy_disp, valid, t_out,
                                                 e_self=errors[0].detach(), e_ident=e_id)

        probs = {i: out.aux[f"mask_prob_{i}"] for i in self.scales}
        bins = {i: out.aux[f"mask_{i}"] for i in self.scales}

        def region(i: int, channel: int) -> Tensor:
            if self.proxy_mask == "target":
                return (y_p, y_s)[channel]
            m = bins[i][:, channel:channel + 1]
            return _up(m.detach(), size, "nearest")

        valid_f = valid.to(img.dtype)
        if self.mask_target_mode == "A":
            prox = proxy_loss(depths, proxy_depth, [region(i, 0) * valid_f for i in self.scales], self.proxy_form)
        else:  # B: left proxy inside mask 0, right proxy (seen from the left view) inside mask 1
            depth_r, valid_r = second
            prox = proxy_loss(depths, proxy_depth, [region(i, 0) * valid_f for i in self.scales], self.proxy_form) + \
                proxy_loss(depths, depth_r, [region(i, 1) * valid_r for i in self.scales], self.proxy_form)
        if self.photo_region == "all":
            weights = None
        elif self.photo_region == "outside_proxy":
            weights = [1.0 - region(i, 0) for i in self.scales]
        else:
            weights = [region(i, 1) for i in self.scales]

        terms = {
            "photo": photo_from_errors(errors, e_id if self.automask else None, weights),
            "smooth": smooth_loss({i: out.disp[i] for i in self.scales}, img),
            "proxy": prox,
            "mask": mask_loss(probs, y_p, y_s),
        }
        if self.ts_kind == "feature":
            terms["ts"] = ts_feature_loss([self.adapters[s](out.features[s]) for s in self.ts_pairs],
                                          [t_out.features[t] for t in self.ts_pairs.values()])
        else:
            terms["ts"] = ts_response_loss(out.depth[0], proxy_depth, y_p * valid_f, conf)
        return self.weighted(terms)

    @torch.no_grad()
    def mask_targets_for(self, batch: dict[str, Any], depth: Tensor, proxy_disp: Tensor, valid: Tensor,
                         t_out: DepthOutput | None = None, e_self: Tensor | None = None,
                         e_ident: Tensor | None = None) -> tuple[Tensor, Tensor, Any]:
        """Mask targets (docs/methods.md 2.4(a)-(b)) of a batch from the student's full-resolution depth
        ``depth`` and the proxy disparity (px): ``(y_P, y_S, None)`` for interpretation A;
        ``(y_left, y_right, (right proxy depth, its validity))`` for B. No gradient.
        ``e_self`` / ``e_ident`` are the error maps ``E_S`` / ``E_id`` if already computed."""
        img, right = batch["image"], batch["image_right"]
        sign = _sign(partner_on_left(batch), img)
        fb = self.focal_baseline(batch)
        e_id = photometric_error(right, img) if e_ident is None else e_ident
        e_s = _reprojection(img, right, fb / depth.detach(), sign) if e_self is None else e_self
        if self.mask_target_mode == "A":
            e_p = _reprojection(img, right, proxy_disp, sign)
            y_p, y_s = mask_targets(e_p, e_s, e_id, valid, self.target_margin, self.target_window)
            return y_p, y_s, None
        return self._targets_b(t_out, img, right, proxy_disp, valid, sign, e_s, e_id, fb)

    def _targets_b(self, t_out, img, right, disp_l, valid_l, sign, e_s, e_id, fb):
        """Interpretation B: mask 0 = validity of the left proxy, mask 1 = validity of the
        right-view proxy brought into the left view (sampled at each left pixel's proxy match).
        Each proxy is valid where it explains the left image better than the student's own
        estimate and than the identity (same rule as A's ``y_P``)."""
        disp_r = t_out.aux["disp_right"]
        # right-view disparity seen from the left pixel x: d_R(x -/+ d_L(x))
        disp_rl = warp_stereo(disp_r, sign * disp_l, "r2l")
        e_l = _reprojection(img, right, disp_l, sign)
        e_r = _reprojection(img, right, disp_rl, sign)
        valid_r = (disp_rl > 0) & valid_l
        y0, _ = mask_targets(e_l, e_s, e_id, valid_l, self.target_margin, self.target_window)
        y1, _ = mask_targets(e_r, e_s, e_id, valid_r, self.target_margin, self.target_window)
        depth_r = (fb / disp_rl.clamp_min(1e-6)).clamp(self.min_depth, self.max_depth)
        return y0, y1, (depth_r, valid_r.to(img.dtype))

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, student: nn.Module, image: Tensor) -> Tensor:
        """The deployed student = encoder + MaskDecoder + mask-conditioned depth decoder."""
        was_student, was_self = student.training, self.training
        student.eval()
        self.eval()
        try:
            self.to(image.device)
            return self._run_student(student, image).depth[0]
        finally:
            student.train(was_student)
            self.train(was_self)


def _teacher_canonical(teacher: nn.Module, batch: dict[str, Any], ref: Tensor, partner: Tensor,
                       sel: Tensor) -> DepthOutput:
    """``teacher`` on (``ref``, ``partner``) with the samples in ``sel`` mirrored first (so the
    partner lies on the right) and every ``B x ...`` output mirrored back."""
    canon = dict(batch, image=flip_where(ref, sel), image_right=flip_where(partner, sel))
    return mirror_back(teacher(canon), sel)
