# kitti-c: KITTI (Eigen protocol, 640x192) trained and tested clean, then evaluated on KITTI-C
# (RoboDepth; docs/robustness.md): the 18 corruptions x 5 severities applied on the fly to the
# 640x192 network input, or read from RoboDepth's released copy with
# `--cfg-options evaluate.robustness.corrupted_root=/path/to/kitti_c` (its clean folder is then
# used for the clean condition).
_base_ = ["kitti.py"]
data = dict(dataset="kitti-c")
# the other evaluate.robustness keys keep harness.eval.robustness.DEFAULTS
evaluate = dict(
    robustness=dict(
        enabled=True,
    )
)
