# Profile `synth_small_stereo_median` (`--config` this file): the stereo-supervised baseline of
# `synth_small_stereo` scored with per-image median scaling: the like-for-like control of the
# median-scaled methods that learn from the stereo pair (`structure` trains on the right view
# as well as the video frames). Only for `--method baseline`.
_base_ = ["./synth_small_stereo.py"]
method = dict(eval_scale="median")
