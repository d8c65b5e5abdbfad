"""Test plugins for the reliability suite (loaded through ``$STEREODISTILL_PLUGINS`` or in-process).

* ``noisy``: L1 to GT on a dropout-masked prediction, so every step draws from torch's global
  generator (like dropout in a real network): resume equality then needs per-epoch reseeding.
* ``nan_at``: ``noisy`` whose term ``photo`` becomes NaN at a configured (epoch, step).
"""
import torch.nn.functional as F

from harness import LossDict, Strategy, hookimpl


class NoisyStrategy(Strategy):
    """L1 to ground truth with a random dropout mask (term ``l1``)."""

    required_batch_keys = frozenset({"image", "depth_gt", "depth_gt_mask"})
    default_loss_weights = {"l1": 1.0}

    def compute_loss(self, batch, s_out, t_out, ctx) -> LossDict:
        return self.weighted({"l1": self.noisy_l1(batch, s_out)})

    @staticmethod
    def noisy_l1(batch, s_out):
        d, gt, m = s_out["clean"].depth[0], batch["depth_gt"], batch["depth_gt_mask"]
        return (F.dropout(d, p=0.3, training=True) - gt).abs()[m].mean()


class NanAtStrategy(NoisyStrategy):
    """``noisy`` plus a term ``photo`` that is NaN at (``nan_epoch``, ``nan_step``), both 1-based."""

    default_loss_weights = {"l1": 1.0, "photo": 1.0}

    def __init__(self, nan_epoch: int = 2, nan_step: int = 2, loss_weights=None):
        super().__init__(loss_weights)
        self.nan_epoch, self.nan_step = nan_epoch, nan_step
        self.steps_in_epoch = 0
        self.epoch_seen = -1

    def compute_loss(self, batch, s_out, t_out, ctx) -> LossDict:
        if ctx.epoch != self.epoch_seen:
            self.epoch_seen, self.steps_in_epoch = ctx.epoch, 0
        self.steps_in_epoch += 1
        base = self.noisy_l1(batch, s_out)
        hit = (ctx.epoch + 1, self.steps_in_epoch) == (self.nan_epoch, self.nan_step)
        photo = base * 0 + (float("nan") if hit else 0.0)
        return self.weighted({"l1": base, "photo": photo})


@hookimpl
def harness_register_methods(register):
    register("noisy", NoisyStrategy, description="L1 to GT through a dropout mask (reliability tests)")
    register("nan_at", NanAtStrategy, description="noisy with a NaN term at a chosen step (reliability tests)")
