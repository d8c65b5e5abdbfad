# SS-MDE (docs/methods.md 5) on the synthetic benchmark with the harness ResNet-18 student.
# Supervision: self-supervised from the neighbouring frames t-1/t+1 (pose net, no GT) plus
# pseudo-depth from the configured teacher (precomputed by the harness, made relative), then
# self-distillation from a student snapshot. Evaluated with per-image median scaling.
method = dict(
    type="ssmde",
    loss_weights=dict(photo=1.0, geo=0.1, pseudo=1.0, kd=1.0),
    scales=(0, 1, 2, 3),  # photo/geo on all 4 decoder scales, upsampled to full resolution
    ssim_window=7,
    min_over="sources",  # "all" = SC-Depth's code (min over all 4 warps)
    pseudo=True,
    pseudo_weights=dict(normal=0.1, normal_rank=0.1, mask_rank=0.1),
    forgetting="exponential",  # phi(e) = phi0 * forgetting_decay**e; or "linear"
    phi0=1.0,
    forgetting_decay=0.9,
    rank_space="log",  # mask ranking on median-normalised log depth (scale-invariant) | "depth" (SC-DepthV3)
    # stage A (self-supervised + pseudo) -> stage B (+ kd; continues A's optimiser state and LR
    # schedule): 2/3 of the epochs to A (synth_small: 4 + 2) so the pose net has converged
    # before the snapshot teacher is taken
    stage_fractions=(0.67, 0.33),
    teacher_update="snapshot",  # or "ema" (ema_momentum=0.999)
    ema_momentum=0.999,
    kd_align="median",
    tau_c=0.05,
    refiner=False,
)
