"""Recursive Stereo Distillation (RSD) as a harness strategy (docs/methods.md section 3).

Mono-Net (the student, ``rsd_mono``) and Stereo-Net (the online teacher, ``rsd_stereo``, fed
with the Mono-Net's disparity) are trained jointly from stereo photometric self-supervision;
a second stage adds the multi-space distillation terms. See ``README.md`` for what is faithful
to the release, what is a [D] default and what is switchable.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch
from torch import Tensor, nn

from harness import DepthOutput, HarnessError, LossDict, Needs, Stage, StepContext, Strategy
from harness.distill.flips import partner_on_left
from harness.eval.protocol import flip_post_process

from .losses import (
    feature_loss,
    mono_self_terms,
    nonlocal_loss,
    output_loss,
    scale_pyramid,
    stereo_self_terms,
)
from .models import RSDStereoNet
from .modules import edge_aware_flip_fusion, photometric_augment

FEATURE_NAMES = ("dec_s1", "dec_s2", "dec_s4", "dec_s8")  # iconv1..iconv4
AFFINITY_NAMES = ("affinity_s16", "affinity_s8")
SCALES = (0, 1, 2, 3)
TERMS = ("mono_ap", "mono_lr", "mono_sm", "stereo_ap", "stereo_lr", "stereo_sm", "out", "feat", "nl")
DISTILL_TERMS = ("out", "feat", "nl")

#: Stage 1 ("joint", the release's active loss): L_Mono + L_Stereo, L_* = L_ap + 0.5 L_sm + L_lr.
JOINT_WEIGHTS = {"mono_ap": 1.0, "mono_lr": 1.0, "mono_sm": 0.5,
                 "stereo_ap": 1.0, "stereo_lr": 1.0, "stereo_sm": 0.5,
                 "out": 0.0, "feat": 0.0, "nl": 0.0}
#: Stage 2 ("distill"): the release's latest commented variant (0.7 / 0.8 appearance, L_out and
#: L_nl weight 1) plus L_feat at 0.1 (its earliest variant) [D].
DISTILL_WEIGHTS = {"mono_ap": 0.7, "mono_lr": 1.0, "mono_sm": 0.5,
                   "stereo_ap": 0.8, "stereo_lr": 1.0, "stereo_sm": 0.5,
                   "out": 1.0, "feat": 0.1, "nl": 1.0}

FUSIONS = ("edge", "mean", "none")


class RecursiveStrategy(Strategy):
    """RSD: joint Mono-Net + recursive Stereo-Net training, then multi-space distillation.

    Args (``method.*`` in the config):
        loss_weights: weights of the ``distill`` stage (over :data:`DISTILL_WEIGHTS`).
        joint_loss_weights: weights of the ``joint`` stage (over :data:`JOINT_WEIGHTS`).
        joint_fraction: share of the configured epochs given to the ``joint`` stage (the rest
            to ``distill``); 1 = joint only, 0 = distill only.
        joint_lr, joint_batch_size, distill_lr, distill_batch_size: per-stage overrides
            (``None`` = the schedule's). Every stage restarts the LR schedule.
        distill_train_teacher: keep training the Stereo-Net (its self-supervised terms) in
            the ``distill`` stage (release: yes).
        feat_stop_grad, nl_stop_grad: ``sg`` on the teacher side of ``L_feat`` / ``L_nl``
            ([D] True; the release has no stop-gradient there). ``L_out`` always detaches.
        augment, augment_prob: RSD's colour augmentation of the pair (gamma, brightness,
            per-channel colour; same draw for both views) with this probability per sample.
            Mirroring with left/right swap comes from the dataset (``flip_mode="swap"``).
        flip_fusion: ``"edge"`` (RSD's edge-aware fusion of the image and mirrored-image
            predictions), ``"mean"`` (Monodepth post-processing) or ``"none"``.
        fusion_kernel: horizontal window of the edge-aware fusion (release: 21 px).
        eval_scale: ``"none"`` (metric via the dataset's ``f b``; RSD) or ``"median"``.
        ssim_alpha: SSIM weight of the appearance loss (0.85).
        teacher_gate: after the ``joint`` stage score the Stereo-Net and the Mono-Net on val
            (abs_rel, same protocol); when the teacher does not beat the student, the
            ``distill`` stage runs with ``out``/``feat``/``nl`` off (one warning line; recorded
            in the result's ``method_notes.teacher_gate``).
    """

    required_batch_keys = frozenset({"image", "image_right", "K", "baseline", "meta"})
    teacher_mode = "online"
    student_needs = Needs(depth=True, disp_channels=2, scales=SCALES, features=frozenset(FEATURE_NAMES),
                          aux=frozenset(AFFINITY_NAMES))
    teacher_needs = Needs(depth=True, disp_channels=2, scales=SCALES, features=frozenset(FEATURE_NAMES),
                          aux=frozenset(AFFINITY_NAMES))
    eval_scale_policy = "none"
    default_loss_weights = dict(DISTILL_WEIGHTS)

    def __init__(self, loss_weights: dict[str, float] | None = None,
                 joint_loss_weights: dict[str, float] | None = None, joint_fraction: float = 0.5,
                 joint_lr: float | None = None, joint_batch_size: int | None = None,
                 distill_lr: float | None = None, distill_batch_size: int | None = None,
                 distill_train_teacher: bool = True, feat_stop_grad: bool = True, nl_stop_grad: bool = True,
                 augment: bool = True, augment_prob: float = 0.5, flip_fusion: str = "edge",
                 fusion_kernel: int = 21, eval_scale: str = "none", ssim_alpha: float = 0.85,
                 teacher_gate: bool = True) -> None:
        super().__init__(loss_weights)
        for name, weights in (("loss_weights", loss_weights), ("joint_loss_weights", joint_loss_weights)):
            unknown = set(weights or {}) - set(TERMS)
            if unknown:
                raise HarnessError(f"method.{name}: unknown term(s) {sorted(unknown)}; terms are {list(TERMS)}")
        self.joint_loss_weights = {**JOINT_WEIGHTS, **(joint_loss_weights or {})}
        if not 0.0 <= float(joint_fraction) <= 1.0:
            raise HarnessError(f"method.joint_fraction must be in [0, 1], got {joint_fraction}")
        self.choice("flip_fusion", flip_fusion, FUSIONS)
        if eval_scale not in ("none", "median"):
            raise HarnessError(f"method.eval_scale must be 'none' or 'median', got {eval_scale!r}")
        self.joint_fraction = float(joint_fraction)
        self.joint_lr, self.joint_batch_size = joint_lr, joint_batch_size
        self.distill_lr, self.distill_batch_size = distill_lr, distill_batch_size
        self.distill_train_teacher = bool(distill_train_teacher)
        self.feat_stop_grad = bool(feat_stop_grad)
        self.nl_stop_grad = bool(nl_stop_grad)
        self.augment = bool(augment)
        self.augment_prob = float(augment_prob)
        self.flip_fusion = flip_fusion
        self.fusion_kernel = int(fusion_kernel)
        self.eval_scale_policy = eval_scale
        self.ssim_alpha = float(ssim_alpha)
        self.teacher_gate = bool(teacher_gate)
        self.distill_refused = False
        self.adapters = nn.ModuleDict()

    # -- schedule --------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        out = []
        if self.joint_fraction > 0:
            out.append(Stage("joint", train=frozenset({"student", "teacher"}),
                             epochs_fraction=self.joint_fraction, lr=self.joint_lr,
                             batch_size=self.joint_batch_size, reset_schedule=True))
        if self.joint_fraction < 1:
            train = {"student", "strategy"} | ({"teacher"} if self.distill_train_teacher else set())
            out.append(Stage("distill", train=frozenset(train), epochs_fraction=1.0 - self.joint_fraction,
                             lr=self.distill_lr, batch_size=self.distill_batch_size, reset_schedule=True))
        return out

    def stage_weights(self, stage: str) -> dict[str, float]:
        if stage == "joint":
            return self.joint_loss_weights
        if self.distill_refused:
            return {**self.loss_weights, **{k: 0.0 for k in DISTILL_TERMS}}
        return self.loss_weights

    def on_stage_end(self, stage: Stage, student: nn.Module, teacher: nn.Module | None,
                     score_val: Callable) -> None:
        """After ``joint``: distil only from a Stereo-Net that beats the Mono-Net on val."""
        if stage.name != "joint" or not self.teacher_gate or self.joint_fraction >= 1 or teacher is None:
            return
        if not any(self.loss_weights.get(k, 0.0) for k in DISTILL_TERMS):
            return  # nothing to distil (e.g. the like-for-like control): no gate, no warning
        s_val = score_val(lambda b: self.predict(student, b["image"]))["abs_rel"]
        t_val = score_val(lambda b: self.teacher_predict(teacher, student, b))["abs_rel"]
        self.distill_refused = not t_val < s_val
        gate = {"teacher_val_abs_rel": round(float(t_val), 6), "student_val_abs_rel": round(float(s_val), 6),
                "distilled": not self.distill_refused}
        if self.distill_refused:
            gate["warning"] = (f"recursive: the Stereo-Net does not beat the Mono-Net on val after the joint stage "
                               f"(abs_rel {t_val:.4f} vs {s_val:.4f}); the distill stage runs without out/feat/nl")
            print(f"warning: {gate['warning']}", file=sys.stderr)
        self.notes["teacher_gate"] = gate

    def weighted(self, terms: dict[str, Tensor], stage: str = "distill") -> LossDict:  # type: ignore[override]
        """Combine ``terms`` with the configured weights of ``stage`` (``joint`` or ``distill``)."""
        return LossDict.weighted(terms, self.stage_weights(stage))

    # -- construction ----------------------------------------------------------------------
    def build(self, student: nn.Module, teacher: nn.Module | None) -> None:
        if teacher is None or not hasattr(teacher, "iteration_disps"):
            raise HarnessError("method 'recursive' needs the RSD Stereo-Net teacher (teacher.type='rsd_stereo')")
        if not hasattr(student, "observe_calibration"):
            raise HarnessError("method 'recursive' needs the RSD Mono-Net student (student.type='rsd_mono'): "
                               "it predicts two-channel (left/right view) normalised disparities")
        s_ch = {f.name: f.channels for f in student.feature_specs()}
        t_ch = {f.name: f.channels for f in teacher.feature_specs()}
        for k in FEATURE_NAMES:
            if s_ch[k] != t_ch[k]:  # only when the two widths differ (RSD: identical, no adapter)
                self.adapters[k] = nn.Conv2d(s_ch[k], t_ch[k], 1)

    # -- per step --------------------------------------------------------------------------
    def _pair(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        return batch.get("rsd_left", batch["image"]), batch.get("rsd_right", batch["image_right"])

    def student_forward(self, student: nn.Module, batch: dict[str, Any]) -> dict[str, DepthOutput]:
        left, right = batch["image"], batch["image_right"]
        if bool(partner_on_left(batch).any()):
            raise HarnessError("method 'recursive' needs data.train.flip_mode='swap' (or None) and left-camera "
                               "split lines: a sample's partner view lies on the left (mirrored, not swapped)")
        if student.training:
            if "K" in batch and "baseline" in batch:
                student.observe_calibration(batch["K"], batch["baseline"], left.shape[-1])
            if self.augment:
                left, right = photometric_augment(left, right, self.augment_prob)
        batch["rsd_left"], batch["rsd_right"] = left, right
        return {"clean": student(left)}

    def teacher_forward(self, teacher, batch: dict[str, Any], s_out: dict[str, DepthOutput]) -> DepthOutput:
        left, right = self._pair(batch)
        if teacher.training and "K" in batch and "baseline" in batch:
            teacher.observe_calibration(batch["K"], batch["baseline"], left.shape[-1])
        return teacher({"image": left, "image_right": right}, s_out["clean"])

    def compute_loss(self, batch: dict[str, Any], s_out: dict[str, DepthOutput], t_out: DepthOutput | None,
                     ctx: StepContext) -> LossDict:
        if t_out is None:
            raise HarnessError("method 'recursive' got no Stereo-Net output")
        weights = self.stage_weights(ctx.stage)
        left, right = self._pair(batch)
        lp, rp = scale_pyramid(left, len(SCALES)), scale_pyramid(right, len(SCALES))
        m = s_out["clean"]
        mono = mono_self_terms(m.disp, lp, rp, self.ssim_alpha)
        iters = self._iterations(t_out)
        stereo = stereo_self_terms(iters, t_out.disp, lp, rp, self.ssim_alpha)
        terms = {f"mono_{k}": v for k, v in mono.items()}
        terms.update({f"stereo_{k}": v for k, v in stereo.items()})
        if weights.get("out", 0.0):
            terms["out"] = output_loss(m.disp, t_out.disp)
        if weights.get("feat", 0.0):
            feats = {k: (self.adapters[k](m.features[k]) if k in self.adapters else m.features[k])
                     for k in FEATURE_NAMES}
            terms["feat"] = feature_loss(feats, t_out.features, FEATURE_NAMES, self.feat_stop_grad)
        if weights.get("nl", 0.0):
            terms["nl"] = nonlocal_loss(m.aux, t_out.aux, AFFINITY_NAMES, self.nl_stop_grad)
        return self.weighted(terms, ctx.stage)

    @staticmethod
    def _iterations(t_out: DepthOutput) -> list[dict[int, Tensor]]:
        """Per-iteration estimates of the Stereo-Net (its final one if it exposes none)."""
        return RSDStereoNet.iteration_disps(t_out) or [t_out.disp]

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def predict_disp(self, student: nn.Module, image: Tensor) -> Tensor:
        """Full-resolution left-view normalised disparity with the configured flip fusion."""
        was = student.training
        student.eval()
        try:
            if self.flip_fusion == "none":
                return student(image).disp[0][:, :1]
            b = image.shape[0]
            both = student(torch.cat([image, torch.flip(image, dims=[-1])], 0)).disp[0][:, :1]
            direct, flipped_back = both[:b], torch.flip(both[b:], dims=[-1])
            if self.flip_fusion == "mean":
                return flip_post_process(direct, both[b:])
            return edge_aware_flip_fusion(direct, flipped_back, kernel=self.fusion_kernel)
        finally:
            student.train(was)

    def predict(self, student: nn.Module, image: Tensor) -> Tensor:
        """Mono-Net only (test cost unchanged): fused left disparity -> ``f b / (W d~)``."""
        return student.disp_to_depth(self.predict_disp(student, image))

    @torch.no_grad()
    def teacher_outputs(self, teacher: nn.Module, student: nn.Module, batch: dict[str, Any]) -> DepthOutput:
        """The Stereo-Net's own output, run as in training: conditioned on the Mono-Net's output."""
        s_was, t_was = student.training, teacher.training
        student.eval()
        teacher.eval()
        try:
            s_out = student(batch["image"])
            return teacher({"image": batch["image"], "image_right": batch["image_right"]}, s_out)
        finally:
            student.train(s_was)
            teacher.train(t_was)
