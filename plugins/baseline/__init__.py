"""The ``baseline`` method: the harness student trained alone, no distillation (control row)."""
from pathlib import Path

from harness import hookimpl

from .strategy import BaselineStrategy

__version__ = "0.1.0"
HERE = Path(__file__).parent


@hookimpl
def harness_register_methods(register):
    register(
        "baseline",
        BaselineStrategy,
        description="Student alone, same data/schedule/supervision, no distillation (control row)",
        config=str(HERE / "configs" / "baseline_resnet18_synth.py"),
    )
