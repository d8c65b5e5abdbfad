# synth_small without any training GT (the self-supervised regime): the training split provides no
# depth_gt, so GT-supervised methods are refused before training and the stereo teacher trains
# photometrically; val and test are still scored on the exact dense GT. Use with
# `--config synth_small_selfsup` and a self-supervised method (e.g. baseline with
# `--cfg-options method.supervision=stereo`).
_base_ = ["synth_small.py"]
data = dict(supervision="none")
