# drivingstereo-c: DrivingStereo trained and tested clean, then evaluated on the four full-size
# weather sets (sunny, cloudy, foggy, rainy) as conditions and on the KITTI-C corruptions of the
# test split (2000 weather frames: consider evaluate.robustness.max_frames).
_base_ = ["drivingstereo.py"]
data = dict(dataset="drivingstereo-c")
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
        weather=["sunny", "cloudy", "foggy", "rainy"],
        dee="dee2",
        round_digits=3,
        reference="baseline",
    )
)
