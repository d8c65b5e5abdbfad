"""The ``selective`` method: selective distillation of stereo knowledge (Song & Yoon, 2022).

Registers the method. What depends on the run is the strategy's own: with
``proxy_source="precomputed"``, ``proxy_conf="auto"`` becomes whether the configured teacher has
a confidence output (``sgbm`` has ``aux["confidence"]``, ``stereo`` has not; ``on_run_start``),
and with ``baseline_norm`` set the student is scored with the stereo factor
``eval_baseline / baseline_norm`` (5.4 for 0.54 / 0.1; ``eval_stereo_factor``).
"""
from pathlib import Path

from harness import hookimpl

_EXPORTS = {"FeatureAdapter": ".modules", "MaskDecoder": ".modules", "SelectiveStrategy": ".strategy",
            "CONFIDENCE_TEACHERS": ".strategy"}

__version__ = "0.1.0"
HERE = Path(__file__).parent

__all__ = ["CONFIDENCE_TEACHERS", "FeatureAdapter", "MaskDecoder", "SelectiveStrategy"]


@hookimpl
def harness_register_methods(register):
    register(
        "selective",
        f"{__name__}.strategy:SelectiveStrategy",
        description="Selective stereo distillation (Song & Yoon): learned proxy/self masks, "
                    "mask-conditioned decoder, proxy loss inside the mask, TS feature hints",
        config=str(HERE / "configs" / "selective_resnet18_synth.py"),
        paper=str(HERE / "paper.json"),
        control="baseline:{profile}_stereo",  # stereo-supervised baseline: same start and units
    )


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
