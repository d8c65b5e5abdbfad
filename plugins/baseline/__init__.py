"""The ``baseline`` method: the harness student trained alone, no distillation (control row)."""
from pathlib import Path

from harness import hookimpl

_EXPORTS = {"BaselineStrategy": ".strategy"}

__version__ = "0.1.0"
HERE = Path(__file__).parent


@hookimpl
def harness_register_methods(register):
    register(
        "baseline",
        f"{__name__}.strategy:BaselineStrategy",
        description="Student alone, same data/schedule/supervision, no distillation (control row)",
        config=str(HERE / "configs" / "baseline_resnet18_synth.py"),
    )


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
