"""The ``recursive`` method: Recursive Stereo Distillation (RSD; Ye et al., IEEE TIP 2021).

Registers the method, its student (``rsd_mono``, the RSD Mono-Net) and its online teacher
(``rsd_stereo``, the recursive Stereo-Net conditioned on the Mono-Net's prediction).
"""
from __future__ import annotations

from pathlib import Path

from harness import hookimpl

_EXPORTS = {"RSDMonoNet": ".models", "RSDStereoNet": ".models", "RecursiveStrategy": ".strategy"}

__version__ = "0.1.0"
HERE = Path(__file__).parent
METHOD = "recursive"


@hookimpl
def harness_register_methods(register):
    register(
        METHOD,
        f"{__name__}.strategy:RecursiveStrategy",
        description="Recursive Stereo Distillation (RSD): online recursive Stereo-Net teaches an ASPP Mono-Net",
        config=str(HERE / "configs" / "recursive_rsd_synth.py"),
        paper=str(HERE / "paper.json"),
        control="self:{profile}_control",  # rsd_mono alone, mono terms only (configs/)
    )


@hookimpl
def harness_register_students(register):
    register("rsd_mono", f"{__name__}.models:RSDMonoNet",
             description="RSD Mono-Net: resASPPNet, two-channel (left/right) normalised disparities at 4 scales")


@hookimpl
def harness_register_teachers(register):
    register("rsd_stereo", f"{__name__}.models:RSDStereoNet",
             description="RSD Stereo-Net: online, recursive, conditioned on the student's disparity, adaptive refinement")


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
