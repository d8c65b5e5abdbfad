"""The ``selective`` method: selective distillation of stereo knowledge (Song & Yoon, 2022).

Registers the method (``harness_register_methods``) and resolves two config-dependent defaults
before anything is built (``harness_configure_run``):

* ``method.proxy_conf="auto"`` with ``proxy_source="precomputed"``: whether the configured teacher
  has a confidence output to precompute (``sgbm`` has ``aux["confidence"]``, ``stereo`` has not);
* ``method.baseline_norm`` set: the evaluation stereo factor ``eval_baseline / baseline_norm``
  (5.4 for 0.54 / 0.1) is written to ``data.protocol.stereo_factor``.
"""
from pathlib import Path

from harness import HarnessError, hookimpl

_EXPORTS = {"FeatureAdapter": ".modules", "MaskDecoder": ".modules", "SelectiveStrategy": ".strategy"}

__version__ = "0.1.0"
HERE = Path(__file__).parent

__all__ = ["FeatureAdapter", "MaskDecoder", "SelectiveStrategy"]

#: registered teachers known to return ``aux["confidence"]``
CONFIDENCE_TEACHERS = frozenset({"sgbm"})


@hookimpl
def harness_register_methods(register):
    register(
        "selective",
        f"{__name__}.strategy:SelectiveStrategy",
        description="Selective stereo distillation (Song & Yoon): learned proxy/self masks, "
                    "mask-conditioned decoder, proxy loss inside the mask, TS feature hints",
        config=str(HERE / "configs" / "selective_resnet18_synth.py"),
        paper=str(HERE / "paper.json"),
    )


@hookimpl
def harness_configure_run(cfg):
    method = cfg.get("method") or {}
    if method.get("type") != "selective":
        return
    if method.get("proxy_source", "online") == "precomputed" and method.get("proxy_conf", "auto") == "auto":
        teacher = (cfg.get("teacher") or {}).get("type")
        method["proxy_conf"] = teacher in CONFIDENCE_TEACHERS
    norm = method.get("baseline_norm")
    if norm is not None:
        try:
            factor = float(method.get("eval_baseline", 0.54)) / float(norm)
        except (TypeError, ValueError, ZeroDivisionError):
            raise HarnessError(f"method.baseline_norm={norm!r} must be a positive number or None") from None
        data = cfg.get("data")
        if data is not None:
            protocol = data.get("protocol")
            if protocol is None:
                data["protocol"] = protocol = {}
            protocol["stereo_factor"] = round(factor, 6)


def __getattr__(name):  # the classes are imported when first used, not when the plugin registers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
