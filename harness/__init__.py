"""stereodistill: a benchmark harness for depth distillation (stereo/semantic teacher -> mono student).

The public API for plugin authors is what this module exports; nothing else in ``harness`` is
promised to stay stable (the shared loss/geometry toolkit in ``harness.distill`` and the
evaluation protocol in ``harness.eval.protocol`` are public too).
"""
from harness.distill.strategy import Strategy
from harness.errors import HarnessError
from harness.host.manager import hookimpl
from harness.types import DepthOutput, FeatureSpec, LossDict, Needs, Stage, StepContext

__version__ = "0.1.0"

__all__ = [
    "DepthOutput",
    "FeatureSpec",
    "HarnessError",
    "LossDict",
    "Needs",
    "Stage",
    "StepContext",
    "Strategy",
    "__version__",
    "hookimpl",
]
