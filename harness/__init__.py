"""stereodistill: a benchmark harness for depth distillation (stereo/semantic teacher -> mono student).

The public API for plugin authors is what this module exports plus the packages
``harness.distill`` (losses, geometry, flips), ``harness.eval`` (the protocol, metrics and
split-evaluation loop), ``harness.data``, ``harness.models``, ``harness.types`` and ``harness.testing``
(docs/plugins.md);
nothing else in ``harness`` is promised to stay stable.
"""
from harness.errors import HarnessError
from harness.host.manager import hookimpl

__version__ = "0.1.0"

#: exported names that need torch, imported on first access (``from harness import Strategy``
#: works as before; ``import harness`` alone, e.g. for ``harness --help``, stays cheap)
_LAZY = {"Strategy": "harness.distill.strategy", **{name: "harness.types" for name in (
    "DepthOutput", "FeatureSpec", "LossDict", "Needs", "RunInfo", "Stage", "StepContext")}}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness' has no attribute {name!r}")

__all__ = [
    "DepthOutput",
    "FeatureSpec",
    "HarnessError",
    "LossDict",
    "Needs",
    "RunInfo",
    "Stage",
    "StepContext",
    "Strategy",
    "__version__",
    "hookimpl",
]
