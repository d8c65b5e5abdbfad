"""A sample plugin registering an extra per-image metric (median absolute error, metres)."""
import torch

from harness import hookimpl


def median_abs_error(pred, gt, mask):
    err = (pred - gt).abs().masked_fill(~mask, float("nan"))
    return torch.nanmedian(err.flatten(1), dim=1).values


@hookimpl
def harness_register_metrics(register):
    register("med_abs", median_abs_error, description="Median absolute error (m)", lower_is_better=True)
