# synth_small under the sparse-GT regime (the KITTI regime): every GT-supervised loss (the student's,
# the stereo teacher's training) sees only a Velodyne-like projection, ~5 % of the pixels; val and
# test are still scored on the exact dense GT. Use with `--config synth_small_sparse`.
_base_ = ["synth_small.py"]
data = dict(supervision="sparse")
