"""Baseline: the student trained alone with the same supervision the methods use."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import HarnessError, LossDict, Needs, StepContext, Strategy
from harness.distill.flips import partner_on_left
from harness.distill.geometry import focal_baseline, warp_stereo
from harness.distill import video
from harness.distill.losses import photometric_error, silog, smoothness

SUPERVISION_KEYS = {
    "gt": frozenset({"image", "depth_gt", "depth_gt_mask"}),
    "stereo": frozenset({"image", "image_right", "K", "baseline", "meta"}),
    "video": frozenset({"image", "frames", "K"}),
}


class BaselineStrategy(Strategy):
    """No teacher, no distillation.

    ``supervision="gt"``: multi-scale SILog (BTS form, lambda 0.85) against ground truth, every
    scale upsampled to full resolution; term ``gt``.
    ``supervision="stereo"``: Monodepth-style self-supervision from the right view:
    SSIM+L1 photometric error of the right image warped by the predicted disparity (term
    ``photo``) plus edge-aware smoothness (term ``smooth``), over 4 scales.

    With stereo supervision the student is trained, as in Monodepth2, with a normalised baseline
    ``baseline_norm`` (0.1) instead of the metric one: with the metric 0.54 m baseline the
    untrained student (sigmoid 0.5 -> depth 0.2 m) asks for disparities of 1.5 image widths, every
    warp samples the border, the photometric gradient vanishes and training collapses (measured:
    abs_rel 0.98 on ``synth_small``, seeds 0 and 1). ``predict`` multiplies by
    ``eval_baseline / baseline_norm`` (5.4, Monodepth2's stereo factor), so the student is scored
    in metres on the same protocol as every other row. ``baseline_norm=None`` trains with the
    batch's metric baseline.

    ``supervision="video"``: self-supervision from the adjacent frames ``t-1, t+1`` with a
    strategy-owned pose net, exactly the photometric + geometry-consistency terms of ``ssmde``
    (SC-Depth min-reprojection over the sources, auto-mask, dynamic down-weighting;
    ``harness.distill.video``): terms ``photo`` and ``geo`` (weight 0.1), over ``scales``. The
    like-for-like control of ``ssmde``; evaluated with median scaling (monocular scale is unknown).
    ``ssim_window``, ``photo_alpha``, ``min_over``, ``automask``, ``dynamic_weight``,
    ``pose_width``, ``pose_scale`` are ``ssmde``'s options of the same names.

    ``eval_scale``: ``"none"`` (metric; the default for ``gt`` / ``stereo``) or ``"median"``
    (per-image median scaling; the default for ``video``), the latter to give the
    self-supervised video methods (scored with median scaling) a control row on their own
    protocol.
    """

    teacher_mode = "none"
    eval_scale_policy = "none"  # metric depth: GT, or the real stereo baseline, fixes the scale
    student_needs = Needs(depth=True, scales=(0, 1, 2, 3))

    default_loss_weights = {"gt": 1.0, "photo": 1.0, "smooth": 1e-3, "geo": 0.1}

    def __init__(self, supervision: str = "gt", scales=(0, 1, 2, 3), loss_weights=None,
                 baseline_norm: float | None = 0.1, eval_baseline: float = 0.54,
                 eval_scale: str | None = None, ssim_window: int = 7, photo_alpha: float = 0.85,
                 min_over: str = "sources", automask: bool = True, dynamic_weight: bool = True,
                 pose_width: int = 16, pose_scale: float = 0.01):
        super().__init__(loss_weights)
        if eval_scale is None:
            eval_scale = "median" if supervision == "video" else "none"
        self.choice("supervision", supervision, sorted(SUPERVISION_KEYS))
        self.choice("eval_scale", eval_scale, ("median", "none"))
        if baseline_norm is not None and not float(baseline_norm) > 0:
            raise HarnessError(f"method.baseline_norm must be None or positive, got {baseline_norm!r}")
        if not float(eval_baseline) > 0:
            raise HarnessError(f"method.eval_baseline must be positive, got {eval_baseline!r}")
        self.supervision = supervision
        self.eval_scale_policy = eval_scale
        # the normalised baseline only matters for stereo supervision
        self.baseline_norm = None if supervision != "stereo" or baseline_norm is None else float(baseline_norm)
        self.eval_baseline = float(eval_baseline)
        self.scales = tuple(scales)
        self.required_batch_keys = SUPERVISION_KEYS[supervision]
        self.choice("min_over", min_over, ("sources", "all", "none"))
        self.video_options = dict(alpha=float(photo_alpha), ssim_window=int(ssim_window), min_over=min_over,
                                  automask=bool(automask), dynamic_weight=bool(dynamic_weight))
        # the pose net exists for video supervision only (a strategy-owned module, dropped at test time)
        self.pose_net = video.PoseNet(int(pose_width), float(pose_scale)) if supervision == "video" else None

    def student_forward(self, student, batch):
        if self.supervision == "video":
            return video.split_frames(student, batch)
        return super().student_forward(student, batch)

    def compute_loss(self, batch, s_out, t_out, ctx: StepContext) -> LossDict:
        out = s_out["clean"]
        if self.supervision == "video":
            photo, geo, _, _ = video.photo_geo_terms(self.pose_net, batch, s_out, self.scales, **self.video_options)
            return self.weighted({"photo": photo, "geo": geo})
        size = batch["image"].shape[-2:]
        depths = [_up(out.depth[i], size) for i in self.scales]
        if self.supervision == "gt":
            gt, mask = batch["depth_gt"], batch["depth_gt_mask"]
            terms = {"gt": torch.stack([silog(d, gt, mask) for d in depths]).mean()}
        else:
            terms = self._stereo_terms(batch, out, depths)
        return self.weighted(terms)

    def _stereo_terms(self, batch, out, depths):
        img, right = batch["image"], batch["image_right"]
        fx_b = focal_baseline(batch, self.baseline_norm, self.eval_baseline, rtol=1e-3, owner="baseline")
        # a sample whose partner view lies on the left (mirrored, not swapped): flip the warp
        sign = 1.0 - 2.0 * partner_on_left(batch).to(img.dtype).view(-1, 1, 1, 1)
        photo = []
        for d in depths:
            warped = warp_stereo(right, sign * fx_b / d, "r2l")
            photo.append(photometric_error(warped, img).mean())
        smooth = []
        for i in self.scales:
            disp = out.disp[i]
            smooth.append(smoothness(disp, _up(img, disp.shape[-2:]), order=1) / (2**i))
        return {"photo": torch.stack(photo).mean(), "smooth": torch.stack(smooth).mean()}

    def predict(self, student, image):
        depth = student.predict(image)
        if self.baseline_norm is None:
            return depth
        return depth * (self.eval_baseline / self.baseline_norm)


def _up(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
