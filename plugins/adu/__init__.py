"""The ``adu`` method: ADU-Depth (attention-based distillation with uncertainty modelling) from
the frozen stereo teacher to the harness student (``docs/methods.md`` section 1)."""
from pathlib import Path

from harness import hookimpl

_EXPORTS = {"ADUStrategy": ".strategy", "AttentionAdapter": ".modules", "UncertaintyHead": ".modules",
            "WindowAttention": ".modules"}

__version__ = "0.1.0"
HERE = Path(__file__).parent
CONFIG = HERE / "configs" / "adu_stereo-to-resnet18_synth.py"
PAPER = HERE / "paper.json"

__all__ = ["ADUStrategy", "AttentionAdapter", "UncertaintyHead", "WindowAttention"]


@hookimpl
def harness_register_methods(register):
    register(
        "adu",
        f"{__name__}.strategy:ADUStrategy",
        description="ADU-Depth: attention-adapted feature + focal response distillation from a "
                    "frozen stereo teacher, guided by a learned uncertainty (Wu et al. 2023)",
        config=str(CONFIG),
        paper=str(PAPER),
        control="baseline:{profile}",  # the GT-supervised baseline of the same profile
    )


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
