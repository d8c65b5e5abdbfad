"""The ``structure`` method: structure-centric robust monocular depth via semantic knowledge
distillation with learnable isomorphic graphs (Chen et al., arXiv 2410.06982; docs/methods.md 4).

Registers the method ``structure`` and the teacher ``semantic`` (a small segmentation network
trained once by the harness on the dataset's ``semantic`` labels and cached, or loaded from a
local checkpoint).
"""
from pathlib import Path

from harness import hookimpl

_EXPORTS = {"SemanticTeacher": ".modules", "StructureStrategy": ".strategy"}

__version__ = "0.1.0"
HERE = Path(__file__).parent
CONFIG = HERE / "configs" / "structure_resnet18_synth.py"


@hookimpl
def harness_register_methods(register):
    register(
        "structure",
        f"{__name__}.strategy:StructureStrategy",
        description="Structure-centric self-supervised depth: perturbation/texture consistency + "
                    "semantic teacher via learnable isomorphic graphs",
        config=str(CONFIG),
        paper=str(HERE / "paper.json"),
        control="self:{profile}_control",  # dsc = ltd = graph = 0, same sources and scales (configs/)
    )


@hookimpl
def harness_register_teachers(register):
    register("semantic", f"{__name__}.modules:SemanticTeacher",
             description="Small semantic-segmentation teacher (features s8/s16/s32), trained on synth labels, no depth")


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
