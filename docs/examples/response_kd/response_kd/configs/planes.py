# `--dataset planes`: this `data` section replaces the default (synth) one.
data = dict(
    dataset="planes",
    root=None,  # None: prepare() makes a folder in the cache (the scenes are rendered on the fly)
    input_size=(64, 192),
    train=dict(split="train", frames=64, flip_mode="mirror", flip_prob=0.5),
    val=dict(split="val", frames=16),
    test=dict(split="test", frames=16),
    # exact dense GT: no crop, metric depth
    protocol=dict(crop="none", min_depth=1e-3, max_depth=80.0, gt_mask="range", scale="none", flip_pp=False),
)
