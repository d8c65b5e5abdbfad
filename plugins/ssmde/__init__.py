"""The ``ssmde`` method plugin: SS-MDE, self-supervised self-distillation (docs/methods.md section 5)."""
from pathlib import Path

from harness import hookimpl

_EXPORTS = {"SSMDEStrategy": ".strategy", **{n: ".modules" for n in (
    "MaskRefiner", "PoseNet", "ema_update", "forgetting_factor", "snapshot_teacher")}}

__version__ = "0.1.0"
HERE = Path(__file__).parent
__all__ = ["MaskRefiner", "PoseNet", "SSMDEStrategy", "ema_update", "forgetting_factor", "snapshot_teacher"]


@hookimpl
def harness_register_methods(register):
    register(
        "ssmde",
        f"{__name__}.strategy:SSMDEStrategy",
        description="SS-MDE: self-supervised (video) depth + pseudo-depth with forgetting factor, "
                    "then self-distillation from a student snapshot through a multi-view mask filter",
        config=str(HERE / "configs" / "ssmde_resnet18_synth.py"),
        paper=str(HERE / "paper.json"),
        control="baseline:{profile}_video",  # the video self-supervised baseline (pose net, median scaling)
    )


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
