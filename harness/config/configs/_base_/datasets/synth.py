# The built-in procedural stereo driving set, generated once into the cache (KITTI raw layout).
data = dict(
    dataset="synth",
    root=None,  # None: generate into <cache_dir>/synth/<hash of generate>
    # v2 benchmark: 84 drives of 20 frames, 36 train / 24 val / 24 test, drives assigned so that the
    # splits' scene statistics match (`harness data stats`); val/test list 4 evenly spaced frames
    # per drive (96 frames from 24 drives each), train every inner frame (648)
    generate=dict(frames=1680, height=96, width=320, frames_per_drive=20, split_fractions=(3, 2, 2),
                  eval_frames_per_drive=4, seed=0),
    input_size=(96, 320),  # network input H, W (multiples of 32)
    # training GT of every GT-supervised loss (student, stereo teacher): "dense" (exact, every pixel),
    # "sparse" (a Velodyne-like ~5 % of the pixels, the KITTI regime) or "none" (self-supervised);
    # val/test always evaluate on the exact dense GT (docs/synth.md)
    supervision="dense",
    train=dict(split="train", flip_mode="mirror", gt_source="dense"),
    val=dict(split="val", gt_source="dense"),
    test=dict(split="test", gt_source="dense"),
    # evaluation protocol of this dataset (a method's eval_scale_policy overrides `scale`);
    # synth GT is exact and dense, so no crop; depth range as the KITTI Eigen protocol
    protocol=dict(crop="none", min_depth=1e-3, max_depth=80.0, gt_mask="range", scale="none", flip_pp=False),
)
