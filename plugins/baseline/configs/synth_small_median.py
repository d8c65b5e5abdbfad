# Profile `synth_small_median` (`--config` this file): the GT-supervised baseline of `synth_small`
# scored with per-image median scaling, i.e. on the protocol of the video self-supervised methods
# (`structure`, `ssmde`), so the leaderboard can put it in their group. Only for `--method baseline`.
schedule = dict(epochs=6, val_interval=3)  # = harness/config/configs/synth_small.py
method = dict(eval_scale="median")
