"""Records shared by the harness and its plugins.

Everything a plugin author touches is defined here and re-exported from :mod:`harness`:
the model output record, feature specifications, what a strategy needs from its inputs,
training stages and the per-step context. Tensors are keyed by *stride* strings
(``"enc_s8"``, ``"dec_s16"``) so adapters can be built from specs, and by integer scale
``i`` (full, 1/2, 1/4, 1/8 resolution) for multi-scale outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from harness.errors import HarnessError

TeacherMode = Literal["frozen", "precomputed", "online", "snapshot", "ema", "none"]
ScalePolicy = Literal["none", "median", "stereo_factor"]

#: Batch keys a dataset may provide (shapes and conventions: ``docs/plugins.md``, "The dataset contract").
BATCH_KEYS = frozenset(
    {
        "image",  # B x 3 x H x W, left / target view, [0, 1]
        "image_right",  # B x 3 x H x W, rectified right view
        "frames",  # {-1: I_{t-1}, 1: I_{t+1}}
        "T_t2s",  # {-1: 4x4, 1: 4x4} ground-truth target->source camera motion
        "K",  # B x 3 x 3, intrinsics scaled to the network input
        "K_inv",
        "baseline",  # B, metres
        "T_l2r",  # B x 4 x 4 left -> right extrinsic
        "depth_gt",  # B x 1 x H x W, metres, 0 = invalid
        "depth_gt_mask",  # B x 1 x H x W bool
        "semantic",  # B x H x W int64 labels
        "pseudo_depth",  # B x 1 x H x W relative depth (precomputed)
        "proxy_disp",  # B x 1 x H x W teacher disparity in px (precomputed)
        "proxy_conf",
        "meta",  # dict of per-sample metadata (lists after collation)
    }
)


@dataclass
class DepthOutput:
    """What every student and teacher forward returns.

    ``disp`` and ``depth`` map a scale index (0 = full input resolution, 1 = 1/2, ...) to a
    ``B x C x h x w`` tensor. ``features`` maps names such as ``"enc_s8"`` or ``"dec_s16"`` to
    feature maps whose stride is the number after ``_s``. ``aux`` holds anything else
    (uncertainty, affinities, logits).
    """

    disp: dict[int, Tensor] = field(default_factory=dict)
    depth: dict[int, Tensor] = field(default_factory=dict)
    features: dict[str, Tensor] = field(default_factory=dict)
    aux: dict[str, Tensor] = field(default_factory=dict)
    disp_units: Literal["px", "normalised", "sigmoid"] = "sigmoid"
    depth_kind: Literal["metric", "relative", "scaled_stereo"] = "metric"

    def map(self, fn) -> "DepthOutput":
        """Apply ``fn`` to every tensor (e.g. ``torch.flip`` or ``Tensor.detach``). A map with a
        ``mapped(fn)`` method (the teacher-output cache's maps that fetch missing entries
        on first use) maps itself."""
        def each(d):
            return d.mapped(fn) if hasattr(d, "mapped") else {k: fn(v) for k, v in d.items()}

        return DepthOutput(disp=each(self.disp), depth=each(self.depth), features=each(self.features),
                           aux=each(self.aux), disp_units=self.disp_units, depth_kind=self.depth_kind)


@dataclass(frozen=True)
class FeatureSpec:
    """One named feature map a model exposes: ``FeatureSpec("dec_s8", 64, 8)``."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class Needs:
    """What a strategy needs from a model's output; validated before training starts."""

    depth: bool = False
    disp_channels: int = 1
    scales: tuple[int, ...] = (0,)
    features: frozenset[str] = frozenset()
    aux: frozenset[str] = frozenset()
    accepts_cond: frozenset[str] = frozenset()


@dataclass
class Stage:
    """One training stage; the harness runs one mmengine Runner per stage, in order.

    ``train`` says which parts receive gradients (``"student"``, ``"teacher"``,
    ``"strategy"``). ``epochs``/``lr``/``batch_size`` of ``None`` take the config's schedule
    values; ``epochs_fraction`` splits the configured epochs between stages instead.
    ``reset_schedule=False`` continues the previous stage's optimiser state and LR schedule
    (one schedule spans the chained stages; see :mod:`harness.pipeline.schedule`); ``True``
    starts a fresh optimiser with its schedule restarted at the stage lr.
    """

    name: str
    train: frozenset[str] = frozenset({"student", "strategy"})
    epochs: int | None = None
    epochs_fraction: float | None = None
    lr: float | None = None
    batch_size: int | None = None
    reset_schedule: bool = True

    def epochs_in(self, schedule_epochs: int) -> int:
        """Epochs of this stage when the config's schedule has ``schedule_epochs``: ``epochs``,
        else ``epochs_fraction`` of it (rounded, at least 1), else all of it."""
        if self.epochs is not None:
            return int(self.epochs)
        if self.epochs_fraction is not None:
            return max(1, round(schedule_epochs * self.epochs_fraction))
        return int(schedule_epochs)


@dataclass(frozen=True)
class RunInfo:
    """What the harness is about to run, given to :meth:`Strategy.on_run_start` once, after the
    strategy is constructed and before anything is built or trained.

    ``stages`` are the strategy's :meth:`~harness.Strategy.stages` and ``stage_epochs`` the
    epochs the harness gives each of them (:meth:`Stage.epochs_in` of ``schedule.epochs``).
    ``teacher`` is the configured teacher type (``teacher.type``), ``dataset`` the dataset name.
    """

    stages: tuple[Stage, ...]
    stage_epochs: tuple[int, ...]
    teacher: str | None = None
    dataset: str | None = None

    @property
    def total_epochs(self) -> int:
        """Student epochs over all stages."""
        return sum(self.stage_epochs)


@dataclass
class StepContext:
    """Where training is: passed to :meth:`Strategy.compute_loss` every step."""

    epoch: int = 0
    step: int = 0
    stage: str = "student"
    max_epochs: int = 1
    total_steps: int = 1


@dataclass
class LossDict:
    """A strategy's loss: ``total`` (differentiable) and its named, weighted ``terms``."""

    total: Tensor
    terms: dict[str, Tensor]

    @classmethod
    def weighted(cls, terms: dict[str, Tensor], weights: dict[str, float]) -> "LossDict":
        """Sum ``weights[name] * terms[name]``; a weight of 0 switches a term off.

        Every term in ``terms`` must have a weight; the recorded terms are the weighted values
        (detached), so they add up to ``total``.
        """
        missing = sorted(set(terms) - set(weights))
        if missing:
            raise HarnessError(f"config method.loss_weights.{missing[0]}: no weight for loss term {missing[0]!r} "
                               f"(the strategy's default_loss_weights has: {', '.join(sorted(weights)) or 'none'})")
        weighted = {k: float(weights[k]) * v for k, v in terms.items() if float(weights[k]) != 0.0}
        if weighted:
            total = torch.stack([v.reshape(()) for v in weighted.values()]).sum()
        else:
            total = next(iter(terms.values())).new_zeros(()) if terms else torch.zeros(())
        return cls(total=total, terms={k: v.detach() for k, v in weighted.items()})

