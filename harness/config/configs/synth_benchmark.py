# The default run: synthetic benchmark profile. Method configs are merged over this file.
_base_ = [
    "_base_/datasets/synth.py",
    "_base_/models/student_resnet18.py",
    "_base_/models/teacher_stereo.py",
    "_base_/schedules/synth_benchmark.py",
    "_base_/default_runtime.py",
]
