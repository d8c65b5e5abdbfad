"""The ``structure`` method: structure-centric robust monocular depth via semantic knowledge
distillation with learnable isomorphic graphs (Chen et al., arXiv 2410.06982; METHODS.md 4).

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

#: keys of the built-in stereo teacher's config that profiles (e.g. ``--quick``) may set; they
#: mean nothing to the semantic teacher and are dropped from ``teacher`` when it is selected
STEREO_ONLY_TEACHER_KEYS = ("max_disp", "cost", "min_depth", "max_depth")


@hookimpl
def harness_register_methods(register):
    register(
        "structure",
        f"{__name__}.strategy:StructureStrategy",
        description="Structure-centric self-supervised depth: perturbation/texture consistency + "
                    "semantic teacher via learnable isomorphic graphs",
        config=str(CONFIG),
        paper=str(HERE / "paper.json"),
    )


@hookimpl
def harness_register_teachers(register):
    register("semantic", f"{__name__}.modules:SemanticTeacher",
             description="Small semantic-segmentation teacher (features s8/s16/s32), trained on synth labels, no depth")


def _plain(section) -> dict:
    d = section.to_dict() if hasattr(section, "to_dict") else dict(section or {})
    d.pop("_delete_", None)
    return d


@hookimpl
def harness_configure_run(cfg):
    """Keep the semantic teacher of this method under profiles built for the stereo teacher.

    1. A profile given with ``--config`` is merged after the method config, and a profile that
       inherits the harness defaults (``synth_small``: ``_base_ = synth_benchmark``) re-applies
       the default STEREO teacher and its ``teacher_train``. For the ``structure`` method, whose
       teacher must be semantic, such a ``teacher`` is replaced by this method's, and
       ``teacher_train`` is this method's updated with every value that differs from the harness
       default (explicit profile / ``--cfg-options`` choices survive).
    2. Stereo-only keys a profile sets on ``teacher`` (``--quick``: ``max_disp``) are dropped
       from a semantic teacher.
    3. A semantic teacher has no depth to score: ``evaluate.teacher`` is set to False.
    """
    method = cfg.get("method") or {}
    teacher = cfg.get("teacher")
    if method.get("type") == "structure" and teacher is not None and teacher.get("type") == "stereo":
        from mmengine.config import Config

        import harness

        mine = Config.fromfile(str(CONFIG))
        default = Config.fromfile(str(Path(harness.__file__).parent / "config" / "configs" / "synth_benchmark.py"))
        base_tt = _plain(default.get("teacher_train"))
        train = _plain(mine.teacher_train)
        train.update({k: v for k, v in _plain(cfg.get("teacher_train")).items() if base_tt.get(k, object()) != v})
        cfg.teacher = _plain(mine.teacher)
        cfg.teacher_train = train
        teacher = cfg.teacher
    if teacher is not None and teacher.get("type") == "semantic":
        for key in STEREO_ONLY_TEACHER_KEYS:
            if key in teacher:
                teacher.pop(key)
        if cfg.get("evaluate") is not None:
            cfg.evaluate.teacher = False


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
