"""Baseline: the student trained alone with the same supervision the methods use."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import HarnessError, LossDict, Needs, StepContext, Strategy
from harness.distill.geometry import warp_stereo
from harness.distill.losses import photometric_error, silog, smoothness

SUPERVISION_KEYS = {
    "gt": frozenset({"image", "depth_gt", "depth_gt_mask"}),
    "stereo": frozenset({"image", "image_right", "K", "baseline", "meta"}),
}


class BaselineStrategy(Strategy):
    """No teacher, no distillation.

    ``supervision="gt"``: multi-scale SILog (BTS form, lambda 0.85) against ground truth, every
    scale upsampled to full resolution; term ``gt``.
    ``supervision="stereo"``: Monodepth-style self-supervision from the right view:
    SSIM+L1 photometric error of the right image warped by the predicted disparity (term
    ``photo``) plus edge-aware smoothness (term ``smooth``), over 4 scales.
    """

    teacher_mode = "none"
    eval_scale_policy = "none"  # metric depth: GT, or the real stereo baseline, fixes the scale
    student_needs = Needs(depth=True, scales=(0, 1, 2, 3))

    default_loss_weights = {"gt": 1.0, "photo": 1.0, "smooth": 1e-3}

    def __init__(self, supervision: str = "gt", scales=(0, 1, 2, 3), loss_weights=None):
        super().__init__(loss_weights)
        if supervision not in SUPERVISION_KEYS:
            raise HarnessError(
                f"method.supervision={supervision!r} is not one of {sorted(SUPERVISION_KEYS)}"
            )
        self.supervision = supervision
        self.scales = tuple(scales)
        self.required_batch_keys = SUPERVISION_KEYS[supervision]

    def compute_loss(self, batch, s_out, t_out, ctx: StepContext) -> LossDict:
        out = s_out["clean"]
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
        fx_b = (batch["K"][:, 0, 0] * batch["baseline"]).view(-1, 1, 1, 1)
        # a mirrored (not swapped) sample has its right view on the other side: flip the warp
        meta = batch["meta"]
        mirrored_only = meta["flipped"].bool() & ~meta["swapped"].bool()
        sign = 1.0 - 2.0 * mirrored_only.to(img.dtype).view(-1, 1, 1, 1)
        photo = []
        for d in depths:
            warped = warp_stereo(right, sign * fx_b / d, "r2l")
            photo.append(photometric_error(warped, img).mean())
        smooth = []
        for i in self.scales:
            disp = out.disp[i]
            smooth.append(smoothness(disp, _up(img, disp.shape[-2:]), order=1) / (2**i))
        return {"photo": torch.stack(photo).mean(), "smooth": torch.stack(smooth).mean()}


def _up(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
