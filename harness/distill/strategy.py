"""The distillation-strategy base class every method plugin subclasses.

A strategy declares what it needs (batch keys, teacher mode, features), owns its extra modules
(adapters, heads, pose nets; dropped at test time), runs the student (and, if it wants, the
teacher) each step and returns a :class:`harness.LossDict` of named terms. The harness does the
rest: data, teacher cache, mmengine Runner, evaluation and results.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from harness.distill import flips
from harness.errors import HarnessError
from harness.types import DepthOutput, LossDict, Needs, RunInfo, Stage, StepContext


class Strategy(nn.Module):
    """Base class: override the class attributes and :meth:`compute_loss` at least.

    Class attributes
    ----------------
    required_batch_keys: batch keys the dataset must provide for training.
    teacher_mode: ``"none"`` (no teacher), ``"frozen"`` (the harness trains or loads the
        configured teacher from its cache, freezes it and passes it in), ``"online"`` (built
        untrained; the strategy trains it, its params join the optimiser when a stage trains
        ``"teacher"``), ``"snapshot"``/``"ema"`` (the strategy makes it from the student) or
        ``"precomputed"`` (teacher outputs come in the batch).
    teacher_needs / student_needs: validated against the models before training.
    eval_scale_policy: ``"none"``, ``"median"`` or ``"stereo_factor"``; overrides the dataset
        protocol's scaling for this method's student (recorded in the result's protocol).
    eval_stereo_factor: the multiplier of ``"stereo_factor"`` scaling for this method's student
        (e.g. ``eval_baseline / baseline_norm`` of a student trained with a normalised
        baseline); None keeps the dataset protocol's ``stereo_factor``.
    precompute: teacher outputs the harness computes once and adds to every batch.

    Every config key under ``method`` except ``type`` arrives as a keyword argument of
    ``__init__`` (subclasses declare their options there, so a misspelt key is an error);
    ``loss_weights`` maps term names to weights (0 switches a term off) over
    ``default_loss_weights``.
    """

    required_batch_keys: frozenset[str] = frozenset({"image"})
    teacher_mode: str = "none"
    teacher_needs: Needs = Needs()
    student_needs: Needs = Needs(depth=True)
    eval_scale_policy: str | None = None
    eval_stereo_factor: float | None = None
    #: batch key -> teacher output ("disp", "depth" or "aux:<name>") computed once by the
    #: configured frozen teacher and stored beside the data (see ``harness.pipeline.precompute``)
    precompute: dict[str, str] = {}

    #: weights of the named loss terms; ``method.loss_weights`` in the config overrides them
    default_loss_weights: dict[str, float] = {}

    @staticmethod
    def choice(name: str, value: Any, allowed) -> Any:
        """``value`` if it is one of ``allowed``, else one line naming ``method.<name>``::

            self.mode = self.choice("mode", mode, ("soft", "hard"))
        """
        options = list(allowed)
        if not any(a == value and isinstance(a, bool) == isinstance(value, bool) for a in options):
            raise HarnessError(f"config method.{name}={value!r} is not one of {', '.join(map(repr, options))}")
        return value

    def __init__(self, loss_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.loss_weights = {**self.default_loss_weights, **(loss_weights or {})}
        #: what the strategy decided during training (e.g. a refused distillation), written to the
        #: result as ``method_notes``; keep the values JSON-serialisable
        self.notes: dict[str, Any] = {}

    # -- schedule --------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """Training stages in order; default: one stage training the student (+ owned modules)."""
        return [Stage("student")]

    # -- construction ----------------------------------------------------------------------
    def on_run_start(self, run: RunInfo) -> None:
        """Called once after ``__init__``, before anything is built: the stages and their
        epochs as the harness will run them, the teacher type and the dataset. Resolve here
        what depends on the run (epochs across stages, the teacher's kind, ...); the
        attributes the harness reads (``teacher_mode``, ``precompute``, ``required_batch_keys``,
        the needs, the eval policy) are read after this call."""

    def build(self, student: nn.Module, teacher: nn.Module | None) -> None:
        """Create owned modules from the models' ``feature_specs()`` (called once, before training)."""

    def param_groups(self, student: nn.Module, teacher: nn.Module | None, stage: Stage) -> list[dict]:
        """Parameter groups for the optimiser of ``stage``.

        Default: the student when ``"student"`` is trained, this strategy's own modules when
        ``"strategy"`` is, and an online teacher when ``"teacher"`` is. A group may carry its
        own ``lr``.
        """
        groups: list[dict] = []
        if "student" in stage.train:
            groups.append({"params": [p for p in student.parameters() if p.requires_grad]})
        if "strategy" in stage.train:
            own = [p for p in self.parameters() if p.requires_grad]
            if own:
                groups.append({"params": own})
        if "teacher" in stage.train and teacher is not None:
            groups.append({"params": [p for p in teacher.parameters() if p.requires_grad]})
        return groups

    # -- events ----------------------------------------------------------------------------
    def on_stage_start(self, stage: Stage, student: nn.Module, teacher: nn.Module | None) -> nn.Module | None:
        """Called before each stage; may return a replacement teacher (e.g. a student snapshot)."""
        return teacher

    def on_stage_end(self, stage: Stage, student: nn.Module, teacher: nn.Module | None,
                     score_val: Callable[[Callable[[dict[str, Any]], Tensor]], dict[str, Any]]) -> None:
        """Called after each stage. ``score_val(predict_batch)`` scores ``predict_batch(batch) ->
        depth`` on the val split with the method's val protocol (e.g. to check an online teacher
        before distilling from it); record decisions in :attr:`notes`."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch (warm-ups, forgetting factors)."""

    def on_step_end(self, step: int, student: nn.Module, teacher: nn.Module | None) -> None:
        """Called after every optimiser step (EMA teacher updates)."""

    # -- per step --------------------------------------------------------------------------
    def student_forward(self, student: nn.Module, batch: dict[str, Any]) -> dict[str, DepthOutput]:
        """Run the student; default one pass on ``batch["image"]`` under the key ``"clean"``."""
        return {"clean": student(batch["image"])}

    def teacher_forward(
        self, teacher: nn.Module | None, batch: dict[str, Any], s_out: dict[str, DepthOutput]
    ) -> DepthOutput | None:
        """Run the teacher; frozen, snapshot and EMA teachers run without gradients.

        A frozen stereo teacher (one whose ``input_keys`` include ``image_right``; one that
        declares none, when the batch has that view) sees canonical pairs only: mirrored
        samples whose partner view lies on the left are mirrored back before it and its outputs
        mirrored again after it (:func:`harness.distill.flips.run_canonical`), so ``t_out`` is
        in the frame of every sample as the batch gives it. Online teachers get the student's
        ``"clean"`` output as their condition.
        """
        if teacher is None:
            return None
        if self.teacher_mode == "frozen" and flips.reads_pair(teacher, batch):
            with torch.no_grad():
                return flips.run_canonical(teacher, batch)
        if self.teacher_mode in ("frozen", "snapshot", "ema"):
            with torch.no_grad():
                return teacher(batch)
        return teacher(batch, s_out.get("clean"))

    def compute_loss(
        self,
        batch: dict[str, Any],
        s_out: dict[str, DepthOutput],
        t_out: DepthOutput | None,
        ctx: StepContext,
    ) -> LossDict:
        """Return the named loss terms and their weighted total for one batch."""
        raise NotImplementedError

    def weighted(self, terms: dict[str, Tensor]) -> LossDict:
        """Combine ``terms`` with this strategy's configured ``loss_weights``."""
        return LossDict.weighted(terms, self.loss_weights)

    # -- evaluation ------------------------------------------------------------------------
    def predict(self, student: nn.Module, image: Tensor) -> Tensor:
        """Depth for evaluation (metric or relative); default ``student.predict(image)``.

        Override only for documented test-time post-processing (e.g. flip fusion), which is
        then recorded in the result.
        """
        return student.predict(image)

    def teacher_outputs(self, teacher: nn.Module, student: nn.Module, batch: dict[str, Any]) -> DepthOutput:
        """The teacher's output as scored in the result (every scale of an online teacher after
        each stage, scale 0 in its reference row). Default ``teacher(batch)``; an online teacher
        conditioned on the student (RSD) overrides this to pass the student's output."""
        return teacher(batch)

    def teacher_predict(self, teacher: nn.Module, student: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Teacher depth for its reference row in the result (the teacher is scored on the same
        protocol as the student): scale 0 of :meth:`teacher_outputs`."""
        return self.teacher_outputs(teacher, student, batch).depth[0]
