# Profile `synth_small_video` (`--config` this file): the `synth_small` schedule with the baseline
# trained from the adjacent frames alone (pose net, SC-Depth photometric + 0.1 geometry
# consistency, min over the sources, auto-mask, dynamic down-weighting; the shared
# harness.distill.video toolkit) and scored with per-image median scaling: the like-for-like
# control of `ssmde` (its stage A without the pseudo-depth and the self-distillation, over the
# same 6 epochs, same student and options). Only for `--method baseline`.
schedule = dict(epochs=6, val_interval=3)  # = harness/config/configs/synth_small.py
method = dict(
    supervision="video",
    eval_scale="median",
    scales=(0, 1, 2, 3),  # = ssmde
    ssim_window=7,
    photo_alpha=0.85,
    min_over="sources",
    automask=True,
    dynamic_weight=True,
    pose_width=16,
    pose_scale=0.01,
    loss_weights=dict(photo=1.0, geo=0.1),
)
