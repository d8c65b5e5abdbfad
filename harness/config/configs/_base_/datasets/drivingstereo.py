# DrivingStereo (docs/datasets.md). Its `data` replaces the synth one under `--dataset drivingstereo`;
# needs --data-root. Train on the half-size train set minus one held-out sequence (`val`), report
# on the four full-size weather subsets (2000 frames; `data.test.split=foggy` etc. for one).
data = dict(
    dataset="drivingstereo",
    root=None,
    input_size=(192, 416),  # ~ the 881x400 aspect ratio
    train=dict(split="train", flip_mode="mirror", gt_source="depth", drop_edges=True, val_sequences=1),
    val=dict(split="val", gt_source="depth", drop_edges=False, val_sequences=1),
    test=dict(split="weather", gt_source="depth"),
    # weather protocol of the robust-depth literature: full resolution GT, gt > 0, no crop,
    # per-image median scaling, prediction clamped to [1e-3, 80] (gt_mask="range" caps GT at 80 m)
    protocol=dict(crop="none", min_depth=1e-3, max_depth=80.0, gt_mask="positive", scale="median", flip_pp=False),
    split_protocols=dict(),
)
