"""A sample third-party-style method plugin used by the tests (registers ``sample``)."""
from harness import LossDict, Strategy, hookimpl


class SampleStrategy(Strategy):
    """L1 to ground truth at full resolution (term ``l1``)."""

    required_batch_keys = frozenset({"image", "depth_gt", "depth_gt_mask"})
    default_loss_weights = {"l1": 1.0}

    def compute_loss(self, batch, s_out, t_out, ctx) -> LossDict:
        d, gt, m = s_out["clean"].depth[0], batch["depth_gt"], batch["depth_gt_mask"]
        return self.weighted({"l1": (d - gt).abs()[m].mean()})


@hookimpl
def harness_register_methods(register):
    register("sample", SampleStrategy, description="Sample method for tests")
