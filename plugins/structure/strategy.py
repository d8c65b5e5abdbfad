"""Structure-centric robust monocular depth via semantic knowledge distillation (issue 7).

docs/methods.md section 4 (+7). A self-supervised (monocular video) student trained with:

* ``photo``  Monodepth2 min-reprojection with auto-mask over the sources ``t-1, t+1`` (pose net,
  ``K``), 4 scales upsampled to full resolution, on CLEAN images for every prediction (clean,
  fused, perturbed, masked; md4all principle): the clean pass at full weight plus
  ``photo_aux_weight`` times the mean over the others;
* ``smooth`` edge-aware first-order smoothness of the normalised disparity (clean image edges);
* ``dsc``    depth-structure consistency (ramped in after the augmentation warm-up) of the
  prediction on a perturbed image (night, fog, rain, blur, colour, noise, JPEG, illumination)
  to the clean prediction (stop-grad):
  ``mean|log D~ - sg log D| + lambda_g (mean|dx log D~ - sg dx log D| + mean|dy ...|)``;
* ``ltd``    the same consistency for a patch-masked / patch-shuffled input;
* ``graph``  semantic-structural correlation: isomorphic graphs between student features and
  the frozen semantic teacher's features, ``KL(sg A_T || A_S) + (1 - cos(H_S, sg X_T))``,
  averaged over the distilled strides; ``H_S`` is fused into the student decoder (zero-init 1x1
  conv, ``cond={"inject": ...}``) in an extra clean training pass, not at inference by default.

Evaluation: the student alone (``student.predict``), per-image median scaling.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import DepthOutput, HarnessError, LossDict, Needs, StepContext, Strategy
from harness.distill.geometry import focal_baseline, pose_vec_to_mat, warp_temporal
from harness.distill.losses import min_reprojection, photometric_error, smoothness

from .modules import GraphOut, IsoGraph, PoseNet, node_grid
from .perturb import DSC_OPS, FILL_MODES, OPERATORS, patch_mask, patch_size_for, perturb

__all__ = ["StructureStrategy", "structure_consistency"]

SOURCES = (-1, 1)
#: predictions a step may produce: the deployed clean pass, the graph-fused clean pass, and the
#: augmented pass(es): one shared "aug" pass (aug_mode="split") or "perturbed" + "masked"
VIEWS = ("clean", "fused", "aug", "perturbed", "masked")
AUG_MODES = ("split", "separate")


def structure_consistency(depth_aug: Tensor, depth_clean: Tensor, grad_weight: float = 1.0,
                          reduction: str = "mean") -> Tensor:
    """DSC / LTD consistency of an augmented-input prediction to the clean one::

        a = log D~,  c = sg(log D)
        L = mean|a - c| + grad_weight * (mean|dx a - dx c| + mean|dy a - dy c|)

    ``dx``/``dy`` are forward differences along width/height; each mean runs over its own map
    (per image with ``reduction="none"``, which returns a ``B`` vector; ``"mean"`` averages
    it). The clean side never receives gradient.
    """
    a = torch.log(depth_aug.clamp_min(1e-6))
    c = torch.log(depth_clean.detach().clamp_min(1e-6))
    dims = tuple(range(1, a.dim()))
    loss = (a - c).abs().mean(dim=dims)
    if grad_weight:
        gx = ((a[..., :, 1:] - a[..., :, :-1]) - (c[..., :, 1:] - c[..., :, :-1])).abs()
        gy = ((a[..., 1:, :] - a[..., :-1, :]) - (c[..., 1:, :] - c[..., :-1, :])).abs()
        zero = a.sum(dim=dims) * 0.0
        loss = loss + grad_weight * ((gx.mean(dim=dims) if gx.numel() else zero) + (gy.mean(dim=dims) if gy.numel() else zero))
    if reduction == "none":
        return loss
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return loss.mean()


def _resize(x: Tensor, size) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _full_res_depth(depth: Tensor, size) -> Tensor:
    """Upsample a depth map through its inverse (bilinear on 1/D, as Monodepth2 upsamples disparity)."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    return 1.0 / _resize(1.0 / depth.clamp_min(1e-6), size)


def _stride_map(d: dict | None, default: dict[int, Any]) -> dict[int, Any]:
    """Config maps keyed by ``16`` / ``"16"`` / ``"s16"`` -> ``{16: value}``."""
    if d is None:
        return dict(default)
    out = {}
    for k, v in dict(d).items():
        key = str(k).lstrip("s")
        if not key.isdigit():
            raise HarnessError(f"method option: stride key {k!r} is not a stride such as 16 or 's16'")
        out[int(key)] = tuple(v) if isinstance(v, list) else v
    return out


class StructureStrategy(Strategy):
    """Structure-centric distillation from a frozen semantic teacher (see the module docstring).

    Options (every one is a ``method.<name>`` config key):

    Self-supervision: ``scales`` (0..3: the clean prediction's photometric/smoothness scales),
    ``stereo_source`` (False; True adds the right view with the known ``T_l2r`` as a third
    source, docs/methods.md 4.4 "+ I_r if stereo available": Monodepth2 "MS", scale from the stereo pair),
    ``baseline_norm`` (0.1: with ``stereo_source``, the stereo transform's translation is
    rescaled to this normalised baseline, as Monodepth2 trains "MS"; None keeps the metric one),
    ``eval_baseline`` (0.54: the data's metric baseline; with ``eval_scale="none"`` the depth is
    multiplied by ``eval_baseline / baseline_norm``, the stereo factor),
    ``eval_scale`` ("median" | "none": the evaluation scale policy),
    ``aux_photo_scales`` ((0,): scales of the other predictions' photometric/smoothness terms),
    ``photo_views`` (which predictions get them; default all produced), ``photo_alpha`` (0.85),
    ``ssim_window`` (3), ``automask`` (True), ``pose_width`` (16), ``pose_scale`` (0.01).
    Augmentation family: ``aug_mode`` ("split": ONE augmented pass per step in which a
    ``ltd_fraction`` (0.5) of the images is patch-masked and the rest perturbed, ``dsc`` and
    ``ltd`` averaged over their own images; "separate": a perturbed and a masked pass over the
    whole batch); ``aug_warmup`` (0.15: fraction of the stage's steps trained without the
    augmented pass, see :meth:`in_aug_warmup`); ``consistency_ramp`` (0: the fraction of the
    stage's steps after the warm-up over which the ``dsc`` / ``ltd`` terms ramp linearly from 0
    to their weight, see :meth:`consistency_factor`).
    Photometric weighting: ``photo_weighting`` ("clean": ``photo = photo(clean) +
    photo_aux_weight * mean over the other predictions``, so the deployed clean pass has full
    weight; "mean": the mean over all predictions), ``photo_aux_weight`` (0.5).
    DSC: ``dsc_ops`` (operator names, default all nine), ``dsc_severity`` ((0.2, 1.0)),
    ``dsc_prob`` (1.0), ``consistency_grad_weight`` (lambda_g = 1), ``consistency_scales`` ((0,)).
    LTD: ``ltd_patch`` (16 at a 192-row input, scaled with the height), ``ltd_ratio``
    ((0.15, 0.45)), ``ltd_fill`` ("mix" | "mean" | "shuffle").
    SSC: ``graph_strides`` ((16, 32)), ``graph_student_features`` ({16: "dec_s16", 32: "enc_s32"}),
    ``graph_teacher_features`` ({16: "sem_s16", 32: "sem_s32"}), ``graph_grid`` (node grid at a
    192 x 640 input, scaled with the input: {16: (12, 40), 32: (6, 20)}), ``graph_dim`` (128),
    ``graph_topk`` (None = dense), ``graph_detach_teacher_adjacency`` (False), ``ssc_fuse``
    (True: extra fused clean pass in training), ``ssc_fuse_stride`` (16: decoder stage that
    receives H_S), ``ssc_fuse_at_inference`` (False).
    ``perturb_seed``: seed of the perturbation/masking generator (None: drawn from the run's
    seeded global RNG at the first step).

    A loss weight of 0 for ``dsc`` / ``ltd`` drops that augmentation entirely (its images and
    their photometric term too); ``graph`` 0 with ``ssc_fuse=False`` drops the teacher.
    """

    required_batch_keys = frozenset({"image", "frames", "K"})
    teacher_mode = "frozen"
    eval_scale_policy = "median"
    default_loss_weights = {"photo": 1.0, "smooth": 1e-3, "dsc": 1.0, "ltd": 1.0, "graph": 0.1}

    def __init__(
        self,
        loss_weights: dict[str, float] | None = None,
        scales=(0, 1, 2, 3),
        aux_photo_scales=(0,),
        photo_views=VIEWS,
        photo_alpha: float = 0.85,
        ssim_window: int = 3,
        automask: bool = True,
        stereo_source: bool = False,
        baseline_norm: float | None = 0.1,
        eval_baseline: float = 0.54,
        eval_scale: str = "median",
        pose_width: int = 16,
        pose_scale: float = 0.01,
        aug_mode: str = "split",
        ltd_fraction: float = 0.5,
        aug_warmup: float = 0.15,
        consistency_ramp: float = 0.0,
        photo_weighting: str = "clean",
        photo_aux_weight: float = 0.5,
        dsc_ops=DSC_OPS,
        dsc_severity=(0.2, 1.0),
        dsc_prob: float = 1.0,
        consistency_grad_weight: float = 1.0,
        consistency_scales=(0,),
        ltd_patch: int = 16,
        ltd_ratio=(0.15, 0.45),
        ltd_fill: str = "mix",
        graph_strides=(16, 32),
        graph_student_features: dict | None = None,
        graph_teacher_features: dict | None = None,
        graph_grid: dict | None = None,
        graph_dim: int = 128,
        graph_topk: int | None = None,
        graph_detach_teacher_adjacency: bool = False,
        ssc_fuse: bool = True,
        ssc_fuse_stride: int = 16,
        ssc_fuse_at_inference: bool = False,
        perturb_seed: int | None = None,
    ) -> None:
        super().__init__(loss_weights)
        unknown = set(self.loss_weights) - set(self.default_loss_weights)
        if unknown:
            raise HarnessError(f"method.loss_weights: unknown term(s) {sorted(unknown)}; "
                               f"terms are {sorted(self.default_loss_weights)}")
        self.scales = tuple(int(s) for s in scales)
        self.aux_photo_scales = tuple(int(s) for s in aux_photo_scales)
        if not set(self.aux_photo_scales) <= set(self.scales):
            raise HarnessError(f"method.aux_photo_scales={self.aux_photo_scales} must be a subset of scales={self.scales}")
        self.choice("aug_mode", aug_mode, AUG_MODES)
        self.aug_mode = aug_mode
        self.ltd_fraction = float(ltd_fraction)
        self.aug_warmup = float(aug_warmup)
        if not 0.0 <= self.aug_warmup < 1.0:
            raise HarnessError(f"method.aug_warmup={aug_warmup} must lie in [0, 1)")
        self.consistency_ramp = float(consistency_ramp)
        if not 0.0 <= self.consistency_ramp <= 1.0:
            raise HarnessError(f"method.consistency_ramp={consistency_ramp} must lie in [0, 1]")
        if photo_weighting not in ("clean", "mean"):
            raise HarnessError(f"method.photo_weighting={photo_weighting!r} is not 'clean' or 'mean'")
        self.photo_weighting = photo_weighting
        self.photo_aux_weight = float(photo_aux_weight)
        if not 0.0 <= self.ltd_fraction <= 1.0:
            raise HarnessError(f"method.ltd_fraction={ltd_fraction} must lie in [0, 1]")
        bad_views = set(photo_views) - set(VIEWS)
        if bad_views:
            raise HarnessError(f"method.photo_views: unknown view(s) {sorted(bad_views)}; views are {list(VIEWS)}")
        self.photo_views = tuple(photo_views)
        self.photo_alpha = float(photo_alpha)
        self.ssim_window = int(ssim_window)
        self.automask = bool(automask)
        self.stereo_source = bool(stereo_source)
        if baseline_norm is not None and not float(baseline_norm) > 0:
            raise HarnessError(f"method.baseline_norm must be None or positive, got {baseline_norm!r}")
        self.baseline_norm = float(baseline_norm) if self.stereo_source and baseline_norm is not None else None
        self.eval_baseline = float(eval_baseline)
        if eval_scale not in ("median", "none"):
            raise HarnessError(f"method.eval_scale={eval_scale!r} is not 'median' or 'none'")
        self.eval_scale_policy = eval_scale
        if self.stereo_source:
            self.required_batch_keys = self.required_batch_keys | {"image_right", "T_l2r", "baseline"}
        self.dsc_ops = tuple(dsc_ops)
        bad_ops = [o for o in self.dsc_ops if o not in OPERATORS]
        if bad_ops or not self.dsc_ops:
            raise HarnessError(f"method.dsc_ops: unknown operator(s) {bad_ops}; known: {sorted(OPERATORS)}")
        self.dsc_severity = (float(dsc_severity[0]), float(dsc_severity[1]))
        self.dsc_prob = float(dsc_prob)
        self.consistency_grad_weight = float(consistency_grad_weight)
        self.consistency_scales = tuple(int(s) for s in consistency_scales)
        self.ltd_patch = int(ltd_patch)
        self.ltd_ratio = (float(ltd_ratio[0]), float(ltd_ratio[1]))
        self.choice("ltd_fill", ltd_fill, FILL_MODES)
        self.ltd_fill = ltd_fill
        self.graph_strides = tuple(int(s) for s in graph_strides)
        self.graph_student_features = _stride_map(graph_student_features, {16: "dec_s16", 32: "enc_s32"})
        self.graph_teacher_features = _stride_map(graph_teacher_features, {16: "sem_s16", 32: "sem_s32"})
        self.graph_grid = _stride_map(graph_grid, {16: (12, 40), 32: (6, 20)})
        for k in self.graph_strides:
            for name, m in (("graph_student_features", self.graph_student_features),
                            ("graph_teacher_features", self.graph_teacher_features), ("graph_grid", self.graph_grid)):
                if k not in m:
                    raise HarnessError(f"method.{name} has no entry for graph stride {k}")
        self.graph_dim = int(graph_dim)
        self.graph_topk = graph_topk
        self.graph_detach_teacher_adjacency = bool(graph_detach_teacher_adjacency)
        self.ssc_fuse = bool(ssc_fuse)
        self.ssc_fuse_stride = int(ssc_fuse_stride)
        self.ssc_fuse_at_inference = bool(ssc_fuse_at_inference)
        self.perturb_seed = perturb_seed
        self.pose_width = int(pose_width)
        self.pose_scale = float(pose_scale)

        self.use_dsc = self.loss_weights["dsc"] != 0
        self.use_ltd = self.loss_weights["ltd"] != 0
        self.use_graph = bool(self.graph_strides) and (self.loss_weights["graph"] != 0 or self.ssc_fuse)
        feats_s = {self.graph_student_features[k] for k in self.graph_strides} if self.use_graph else set()
        feats_t = {self.graph_teacher_features[k] for k in self.graph_strides} if self.use_graph else set()
        self.student_needs = Needs(depth=True, scales=self.scales, features=frozenset(feats_s),
                                   accepts_cond=frozenset({"inject"}) if self.ssc_fuse else frozenset())
        self.teacher_needs = Needs(features=frozenset(feats_t))
        if not self.use_graph:
            self.teacher_mode = "none"

        self.pose_net = PoseNet(self.pose_width, self.pose_scale)
        self.graphs = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        self.__dict__["_teacher_ref"] = None  # not a submodule: never trained, never saved twice
        self.__dict__["_gen"] = None
        self.__dict__["_ctx"] = None  # the run's StepContext, seen first by compute_loss

    # ------------------------------------------------------------------ construction
    def build(self, student: nn.Module, teacher: nn.Module | None) -> None:
        self.__dict__["_teacher_ref"] = teacher
        if not self.use_graph or teacher is None:
            self.use_graph = False
            return
        specs_s = {s.name: s for s in student.feature_specs()}
        specs_t = {s.name: s for s in teacher.feature_specs()}
        for k in self.graph_strides:
            s_name, t_name = self.graph_student_features[k], self.graph_teacher_features[k]
            if s_name not in specs_s or t_name not in specs_t:
                raise HarnessError(f"graph stride {k}: student feature {s_name!r} or teacher feature {t_name!r} "
                                   f"does not exist (student: {sorted(specs_s)}, teacher: {sorted(specs_t)})")
            self.graphs[str(k)] = IsoGraph(specs_s[s_name].channels, specs_t[t_name].channels, self.graph_dim,
                                           self.graph_topk, self.graph_detach_teacher_adjacency)
        if self.ssc_fuse:
            target = f"dec_s{self.ssc_fuse_stride}"
            if target not in specs_s:
                raise HarnessError(f"method.ssc_fuse_stride={self.ssc_fuse_stride}: the student has no {target}")
            for k in self.graph_strides:
                conv = nn.Conv2d(self.graph_dim, specs_s[target].channels, 1)
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
                self.fuse[str(k)] = conv

    @property
    def teacher(self) -> nn.Module | None:
        return self.__dict__["_teacher_ref"]

    def generator(self, device: torch.device) -> torch.Generator:
        """The perturbation generator (created on first use; seeded by ``perturb_seed`` or by
        the run's seeded global RNG)."""
        gen = self.__dict__["_gen"]
        if gen is None or gen.device != torch.device(device):
            seed = self.perturb_seed if self.perturb_seed is not None else int(torch.randint(0, 2**62, (1,)).item())
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed))
            self.__dict__["_gen"] = gen
        return gen

    # ------------------------------------------------------------------ per step
    @torch.no_grad()
    def run_teacher(self, image: Tensor) -> DepthOutput:
        """The frozen teacher on the CLEAN image only (no gradient, eval mode)."""
        teacher = self.teacher
        was = teacher.training
        teacher.eval()
        try:
            return teacher({"image": image})
        finally:
            teacher.train(was)

    def graph_forward(self, s_out: DepthOutput, t_out: DepthOutput, size) -> dict[int, GraphOut]:
        h, w = size
        return {
            k: self.graphs[str(k)](s_out.features[self.graph_student_features[k]],
                                   t_out.features[self.graph_teacher_features[k]],
                                   node_grid(self.graph_grid[k], h, w))
            for k in self.graph_strides
        }

    def fusion(self, graphs: dict[int, GraphOut], size) -> dict[int, Tensor]:
        """``cond["inject"]``: the sum over strides of ``conv_k(H_S^k)`` resized to the fusion stage."""
        h, w = size
        s = self.ssc_fuse_stride
        target = (h // s, w // s)
        total = None
        for k, g in graphs.items():
            m = _resize(self.fuse[str(k)](IsoGraph.to_map(g.h_s, g.grid)), target)
            total = m if total is None else total + m
        return {s: total}

    def student_forward(self, student: nn.Module, batch: dict[str, Any]) -> dict[str, DepthOutput]:
        img = batch["image"]
        size = img.shape[-2:]
        out: dict[str, DepthOutput] = {"clean": student(img)}
        if self.use_graph:
            t_out = self.run_teacher(img)
            out["teacher"] = t_out
            graphs = self.graph_forward(out["clean"], t_out, size)
            aux = {}
            for k, g in graphs.items():
                aux[f"rel_s{k}"] = g.rel
                aux[f"node_s{k}"] = g.node
            out["graph"] = DepthOutput(aux=aux)
            if self.ssc_fuse:
                out["fused"] = student(img, cond={"inject": self.fusion(graphs, size)})
        if (self.use_dsc or self.use_ltd) and not self.in_aug_warmup():
            gen = self.generator(img.device)
            if self.aug_mode == "split":
                aug_img, is_masked = self.augment(img, gen)
                aug = student(aug_img)
                aug.aux["ltd_sample"] = is_masked.to(img.dtype)
                out["aug"] = aug
            else:
                if self.use_dsc:
                    out["perturbed"] = student(self.perturb(img, gen))
                if self.use_ltd:
                    out["masked"] = student(self.mask(img, gen))
        return out

    def in_aug_warmup(self) -> bool:
        """True during the first ``aug_warmup`` fraction of the stage's steps (and at the very
        first step, before any :class:`StepContext` was seen): no augmented pass, no ``dsc`` /
        ``ltd``. The consistency terms are trivially satisfied by a constant depth map, which is
        what a network trained from scratch predicts at first; the photometric loss must create
        some structure before the consistency terms may pull on it."""
        if self.aug_warmup <= 0.0 or not self.training:
            return False
        ctx = self.__dict__["_ctx"]
        if ctx is None:
            return True
        return ctx.step < self.aug_warmup * max(int(ctx.total_steps), 1)

    def consistency_factor(self, ctx: StepContext) -> float:
        """Multiplier of ``dsc`` / ``ltd`` at this step: 0 until the end of the warm-up, then a
        linear ramp to 1 over ``consistency_ramp`` of the stage's steps (1 throughout when the
        ramp is 0). A from-scratch student pulled hard towards consistency early flattens to a
        constant map; the ramp lets the weights be of order 0.1-1 without that collapse."""
        if self.consistency_ramp <= 0.0:
            return 1.0
        total = max(int(ctx.total_steps), 1)
        done = ctx.step - self.aug_warmup * total
        return float(min(max(done / (self.consistency_ramp * total), 0.0), 1.0))

    def perturb(self, img: Tensor, gen: torch.Generator) -> Tensor:
        """DSC input: one operator of ``dsc_ops`` per image (see :func:`.perturb.perturb`)."""
        return perturb(img, gen, self.dsc_ops, self.dsc_severity, self.dsc_prob)[0]

    def mask(self, img: Tensor, gen: torch.Generator) -> Tensor:
        """LTD input: patch masking/shuffling (see :func:`.perturb.patch_mask`)."""
        return patch_mask(img, gen, patch_size_for(img.shape[-2], self.ltd_patch), self.ltd_ratio, self.ltd_fill)[0]

    @torch.no_grad()
    def augment(self, img: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """The shared augmented batch of ``aug_mode="split"``: ``round(ltd_fraction * B)``
        images (chosen at random) are patch-masked, the others perturbed. Returns the batch
        and the boolean ``B`` vector of masked images. With only one of DSC / LTD enabled,
        every image gets that one."""
        b = img.shape[0]
        if not self.use_ltd:
            n_mask = 0
        elif not self.use_dsc:
            n_mask = b
        else:
            n_mask = int(round(self.ltd_fraction * b))
        order = torch.randperm(b, generator=gen, device=gen.device).to(img.device)
        is_masked = torch.zeros(b, dtype=torch.bool, device=img.device)
        is_masked[order[:n_mask]] = True
        out = img.clone()
        if n_mask:
            out[is_masked] = self.mask(img[is_masked], gen)
        if n_mask < b:
            out[~is_masked] = self.perturb(img[~is_masked], gen)
        return out, is_masked

    def teacher_forward(self, teacher, batch, s_out):
        """The teacher already ran (clean image, no gradient) inside :meth:`student_forward`."""
        if "teacher" in s_out:
            return s_out["teacher"]
        if teacher is None or not self.use_graph:
            return None
        return self.run_teacher(batch["image"])

    # ------------------------------------------------------------------ losses
    def predict_poses(self, image: Tensor, frames: dict) -> dict[int, Tensor]:
        """``T_{t->s}`` for ``s = -1, +1`` from the pose net (Monodepth2 ordering: the pair is
        given in time order and the earlier frame's motion is inverted)."""
        b = image.shape[0]
        first = torch.cat([frames[-1], image], dim=0)
        second = torch.cat([image, frames[1]], dim=0)
        axisangle, translation = self.pose_net(first, second)
        return {
            -1: pose_vec_to_mat(axisangle[:b], translation[:b], invert=True),
            1: pose_vec_to_mat(axisangle[b:], translation[b:], invert=False),
        }

    def sources(self, batch: dict[str, Any]) -> tuple[dict, dict | None]:
        """Source images and, for the stereo partner, its fixed transform: ``({-1: I_-1, 1: I_+1
        [, "r": I_r]}, {"r": T_l2r} or None)``. ``T_l2r`` already carries the mirror convention of
        the sample (``+baseline`` for a mirrored-not-swapped sample), so no sign fix is needed."""
        frames = dict(batch["frames"])
        if not self.stereo_source:
            return frames, None
        frames["r"] = batch["image_right"]
        T = batch["T_l2r"]
        if self.baseline_norm is not None:
            # fx * b_norm / (fx * b): checks the data's baseline against eval_baseline as well
            fx_b = focal_baseline(batch, None)
            ratio = focal_baseline(batch, self.baseline_norm, self.eval_baseline, rtol=1e-3, owner="structure") / fx_b
            T = T.clone()
            T[:, :3, 3] = T[:, :3, 3] * ratio.view(-1, 1).to(T.dtype)
        return frames, {"r": T}

    def identity_errors(self, image: Tensor, frames: dict) -> list[Tensor] | None:
        if not self.automask:
            return None
        return [photometric_error(src, image, self.photo_alpha, self.ssim_window) for src in frames.values()]

    def view_photometric(self, image: Tensor, frames: dict, poses: dict, K: Tensor, view: DepthOutput,
                         identity: list[Tensor] | None, scales=None) -> Tensor:
        """Monodepth2 photometric loss of one prediction (clean target and sources), mean over
        ``scales`` (default: all configured scales), each upsampled to full resolution."""
        size = image.shape[-2:]
        losses = []
        for i in self.scales if scales is None else scales:
            depth = _full_res_depth(view.depth[i], size)
            errors = [
                photometric_error(warp_temporal(src, depth, poses[s], K).image, image, self.photo_alpha, self.ssim_window)
                for s, src in frames.items()
            ]
            loss_map, _ = min_reprojection(errors, identity)
            losses.append(loss_map.mean())
        return torch.stack(losses).mean()

    def view_smoothness(self, image: Tensor, view: DepthOutput, scales=None) -> Tensor:
        """Edge-aware smoothness of the normalised disparity, ``/ 2^i`` per scale, mean over scales."""
        vals = []
        for i in self.scales if scales is None else scales:
            disp = view.disp[i]
            vals.append(smoothness(disp, _resize(image, disp.shape[-2:]), order=1) / (2**i))
        return torch.stack(vals).mean()

    def consistency(self, aug: DepthOutput, clean: DepthOutput, reduction: str = "mean") -> Tensor:
        """:func:`structure_consistency` averaged over ``consistency_scales`` (per image with
        ``reduction="none"``)."""
        return torch.stack([
            structure_consistency(aug.depth[i], clean.depth[i], self.consistency_grad_weight, reduction)
            for i in self.consistency_scales
        ]).mean(dim=0)

    def compute_loss(self, batch: dict[str, Any], s_out: dict[str, DepthOutput], t_out: DepthOutput | None,
                     ctx: StepContext) -> LossDict:
        self.__dict__["_ctx"] = ctx
        image, K = batch["image"], batch["K"]
        frames, fixed = self.sources(batch)
        views = [v for v in self.photo_views if v in s_out]
        poses = self.predict_poses(image, batch["frames"])
        if fixed:
            poses.update(fixed)
        identity = self.identity_errors(image, frames)
        scales = {v: self.scales if v == "clean" else self.aux_photo_scales for v in views}
        photo = {v: self.view_photometric(image, frames, poses, K, s_out[v], identity, scales[v]) for v in views}
        others = [photo[v] for v in views if v != "clean"]
        if self.photo_weighting == "mean" or "clean" not in photo:
            photo_term = torch.stack(list(photo.values())).mean()
        else:
            photo_term = photo["clean"]
            if others:
                photo_term = photo_term + self.photo_aux_weight * torch.stack(others).mean()
        terms = {
            "photo": photo_term,
            "smooth": torch.stack([self.view_smoothness(image, s_out[v], scales[v]) for v in views]).mean(),
        }
        if "aug" in s_out:
            per_image = self.consistency(s_out["aug"], s_out["clean"], reduction="none")
            is_masked = s_out["aug"].aux["ltd_sample"].bool()
            if self.use_dsc and bool((~is_masked).any()):
                terms["dsc"] = per_image[~is_masked].mean()
            if self.use_ltd and bool(is_masked.any()):
                terms["ltd"] = per_image[is_masked].mean()
        if "perturbed" in s_out:
            terms["dsc"] = self.consistency(s_out["perturbed"], s_out["clean"])
        if "masked" in s_out:
            terms["ltd"] = self.consistency(s_out["masked"], s_out["clean"])
        ramp = self.consistency_factor(ctx)
        for k in ("dsc", "ltd"):
            if k in terms and ramp != 1.0:
                terms[k] = ramp * terms[k]
        if "graph" in s_out:
            aux = s_out["graph"].aux
            terms["graph"] = torch.stack([aux[f"rel_s{k}"] + aux[f"node_s{k}"] for k in self.graph_strides]).mean()
        return self.weighted(terms)

    # ------------------------------------------------------------------ evaluation
    def predict(self, student: nn.Module, image: Tensor) -> Tensor:
        """The student alone; with ``ssc_fuse_at_inference`` the teacher-graph fusion as well."""
        factor = 1.0 if self.baseline_norm is None else self.eval_baseline / self.baseline_norm
        if not (self.ssc_fuse_at_inference and self.use_graph and self.ssc_fuse and self.teacher is not None):
            return student.predict(image) * factor
        was = student.training
        student.eval()
        try:
            with torch.no_grad():
                clean = student(image)
                graphs = self.graph_forward(clean, self.run_teacher(image), image.shape[-2:])
                return student(image, cond={"inject": self.fusion(graphs, image.shape[-2:])}).depth[0] * factor
        finally:
            student.train(was)
