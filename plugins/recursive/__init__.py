"""The ``recursive`` method: Recursive Stereo Distillation (RSD; Ye et al., IEEE TIP 2021).

Registers the method, its student (``rsd_mono``, the RSD Mono-Net) and its online teacher
(``rsd_stereo``, the recursive Stereo-Net conditioned on the Mono-Net's prediction).
"""
from __future__ import annotations

import inspect
import warnings
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
    )


@hookimpl
def harness_register_students(register):
    register("rsd_mono", f"{__name__}.models:RSDMonoNet",
             description="RSD Mono-Net: resASPPNet, two-channel (left/right) normalised disparities at 4 scales")


@hookimpl
def harness_register_teachers(register):
    register("rsd_stereo", f"{__name__}.models:RSDStereoNet",
             description="RSD Stereo-Net: online, recursive, conditioned on the student's disparity, adaptive refinement")


def _accepted(cls) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p != "self"}


@hookimpl
def harness_configure_run(cfg):
    """For ``--method recursive`` only: make the run use the RSD networks and stereo-valid flips.

    The RSD Mono-Net / Stereo-Net are part of the method, so a config layer that re-applies the
    harness defaults (e.g. a ``--config`` profile whose ``_base_`` is ``synth_benchmark.py``)
    must not swap them back: ``student.type`` / ``teacher.type`` are set to ``rsd_mono`` /
    ``rsd_stereo``, keys those classes do not take (the default models' ``num_layers``,
    ``max_disp``, ...) are dropped, and ``data.train.flip_mode="mirror"`` becomes ``"swap"``
    (a mirrored, not swapped, pair has its right view on the left). Each change is one warning.
    """
    method = cfg.get("method") or {}
    if method.get("type") != METHOD:
        return
    from .models import RSDMonoNet, RSDStereoNet

    notes = []
    for key, cls, name in (("student", RSDMonoNet, "rsd_mono"), ("teacher", RSDStereoNet, "rsd_stereo")):
        section = cfg.get(key)
        if section is None:
            cfg[key] = section = {"type": name}
        if section.get("type") != name:
            notes.append(f"{key}.type={section.get('type')!r} -> {name!r}")
            section["type"] = name
        extra = sorted(set(section) - _accepted(cls) - {"type"})
        for k in extra:
            section.pop(k)
        if extra:
            notes.append(f"dropped {key}.{{{', '.join(extra)}}}")
    data = cfg.get("data") or {}
    train = data.get("train")
    if train is not None and train.get("flip_mode") == "mirror":
        train["flip_mode"] = "swap"
        notes.append("data.train.flip_mode='mirror' -> 'swap'")
    if notes:
        warnings.warn("method 'recursive' (RSD networks, stereo-valid flips): " + "; ".join(notes), stacklevel=2)


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
