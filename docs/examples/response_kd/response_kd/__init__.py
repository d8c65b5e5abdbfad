"""Example stereodistill plugin: the hooks that register a method, a dataset and a metric.

Each ``harness_register_*`` hook receives a ``register`` callback and calls it once per thing
it contributes. Classes and functions are given as ``"module:attribute"`` references, imported
only when a run uses them, so ``harness list`` does not import torch for this plugin.
"""
from pathlib import Path

from harness import hookimpl

__version__ = "0.1.0"
CONFIGS = Path(__file__).parent / "configs"


@hookimpl
def harness_register_methods(register):
    register("response_kd", f"{__name__}.method:ResponseKD",
             description="Response distillation: SILog to GT + |log D_S - log D_T| to a frozen stereo teacher",
             config=str(CONFIGS / "response_kd.py"))


def prepare(data_cfg: dict, cache_dir, progress=None) -> Path:
    """Makes the data available when no ``--data-root`` is given. Nothing to generate here (the
    scenes are rendered on the fly): the root is a folder in the cache."""
    root = Path(cache_dir) / "planes"
    root.mkdir(parents=True, exist_ok=True)
    return root


@hookimpl
def harness_register_datasets(register):
    register("planes", f"{__name__}.dataset:PlanesDataset",
             description="Two-plane stereo scenes (ground, wall, a box) rendered exactly in both views",
             prepare=prepare, config=str(CONFIGS / "planes.py"))


@hookimpl
def harness_register_metrics(register):
    register("abs_log", f"{__name__}.metric:abs_log", description="mean |log pred - log gt| over valid pixels", lower_is_better=True)
