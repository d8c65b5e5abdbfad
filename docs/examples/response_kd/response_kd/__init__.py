"""Example stereodistill plugin: the hooks that register a method, a dataset and a metric.

Each ``harness_register_*`` hook receives a ``register`` callback and calls it once per thing
it contributes. Classes may be given as ``"module:Class"`` references, imported only when a run
builds them, so ``harness list`` stays fast.
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


@hookimpl
def harness_register_datasets(register):
    from .dataset import prepare

    register("planes", f"{__name__}.dataset:PlanesDataset",
             description="Two-plane stereo scenes (ground, wall, a box) rendered exactly in both views",
             prepare=prepare, config=str(CONFIGS / "planes.py"))


@hookimpl
def harness_register_metrics(register):
    from .metric import abs_log

    register("abs_log", abs_log, description="mean |log pred - log gt| over valid pixels", lower_is_better=True)
