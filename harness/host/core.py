"""The harness's own components, registered as an ordinary plugin (entry point ``core``), each as a
``"module:Class"`` reference imported when it is first built."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from filelock import FileLock

from harness.host.manager import hookimpl

__version__ = "0.1.0"


_DATASET_CONFIGS = Path(__file__).resolve().parent.parent / "config" / "configs" / "_base_" / "datasets"


@hookimpl
def harness_register_datasets(register):
    register(
        "synth",
        "harness.data.synth_dataset:SynthDataset",
        description="Built-in procedural stereo driving scenes (KITTI raw layout, dense GT, generated offline)",
        prepare=prepare_synth,
    )
    register(
        "kitti",
        "harness.data.kitti:KittiDataset",
        description="KITTI raw: Eigen / Eigen-benchmark / Eigen-Zhou splits, Velodyne or improved GT (needs --data-root)",
        config=str(_DATASET_CONFIGS / "kitti.py"),
    )
    register(
        "drivingstereo",
        "harness.data.drivingstereo:DrivingStereoDataset",
        description="DrivingStereo: half-size train/test and the sunny/cloudy/foggy/rainy sets (needs --data-root)",
        config=str(_DATASET_CONFIGS / "drivingstereo.py"),
    )
    # corrupted views: clean for training, --eval-robustness implied
    views = "harness.data.corrupted_views"
    register("synth-c", f"{views}:SynthCDataset", prepare=prepare_synth,
             config=str(_DATASET_CONFIGS / "synth-c.py"),
             description="synth + KITTI-C corruptions (18 x 5, on the fly); evaluates all conditions")
    register("kitti-c", f"{views}:KittiCDataset", config=str(_DATASET_CONFIGS / "kitti-c.py"),
             description="KITTI + KITTI-C corruptions on the fly (or RoboDepth's stored copy); needs --data-root")
    register("drivingstereo-c", f"{views}:DrivingStereoCDataset",
             config=str(_DATASET_CONFIGS / "drivingstereo-c.py"),
             description="DrivingStereo + KITTI-C corruptions, the four weather sets as conditions; needs --data-root")


@hookimpl
def harness_register_students(register):
    register("resnet", "harness.models.student:MonoStudent",
             description="Monodepth2-style ResNet encoder-decoder, multi-scale depth")


@hookimpl
def harness_register_teachers(register):
    register("stereo", "harness.models.stereo_teacher:StereoTeacher",
             description="Stereo network: correlation/concat cost volume + soft-argmin, trained by the harness")
    register("sgbm", "harness.models.sgbm:SGBMTeacher",
             description="OpenCV StereoSGBM with left-right check; no training")


@hookimpl
def harness_register_metrics(register):
    from harness.eval.metric_names import LOWER_IS_BETTER, METRIC_DESCRIPTIONS, METRIC_NAMES

    for name in METRIC_NAMES:
        register(name, None, description=METRIC_DESCRIPTIONS[name], lower_is_better=name in LOWER_IS_BETTER, builtin=True)


def prepare_synth(data_cfg: dict, cache_dir: Path, progress=None) -> Path:
    """Generate the synthetic set once into ``<cache>/synth/<hash>`` and return its root.

    Generation writes into a temporary folder that is renamed into place, under a file lock,
    so concurrent runs never see half a data set.
    """
    from harness.data import synth

    gen = dict(data_cfg.get("generate") or {})
    key = hashlib.sha256(json.dumps({"v": synth.VERSION, **gen}, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(cache_dir) / "synth"
    base.mkdir(parents=True, exist_ok=True)
    root = base / key
    with FileLock(str(base / f"{key}.lock")):
        if (root / "synth.json").is_file():
            return root
        for stale in base.glob(f"{key}.partial-*"):  # left by a run that died (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = base / f"{key}.partial-{os.getpid()}"
        try:
            synth.generate(tmp, progress=progress, **gen)
            os.replace(tmp, root)
        except BaseException:  # a full cache disk, Ctrl-C: no half-written set stays behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root
