"""SS-MDE: monocular depth via self-supervised self-distillation (Hu et al., Sensors 2024).

docs/methods.md section 5. Stage A trains the harness student and a strategy-owned pose network
self-supervised from two adjacent frames (SC-Depth photometric + geometry consistency), with
pseudo-depth supervision of static areas scaled by a decaying forgetting factor. Stage B adds
self-distillation: a frozen snapshot (or EMA) of the student from the end of stage A supplies a
depth prior, filtered per pixel by the multi-view mask filter.

Loss terms: ``photo``, ``geo`` (SC-Depth), ``pseudo`` (``phi(e) * (0.1 L_nm + 0.1 L_nr +
0.1 L_mr)``) and ``kd`` (stage B only).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import DepthOutput, HarnessError, LossDict, Needs, RunInfo, Stage, StepContext, Strategy
from harness.distill.geometry import depth_to_normals

from harness.distill import video
from harness.distill.video import PoseNet

from . import losses as L
from .modules import MaskRefiner, ema_update, forgetting_factor, snapshot_teacher

SOURCES = video.SOURCES
DEFAULT_PSEUDO_WEIGHTS = {"normal": 0.1, "normal_rank": 0.1, "mask_rank": 0.1}


def _up(x: Tensor, size) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SSMDEStrategy(Strategy):
    """SS-MDE on the harness ``resnet`` student (see the plugin README for every [D] choice).

    Main options (all under ``method`` in the config):

    scales: student scales supervised by ``photo``/``geo`` (each upsampled to full resolution).
    ssim_window, photo_alpha: photometric error ``alpha (1-SSIM)/2 + (1-alpha) L1`` (7, 0.85).
    automask, dynamic_weight, min_over: SC-Depth's auto-mask, ``(1 - diff_depth)`` weighting and
        per-pixel source selection (``"sources"``, ``"all"`` = SC-Depth's code, ``"none"``).
    pose_width, pose_scale: the pose network (:class:`~.modules.PoseNet`).
    unreliable_fraction: lowest fraction of ``m_dyn`` per image that is "unreliable" (0.2).
    pseudo: use the pseudo-depth supervision (the precomputed ``pseudo_depth`` batch key).
    pseudo_weights: weights of ``normal`` / ``normal_rank`` / ``mask_rank`` inside ``pseudo``.
    pseudo_static_only: restrict normal matching / ranking to the static mask ``M_st``.
    rank_ratio, global_pair_fraction: mask ranking labels threshold (1.15), random pairs (0.1).
    rank_space: ``"log"`` (median-normalised log depth: invariant to the depth's global scale)
        or ``"depth"`` (SC-DepthV3, metres: rewards a larger scale), see ``losses.ranking_from_pairs``.
    normal_rank_anchors, normal_rank_distance: edge-guided sampling (per image and edge kind).
    forgetting, phi0, forgetting_decay, forgetting_linear_fraction: ``phi(e)``
        (``"exponential"``: ``phi0 * decay**e``; ``"linear"``: ``max(0, 1 - e / E_f)``,
        ``E_f = fraction * total_epochs``; ``"constant"``).
    total_epochs: the run's total student epochs (None: those of the run, stages A + B, from
        :meth:`on_run_start`); needed for ``"linear"`` and to continue the epoch count across
        stages on resume.
    stage_fractions: ``epochs_fraction`` of stages A and B (0.5, 0.5). Stage B continues stage
        A's optimiser state and LR schedule (``Stage(reset_schedule=False)``): it is a
        continuation at the annealed learning rate, not a restart at the stage lr.
    teacher_update: ``"snapshot"`` (frozen copy at the start of B) or ``"ema"``.
    ema_momentum: EMA momentum (0.999), applied after every optimiser step of stage B.
    kd_scales, kd_align: student scales distilled; ``"median"`` or ``"none"`` scale alignment.
    tau_c, mmf_photometric, mmf_consistency, mmf_better: the multi-view mask filter criteria.
    refiner, refiner_width, refiner_bce: optional learned mask refiner (off) and the weight of
        its BCE toward the hand-made mask (added to ``kd``).
    """

    required_batch_keys = frozenset({"image", "frames", "K"})
    teacher_mode = "snapshot"
    student_needs = Needs(depth=True, scales=(0, 1, 2, 3))
    eval_scale_policy = "median"
    precompute = {"pseudo_depth": "depth"}
    default_loss_weights = {"photo": 1.0, "geo": 0.1, "pseudo": 1.0, "kd": 1.0}

    def __init__(
        self,
        loss_weights: dict[str, float] | None = None,
        *,
        scales=(0, 1, 2, 3),
        ssim_window: int = 7,
        photo_alpha: float = 0.85,
        automask: bool = True,
        dynamic_weight: bool = True,
        min_over: str = "sources",
        pose_width: int = 16,
        pose_scale: float = 0.01,
        unreliable_fraction: float = 0.2,
        pseudo: bool = True,
        pseudo_weights: dict[str, float] | None = None,
        pseudo_static_only: bool = True,
        rank_ratio: float = 1.15,
        rank_space: str = "log",
        global_pair_fraction: float = 0.1,
        normal_rank_anchors: int = 1024,
        normal_rank_distance=(3, 20),
        forgetting: str = "exponential",
        phi0: float = 1.0,
        forgetting_decay: float = 0.9,
        forgetting_linear_fraction: float = 0.5,
        total_epochs: int | None = None,
        stage_fractions=(0.5, 0.5),
        teacher_update: str = "snapshot",
        ema_momentum: float = 0.999,
        kd_scales=(0,),
        kd_align: str = "median",
        tau_c: float = 0.05,
        mmf_photometric: bool = True,
        mmf_consistency: bool = True,
        mmf_better: bool = True,
        refiner: bool = False,
        refiner_width: int = 16,
        refiner_bce: float = 1.0,
    ) -> None:
        super().__init__(loss_weights)
        self.scales = tuple(sorted(int(s) for s in scales))
        if 0 not in self.scales:
            raise HarnessError(f"method.scales={tuple(scales)} must include 0 (the dynamic mask and "
                               "the pseudo/kd terms use the full-resolution output)")
        self.choice("min_over", min_over, ("sources", "all", "none"))
        if teacher_update not in ("snapshot", "ema"):
            raise HarnessError(f"method.teacher_update={teacher_update!r} is not 'snapshot' or 'ema'")
        if kd_align not in ("median", "none"):
            raise HarnessError(f"method.kd_align={kd_align!r} is not 'median' or 'none'")
        try:  # validates the mode; "linear" without total_epochs is checked in on_epoch_start
            forgetting_factor(0, forgetting, phi0, forgetting_decay, total_epochs or 1, forgetting_linear_fraction)
        except ValueError as exc:
            raise HarnessError(f"method.forgetting: {exc}") from None
        if len(tuple(stage_fractions)) != 2:
            raise HarnessError("method.stage_fractions must give the fractions of stages A and B")
        unknown = set(pseudo_weights or {}) - set(DEFAULT_PSEUDO_WEIGHTS)
        if unknown:
            raise HarnessError(f"method.pseudo_weights has unknown key(s) {sorted(unknown)}; "
                               f"known: {sorted(DEFAULT_PSEUDO_WEIGHTS)}")
        self.ssim_window = int(ssim_window)
        self.photo_alpha = float(photo_alpha)
        self.automask = bool(automask)
        self.dynamic_weight = bool(dynamic_weight)
        self.min_over = min_over
        self.pose_width = int(pose_width)
        self.pose_scale = float(pose_scale)
        self.unreliable_fraction = float(unreliable_fraction)
        self.use_pseudo = bool(pseudo)
        self.pseudo_weights = {**DEFAULT_PSEUDO_WEIGHTS, **(pseudo_weights or {})}
        self.pseudo_static_only = bool(pseudo_static_only)
        self.rank_ratio = float(rank_ratio)
        self.choice("rank_space", rank_space, L.RANK_SPACES)
        self.rank_space = rank_space
        self.global_pair_fraction = float(global_pair_fraction)
        self.normal_rank_anchors = int(normal_rank_anchors)
        self.normal_rank_distance = tuple(int(d) for d in normal_rank_distance)
        self.forgetting = forgetting
        self.phi0 = float(phi0)
        self.forgetting_decay = float(forgetting_decay)
        self.forgetting_linear_fraction = float(forgetting_linear_fraction)
        self.total_epochs = None if total_epochs is None else int(total_epochs)
        self.stage_fractions = tuple(float(f) for f in stage_fractions)
        self.teacher_update = teacher_update
        self.teacher_mode = teacher_update  # "snapshot" or "ema": made from the student
        self.ema_momentum = float(ema_momentum)
        self.kd_scales = tuple(int(s) for s in kd_scales)
        self.kd_align = kd_align
        self.tau_c = float(tau_c)
        self.mmf_photometric = bool(mmf_photometric)
        self.mmf_consistency = bool(mmf_consistency)
        self.mmf_better = bool(mmf_better)
        self.use_refiner = bool(refiner)
        self.refiner_width = int(refiner_width)
        self.refiner_bce = float(refiner_bce)
        if not self.use_pseudo:
            self.precompute = {}  # no pseudo-depth: the harness need not run the teacher
        self.pose_net: PoseNet | None = None
        self.refiner: MaskRefiner | None = None
        # schedule state (plain attributes: recomputed from the epoch on every epoch start)
        self.phi = forgetting_factor(0, forgetting, phi0, forgetting_decay, total_epochs or 1,
                                     forgetting_linear_fraction)
        self.global_epoch = 0
        self._epoch_offset = 0
        self._epochs_seen = 0
        self._stage = None
        self._run: RunInfo | None = None

    # -- schedule --------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        fa, fb = self.stage_fractions
        return [Stage("A", epochs_fraction=fa), Stage("B", epochs_fraction=fb, reset_schedule=False)]

    def _stage_epochs(self, stage: Stage) -> int | None:
        """Epochs of ``stage`` (the run's, else by the harness's rule from ``total_epochs``)."""
        if self._run is not None:
            return self._run.stage_epochs[[s.name for s in self._run.stages].index(stage.name)]
        return None if self.total_epochs is None and stage.epochs is None else stage.epochs_in(self.total_epochs)

    def on_run_start(self, run: RunInfo) -> None:
        """The run's epochs: ``total_epochs`` (unless configured) is the sum over stages A and B."""
        self._run = run
        if self.total_epochs is None:
            self.total_epochs = run.total_epochs

    # -- construction ----------------------------------------------------------------------
    def build(self, student: nn.Module, teacher: nn.Module | None) -> None:
        self.pose_net = PoseNet(self.pose_width, self.pose_scale)
        if self.use_refiner:
            self.refiner = MaskRefiner(self.refiner_width)

    # -- events ----------------------------------------------------------------------------
    def on_stage_start(self, stage: Stage, student: nn.Module, teacher: nn.Module | None) -> nn.Module | None:
        names = [s.name for s in self.stages()]
        if stage.name not in names:
            raise HarnessError(f"ssmde: unknown stage {stage.name!r} (stages: {names})")
        before = self.stages()[: names.index(stage.name)]
        lengths = [self._stage_epochs(s) for s in before]
        # the forgetting factor keeps decaying across stages: epochs continue from stage A
        self._epoch_offset = sum(lengths) if all(n is not None for n in lengths) else self._epochs_seen
        self._stage = stage.name
        if stage.name == "B":
            # self-distillation teacher: the student as it is at the end of stage A
            return snapshot_teacher(student)
        return None

    def on_epoch_start(self, epoch: int) -> None:
        self.global_epoch = self._epoch_offset + int(epoch)
        self._epochs_seen = max(self._epochs_seen, self.global_epoch + 1)
        if self.forgetting == "linear" and self.total_epochs is None:
            raise HarnessError("method.forgetting='linear' needs method.total_epochs "
                               "(a harness run sets it from its stages)")
        self.phi = forgetting_factor(self.global_epoch, self.forgetting, self.phi0, self.forgetting_decay,
                                     self.total_epochs, self.forgetting_linear_fraction)

    def on_step_end(self, step: int, student: nn.Module, teacher: nn.Module | None) -> None:
        if teacher is not None and self.teacher_update == "ema":
            ema_update(teacher, student, self.ema_momentum)

    # -- per step --------------------------------------------------------------------------
    def student_forward(self, student: nn.Module, batch: dict[str, Any]) -> dict[str, DepthOutput]:
        """One student pass over ``[I_t, I_{t-1}, I_{t+1}]`` (batched), split per frame."""
        return video.split_frames(student, batch)

    def teacher_forward(self, teacher: nn.Module | None, batch: dict[str, Any],
                        s_out: dict[str, DepthOutput]) -> DepthOutput | None:
        """The snapshot/EMA teacher on the same three frames: full-resolution depth of the
        target (``depth[0]``) and the sources (``aux["depth_prev"]``, ``aux["depth_next"]``)."""
        if teacher is None:
            return None
        images = torch.cat([batch["image"], *video.source_frames(batch)], dim=0)
        with torch.no_grad():
            depth = teacher(images).depth[0].chunk(3)
        return DepthOutput(depth={0: depth[0]},
                           aux={f"depth_{name}": d for (_, name), d in zip(SOURCES, depth[1:])},
                           depth_kind="relative")

    def compute_loss(self, batch: dict[str, Any], s_out: dict[str, DepthOutput], t_out: DepthOutput | None,
                     ctx: StepContext) -> LossDict:
        if self.pose_net is None:
            raise HarnessError("ssmde: build() was not called (no pose network)")
        img, K = batch["image"], batch["K"]
        sources = video.source_frames(batch)
        photo, geo, fwd0, T_fwd = video.photo_geo_terms(
            self.pose_net, batch, s_out, self.scales, alpha=self.photo_alpha, ssim_window=self.ssim_window,
            min_over=self.min_over, automask=self.automask, dynamic_weight=self.dynamic_weight)
        terms = {"photo": photo, "geo": geo}

        depth = s_out["clean"].depth[0]
        m_dyn = L.dynamic_reliability(fwd0, self.automask)
        unreliable = L.lowest_fraction(m_dyn, self.unreliable_fraction)
        if self.use_pseudo and self.loss_weights.get("pseudo", 0.0) != 0.0:
            terms["pseudo"] = self._pseudo(batch, depth, unreliable)
        if t_out is not None and self.loss_weights.get("kd", 0.0) != 0.0:
            terms["kd"] = self._kd(img, sources, K, s_out, t_out, T_fwd, fwd0)
        return self.weighted(terms)

    def _pseudo(self, batch: dict[str, Any], depth: Tensor, unreliable: Tensor) -> Tensor:
        """``phi(e) * (w_nm L_nm + w_nr L_nr + w_mr L_mr)`` on the full-resolution target depth."""
        if "pseudo_depth" not in batch:
            raise HarnessError("ssmde: the batch has no 'pseudo_depth' (precomputed by the harness from "
                               "the configured teacher); set method.pseudo=False to train without it")
        if self.phi == 0.0:
            return depth.sum() * 0.0
        pseudo, valid = L.relative_depth(batch["pseudo_depth"].to(depth.dtype))
        K = batch["K"]
        K_inv = torch.linalg.inv(K[:, :3, :3].to(depth.dtype))
        n_pred = depth_to_normals(depth, K_inv)
        n_ref = depth_to_normals(pseudo, K_inv).detach()
        region = L.erode(valid)  # normals need valid neighbours
        if self.pseudo_static_only:
            region = region & ~unreliable
        w = self.pseudo_weights
        total = depth.sum() * 0.0
        if w["normal"]:
            total = total + w["normal"] * L.normal_matching(n_pred, n_ref, region)
        if w["normal_rank"]:
            total = total + w["normal_rank"] * L.edge_guided_normal_ranking(
                batch["image"], pseudo, n_pred, n_ref, region, num_anchors=self.normal_rank_anchors,
                distance=self.normal_rank_distance)
        if w["mask_rank"]:
            total = total + w["mask_rank"] * L.mask_ranking(
                depth, pseudo, unreliable, ratio=self.rank_ratio, global_fraction=self.global_pair_fraction,
                space=self.rank_space)
        return self.phi * total

    def _kd(self, img: Tensor, sources: list[Tensor], K: Tensor, s_out: dict[str, DepthOutput], t_out: DepthOutput,
            T_fwd: list[Tensor], fwd0: list[L.PairTerms]) -> Tensor:
        """Depth prior from the teacher on the pixels the multi-view mask filter keeps."""
        size = img.shape[-2:]
        d_teacher = _up(t_out.depth[0], size)
        d_teacher_src = [_up(t_out.aux[f"depth_{name}"], size) for _, name in SOURCES]
        big = torch.full_like(fwd0[0].pe, L.BIG)
        student_err = torch.stack([torch.where(p.inside > 0, p.pe, big) for p in fwd0]).amin(dim=0).detach()
        mmf = L.multiview_mask(img, sources, d_teacher, d_teacher_src, [T.detach() for T in T_fwd], K, student_err,
                               tau_c=self.tau_c, alpha=self.photo_alpha, ssim_window=self.ssim_window,
                               photometric=self.mmf_photometric, consistency=self.mmf_consistency,
                               better=self.mmf_better)
        mask = mmf.mask
        extra = None
        if self.refiner is not None:
            soft = self.refiner(img, torch.log(d_teacher.clamp_min(1e-8)), mmf.consistency.clamp(max=1.0),
                                mmf.teacher_error.clamp(max=1.0), student_err.clamp(max=1.0))
            extra = self.refiner_bce * F.binary_cross_entropy(soft, mask)
            mask = mask * soft
        kd = torch.stack([L.kd_loss(_up(s_out["clean"].depth[i], size), d_teacher, mask, self.kd_align)
                          for i in self.kd_scales]).mean()
        return kd if extra is None else kd + extra
