"""The ``adu`` method: ADU-Depth (attention-based distillation with uncertainty modelling) from
the frozen stereo teacher to the harness student (``../shared/METHODS.md`` section 1)."""
from pathlib import Path

from harness import hookimpl

from .modules import AttentionAdapter, UncertaintyHead, WindowAttention
from .strategy import ADUStrategy

__version__ = "0.1.0"
HERE = Path(__file__).parent
CONFIG = HERE / "configs" / "adu_stereo-to-resnet18_synth.py"
PAPER = HERE / "paper.json"

__all__ = ["ADUStrategy", "AttentionAdapter", "UncertaintyHead", "WindowAttention"]


@hookimpl
def harness_register_methods(register):
    register(
        "adu",
        ADUStrategy,
        description="ADU-Depth: attention-adapted feature + focal response distillation from a "
                    "frozen stereo teacher, guided by a learned uncertainty (Wu et al. 2023)",
        config=str(CONFIG),
        paper=str(PAPER),
    )
