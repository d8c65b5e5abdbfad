# drivingstereo-c: DrivingStereo trained and tested clean, then evaluated on the four full-size
# weather sets (sunny, cloudy, foggy, rainy) as conditions and on the KITTI-C corruptions of the
# test split (2000 weather frames: consider evaluate.robustness.max_frames).
_base_ = ["drivingstereo.py"]
data = dict(dataset="drivingstereo-c")
# the other evaluate.robustness keys keep harness.eval.robustness.DEFAULTS
evaluate = dict(
    robustness=dict(
        enabled=True,
        weather=["sunny", "cloudy", "foggy", "rainy"],
    )
)
