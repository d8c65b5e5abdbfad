"""RSD's two networks as harness models: Mono-Net (student ``rsd_mono``) and Stereo-Net
(online teacher ``rsd_stereo``). docs/methods.md 3.2.

Depth from a width-normalised disparity is ``D = f b / (W d~) = (f / W) b / d~``. Neither
network can know ``f / W`` or ``b`` from an image, and ``predict(image)`` receives only the
image, so both keep the dataset's ``f b / W`` (metres; invariant to resizing, since ``f``
scales with ``W``) in a persistent buffer, ``focal_baseline``. The ``recursive`` strategy fills
it during training from the batch (``K[0, 0] * baseline / W``, a running mean over every
training sample; calibration is a property of the dataset, not test-time ground truth), so it
is saved in checkpoints with the weights. Until it has been set (or given to ``__init__``),
``depth`` is ``1 / d~`` and ``depth_kind="relative"``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness import DepthOutput, FeatureSpec
from .modules import AdaptiveRefinement, ResASPPNet, disp_activation, head_bias

__all__ = ["RSDMonoNet", "RSDStereoNet", "MIN_DISP"]

#: normalised disparities are floored here before inversion (depth stays finite)
MIN_DISP = 1e-6
FEATURES = ("dec_s1", "dec_s2", "dec_s4", "dec_s8")


class _Calibrated(nn.Module):
    """``focal_baseline`` buffer (``f b / W`` in metres) and the disparity -> depth conversion."""

    #: options that change no layer (a start value, a calibration scalar): one measured cost per network
    cost_neutral_keys = frozenset({"init_disp", "focal_baseline"})

    def _init_calibration(self, focal_baseline: float | None) -> None:
        fb = float(focal_baseline) if focal_baseline is not None else 0.0
        if fb < 0:
            raise ValueError(f"focal_baseline must be positive, got {focal_baseline}")
        self.register_buffer("focal_baseline", torch.tensor(fb, dtype=torch.float64))
        self.register_buffer("calibration_count", torch.tensor(1.0 if fb > 0 else 0.0, dtype=torch.float64))

    @property
    def calibrated(self) -> bool:
        return bool(self.focal_baseline > 0)

    @torch.no_grad()
    def observe_calibration(self, K: Tensor, baseline: Tensor, width: int) -> None:
        """Fold ``K[:, 0, 0] * baseline / width`` of a training batch into the running mean."""
        fb = (K[:, 0, 0].double() * torch.as_tensor(baseline).double().reshape(-1).to(K.device) / float(width))
        n_new = float(fb.numel())
        n_old = float(self.calibration_count)
        mean = fb.mean().to(self.focal_baseline.device)
        self.focal_baseline.copy_(self.focal_baseline + (mean - self.focal_baseline) * n_new / (n_old + n_new))
        self.calibration_count.add_(n_new)

    def disp_to_depth(self, disp_norm: Tensor) -> Tensor:
        """``f b / (W d~)`` when calibrated, else ``1 / d~`` (relative)."""
        inv = 1.0 / disp_norm.clamp_min(MIN_DISP)
        if self.calibrated:
            return inv * self.focal_baseline.to(inv.dtype)
        return inv

    @property
    def depth_kind(self) -> str:
        return "metric" if self.calibrated else "relative"


def _specs(net: ResASPPNet) -> list[FeatureSpec]:
    specs = [FeatureSpec(f"enc_s{s}", c, s) for s, c in sorted(net.enc_channels.items())]
    specs += [FeatureSpec(f"dec_s{s}", c, s) for s, c in sorted(net.dec_channels.items())]
    return specs


class RSDMonoNet(_Calibrated):
    """RSD Mono-Net: resASPPNet on the left image only, two-channel (left/right view)
    width-normalised disparities ``0.3 sigmoid`` at scales 0..3 (strides 1, 2, 4, 8).

    Args:
        base_width: ``w`` of :class:`~.modules.ResASPPNet` (64 = paper).
        nonlocal_residual: replace the up-conv outputs at 1/16 and 1/8 by ``X + 0.01 A X``
            (the non-local block; present but commented out in the release). The affinities
            ``aux["affinity_s16"]`` / ``aux["affinity_s8"]`` are returned either way.
        focal_baseline: ``f b / W`` in metres if known up front; otherwise the strategy fills it.
        init_disp: initial output of the disparity heads (0.15 = the release's zero bias).

    ``forward(image)`` returns ``disp`` (B x 2 x h x w, ``disp_units="normalised"``), ``depth``
    from the left channel (``f b / (W d~^l)``), features ``enc_s2..enc_s32`` and ``dec_s1..dec_s16``
    (iconv1..iconv5) and the affinities. ``cond`` is not supported (RSD does not condition the
    Mono-Net); passing a non-empty one is an error.
    """

    def __init__(self, base_width: int = 64, nonlocal_residual: bool = True,
                 focal_baseline: float | None = None, init_disp: float = 0.15) -> None:
        super().__init__()
        self.net = ResASPPNet(3, base_width, nonlocal_residual=nonlocal_residual, init_disp=init_disp)
        self.base_width = int(base_width)
        self._init_calibration(focal_baseline)

    def feature_specs(self) -> list[FeatureSpec]:
        return _specs(self.net)

    def forward(self, image: Tensor, cond: dict[str, Any] | None = None) -> DepthOutput:
        if cond:
            raise ValueError(f"RSDMonoNet takes no conditioning, got cond keys {sorted(cond)}")
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be B x 3 x H x W, got {tuple(image.shape)}")
        out = self.net(image)
        return DepthOutput(
            disp=out["disp"],
            depth={i: self.disp_to_depth(d[:, :1]) for i, d in out["disp"].items()},
            features=out["features"],
            aux={f"affinity_s{s}": a for s, a in out["affinity"].items()},
            disp_units="normalised",
            depth_kind=self.depth_kind,
        )

    @torch.no_grad()
    def predict(self, image: Tensor) -> Tensor:
        """Full-resolution depth ``B x 1 x H x W`` from the left-view channel (eval mode)."""
        was = self.training
        self.eval()
        try:
            return self.forward(image).depth[0]
        finally:
            self.train(was)


class RSDStereoNet(_Calibrated):
    """RSD Stereo-Net: an online teacher conditioned on the student's prediction.

    Input ``concat(I_l, I_r, d)`` (8 channels) where ``d`` is the current full-resolution
    two-channel disparity estimate: the Mono-Net's ``disp[0]`` at iteration 0 (not detached,
    as in the release, unless ``detach_init=True``), then the previous iteration's estimate.
    ``iterations`` passes share the weights. Iteration ``j`` predicts ``Delta_j`` at 4 scales;
    the estimate accumulates ``d^(0) = Delta_0``, ``d^(j) = Delta_j + d^(j-1)``. The adaptive
    refinement (``refine_mode="convex"``, [D]) then replaces the full-resolution ``d^(j),0`` by
    a per-pixel convex combination of its own 3x3 neighbourhood plus a bounded residual
    (weights from ``d^(j),0`` and iconv1); ``refine_mode="release"`` ([C]) instead replaces
    ``Delta_j^0`` by the release module's output, which barely depends on its input.

    Args:
        base_width: ``w`` of :class:`~.modules.ResASPPNet`.
        iterations: ``N`` (release: 2).
        residual_head: ``"sigmoid"`` ([C]: every ``Delta`` is ``0.3 sigmoid``, so the recursion
            can only increase disparity) or ``"tanh"`` ([D]: iterations ``j >= 1`` predict signed
            increments ``0.3 tanh`` and the accumulated estimate is clamped at 0).
        refine: use the adaptive refinement module (release: yes).
        refine_width: first width of the kernel predictor (paper 64; default ``base_width``).
        refine_padding: ``"replicate"`` ([D]) or ``"zeros"`` (release), see
            :class:`~.modules.AdaptiveRefinement`.
        refine_mode, refine_residual: ``"convex"`` (default) or ``"release"``; the convex
            update's bounded residual on/off.
        detach_init: stop the Stereo-Net's losses from reaching the Mono-Net through its input.
        focal_baseline, init_disp: as :class:`RSDMonoNet` (``init_disp`` also sets the
            refinement's output bias; the ``tanh`` increments are centred on the same bias, so an
            untrained pass adds nothing).

    ``forward`` returns the final estimate ``d^(N-1)`` in ``disp`` (normalised, 2 channels),
    ``depth`` (left channel, metric once calibrated), the final iteration's features
    (``dec_s1..dec_s8`` = iconv1..4, plus the rest), ``aux["affinity_s16"/"affinity_s8"]`` and
    every iteration's estimate as ``aux["iter_disp/{j}/{i}"]``.
    """

    mode = "online"
    input_keys = frozenset({"image", "image_right"})
    trainable = True

    def __init__(self, base_width: int = 64, iterations: int = 2, residual_head: str = "sigmoid",
                 refine: bool = True, refine_width: int | None = None, refine_padding: str = "replicate",
                 detach_init: bool = False, focal_baseline: float | None = None,
                 init_disp: float = 0.15, refine_mode: str = "convex", refine_residual: bool = False) -> None:
        super().__init__()
        if int(iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if residual_head not in ("sigmoid", "tanh"):
            raise ValueError(f"residual_head must be 'sigmoid' or 'tanh', got {residual_head!r}")
        self.iterations = int(iterations)
        self.residual_head = residual_head
        self.detach_init = bool(detach_init)
        self.base_width = int(base_width)
        self.net = ResASPPNet(3 + 3 + 2, base_width, nonlocal_residual=False, init_disp=init_disp)
        self.refiner = (
            AdaptiveRefinement(self.net.dec_channels[1], int(refine_width or base_width), 2, 3, refine_padding,
                               init_disp=init_disp, mode=refine_mode, residual=refine_residual)
            if refine else None
        )
        self._tanh_centre = head_bias(init_disp)
        self._init_calibration(focal_baseline)
        # loss weights of self_loss (RSD: L = L_ap + 0.5 L_sm + 1.0 L_lr)
        self.self_loss_weights = {"ap": 1.0, "sm": 0.5, "lr": 1.0}

    def feature_specs(self) -> list[FeatureSpec]:
        return _specs(self.net)

    def _activation(self, j: int):
        if j == 0 or self.residual_head == "sigmoid":
            return disp_activation("sigmoid")
        return disp_activation("tanh", centre=self._tanh_centre)

    def forward(self, batch: dict[str, Any], student_out: DepthOutput | None = None) -> DepthOutput:
        """Run ``iterations`` recursive passes (see the class docstring).

        Without ``student_out`` (e.g. used as a stand-alone stereo network) the first input
        disparity is zero; RSD always passes the Mono-Net's prediction.
        """
        missing = [k for k in ("image", "image_right") if k not in batch]
        if missing:
            raise KeyError(f"RSDStereoNet needs batch key(s) {missing}; got {sorted(batch)}")
        left, right = batch["image"], batch["image_right"]
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
            raise ValueError(f"image and image_right must both be B x 3 x H x W, got "
                             f"{tuple(left.shape)} and {tuple(right.shape)}")
        if student_out is not None:
            cur = student_out.disp[0]
            if cur.shape[1] != 2 or cur.shape[-2:] != left.shape[-2:]:
                raise ValueError(f"student disp[0] must be B x 2 x H x W normalised disparities (RSD Mono-Net), "
                                 f"got {tuple(cur.shape)}")
            if self.detach_init:
                cur = cur.detach()
        else:
            cur = left.new_zeros(left.shape[0], 2, *left.shape[-2:])

        estimates: list[dict[int, Tensor]] = []
        out: dict = {}
        for j in range(self.iterations):
            act = self._activation(j)
            out = self.net(torch.cat([left, right, cur], 1), act)
            delta = dict(out["disp"])
            convex = self.refiner is not None and self.refiner.mode == "convex"
            if self.refiner is not None and not convex:  # release: the refiner replaces Delta_j^0
                delta[0] = self.refiner(delta[0], out["features"]["dec_s1"], act)
            if j == 0:
                est = delta
            else:
                prev = estimates[-1]
                est = {i: delta[i] + prev[i] for i in delta}
                if self.residual_head == "tanh":
                    est = {i: d.clamp_min(0.0) for i, d in est.items()}
            if convex:  # [D]: a convex (+ residual) update of the accumulated full-res estimate
                est[0] = self.refiner(est[0], out["features"]["dec_s1"])
            estimates.append(est)
            cur = est[0]

        final = estimates[-1]
        aux = {f"affinity_s{s}": a for s, a in out["affinity"].items()}
        for j, est in enumerate(estimates):
            for i, d in est.items():
                aux[f"iter_disp/{j}/{i}"] = d
        return DepthOutput(
            disp=final,
            depth={i: self.disp_to_depth(d[:, :1]) for i, d in final.items()},
            features=out["features"],
            aux=aux,
            disp_units="normalised",
            depth_kind=self.depth_kind,
        )

    @staticmethod
    def iteration_disps(out: DepthOutput) -> list[dict[int, Tensor]]:
        """``[{scale: B x 2 x h x w}]`` per iteration, from ``aux["iter_disp/{j}/{i}"]``."""
        iters: dict[int, dict[int, Tensor]] = {}
        for key, t in out.aux.items():
            if key.startswith("iter_disp/"):
                _, j, i = key.split("/")
                iters.setdefault(int(j), {})[int(i)] = t
        return [dict(sorted(iters[j].items())) for j in sorted(iters)]

    def self_loss(self, batch: dict[str, Any], out: DepthOutput) -> dict[str, Tensor]:
        """RSD Stereo-Net self-supervised loss, already weighted: ``{"ap": L_ap, "sm": 0.5 L_sm,
        "lr": L_lr}`` with ``L_ap``/``L_lr`` averaged over the iterations and ``L_sm`` on the
        final estimate (docs/methods.md 3.3). Lets the net also be trained stand-alone."""
        from .losses import stereo_self_terms  # local import: losses imports nothing from here

        terms = stereo_self_terms(self.iteration_disps(out), out.disp, batch["image"], batch["image_right"])
        return {k: self.self_loss_weights[k] * v for k, v in terms.items()}
