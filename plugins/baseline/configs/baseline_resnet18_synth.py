# baseline: the harness student alone. Supervision matches the methods it is compared with:
# "gt" (SILog on ground truth, the synth default) or "stereo" (photometric, right view).
method = dict(
    type="baseline",
    supervision="gt",
    loss_weights=dict(gt=1.0, photo=1.0, smooth=1e-3),
)
