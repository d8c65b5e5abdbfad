# Stereo teacher with a correlation cost volume and soft-argmin, trained by the harness
# (supervised where the dataset has GT, photometric otherwise) and cached by hash(config, data).
teacher = dict(type="stereo", max_disp=64, base_width=16, cost="correlation", refine_steps=1)
teacher_train = dict(
    epochs=8,
    batch_size=8,
    seed=0,
    flip_mode="swap",  # mirror + swap left/right keeps pairs geometrically valid
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-4),
    param_scheduler=[dict(type="CosineAnnealingLR", by_epoch=True, eta_min=1e-5)],
    val_interval=4,
    # loss="silog" trains on SILog of depth instead of the default smooth-L1 + relative error on
    # disparity ("smooth_l1_rel"); left unset so that the default's cache key stays as it was
)
