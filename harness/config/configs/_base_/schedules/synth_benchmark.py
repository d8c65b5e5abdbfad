# Student schedule of the synthetic benchmark profile (<= 10 min on 2 cores incl. the teacher).
schedule = dict(
    epochs=12,
    batch_size=8,
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-4),
    param_scheduler=[dict(type="CosineAnnealingLR", by_epoch=True, eta_min=1e-5)],
    clip_grad=None,
    amp=False,
    val_interval=4,
)
