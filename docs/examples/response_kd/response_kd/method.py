"""``response_kd``: the student learns GT depth and the frozen stereo teacher's depth.

Terms (config ``method.loss_weights``): ``gt``, the scale-invariant log loss to ground truth on
every student scale (upsampled), and ``resp``, ``mean |log D_S - log D_T|`` over the pixels where
the teacher's depth lies in ``[min_depth, max_depth]``. The teacher is the configured one
(``teacher_mode = "frozen"``): the harness trains it once, caches it and freezes it. The default
``teacher_forward`` gives it canonical stereo pairs and mirrors its output back, so ``t_out`` is
aligned with mirrored samples too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import HarnessError, LossDict, Needs, Strategy
from harness.distill.losses import masked_mean, silog


class ResponseKD(Strategy):
    """Args (``method.*`` config keys): ``scales`` (student scales under ``gt``), ``min_depth``,
    ``max_depth`` (the teacher depths ``resp`` trusts), ``loss_weights`` (``gt``, ``resp``)."""

    teacher_mode = "frozen"
    eval_scale_policy = "none"  # metric depth: scored without median scaling
    default_loss_weights = {"gt": 1.0, "resp": 0.5}

    def __init__(self, scales=(0, 1, 2, 3), min_depth: float = 0.1, max_depth: float = 80.0,
                 loss_weights: dict[str, float] | None = None) -> None:
        super().__init__(loss_weights)
        unknown = set(self.loss_weights) - set(self.default_loss_weights)
        if unknown:
            raise HarnessError(f"method.loss_weights: unknown term(s) {sorted(unknown)} "
                               f"(response_kd has {sorted(self.default_loss_weights)})")
        self.scales = tuple(int(s) for s in scales)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.required_batch_keys = frozenset({"image", "depth_gt", "depth_gt_mask"})
        self.student_needs = Needs(depth=True, scales=self.scales)
        self.teacher_needs = Needs(depth=True)

    def compute_loss(self, batch, s_out, t_out, ctx) -> LossDict:
        out = s_out["clean"]
        size = batch["image"].shape[-2:]
        gt, mask = batch["depth_gt"], batch["depth_gt_mask"]
        depths = [F.interpolate(out.depth[i], size=size, mode="bilinear", align_corners=False) for i in self.scales]
        terms = {"gt": torch.stack([silog(d, gt, mask) for d in depths]).mean()}
        if t_out is None:
            raise HarnessError("response_kd needs the frozen teacher (config `teacher`)")
        d_t = t_out.depth[0].detach()
        valid = (d_t > self.min_depth) & (d_t < self.max_depth)
        terms["resp"] = masked_mean((torch.log(depths[0]) - torch.log(d_t.clamp_min(self.min_depth))).abs(), valid)
        return self.weighted(terms)
