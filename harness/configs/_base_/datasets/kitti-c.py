# kitti-c: KITTI (Eigen protocol, 640x192) trained and tested clean, then evaluated on KITTI-C
# (RoboDepth, DATASETS.md 4.1): the 18 corruptions x 5 severities applied on the fly to the
# 640x192 network input, or read from RoboDepth's released copy with
# `--cfg-options evaluate.robustness.corrupted_root=/path/to/kitti_c` (its clean folder is then
# used for the clean condition).
_base_ = ["kitti.py"]
data = dict(dataset="kitti-c")
evaluate = dict(
    robustness=dict(
        enabled=True,
        corruptions="all",
        severities=[1, 2, 3, 4, 5],
        seed=0,
        max_frames=None,
        corrupt_size=None,
        per_severity_draws=False,
        corrupted_root=None,
        weather="auto",
        dee="dee2",
        round_digits=3,
        reference="baseline",
    )
)
