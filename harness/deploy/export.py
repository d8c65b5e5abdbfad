"""``harness export``: the student alone (no strategy modules) as a ``torch.export`` program
(``--format export``, ``.pt2``: the non-deprecated path, loaded with ``torch.export.load``),
TorchScript (``torch.jit.trace``; deprecated in current torch, kept for existing deployments)
or ONNX.

The exported graph is :class:`DepthOnly`: ``B x 3 x H x W`` image in ``[0, 1]`` at the
training resolution -> ``B x 1 x H x W`` metric depth (the student's full-resolution output).
After writing, the file is loaded back and run on a sample; its output must equal the eager
student's within ``rtol``/``atol`` or the export fails (exit 1) and the file is not kept.
The report gives the parameter count, the largest absolute and relative differences and the
median CPU latency of both models over ``runs`` runs.

ONNX needs the optional ``onnx`` package (``pip install stereodistill[onnx]``); it is checked
with ``onnxruntime`` when installed, else with ``onnx``'s own reference evaluator.
"""
from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from harness.data import formats
from harness.errors import HarnessError, RunFailure

FORMATS = ("torchscript", "onnx", "export")
RTOL = 1e-4
ATOL = 1e-4  # metres


class ExportError(HarnessError):
    """The export itself failed (missing optional package, outputs differ): exit 1."""

    exit_code = 1


class DepthOnly(nn.Module):
    """``image -> depth[0]``: the student's full-resolution depth, nothing else."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, image: Tensor) -> Tensor:
        return self.student(image).depth[0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def median_latency_ms(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls after one warm-up call (ms)."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def _tmp_beside(out: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    formats.user_mode(fd)
    os.close(fd)
    return Path(tmp)


def _torchscript(model: nn.Module, sample: Tensor, tmp: Path) -> Callable[[Tensor], np.ndarray]:
    with torch.no_grad():
        traced = torch.jit.trace(model, sample, check_trace=False)
    buf = io.BytesIO()  # written by Python: a full disk is an OSError, not an abort inside libtorch
    torch.jit.save(traced, buf)
    tmp.write_bytes(buf.getvalue())
    loaded = torch.jit.load(str(tmp), map_location="cpu").eval()

    def run(x: Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return run


def _torch_export(model: nn.Module, sample: Tensor, tmp: Path) -> Callable[[Tensor], np.ndarray]:
    """``torch.export`` (non-strict: the student's Python shape checks are traced through), saved
    as a ``.pt2`` archive and loaded back as a module."""
    with torch.no_grad():
        program = torch.export.export(model, (sample,), strict=False)
    with open(tmp, "wb") as f:
        torch.export.save(program, f)
    with open(tmp, "rb") as f:
        loaded = torch.export.load(f).module()

    def run(x: Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return run


def _onnx(model: nn.Module, sample: Tensor, tmp: Path) -> Callable[[Tensor], np.ndarray]:
    try:
        import onnx
    except ImportError:
        raise ExportError("option --format onnx: the 'onnx' package is not installed "
                          "(pip install 'stereodistill[onnx]'); --format torchscript needs nothing") from None
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (sample,), buf, input_names=["image"], output_names=["depth"],
                          dynamic_axes={"image": {0: "batch"}, "depth": {0: "batch"}}, dynamo=False)
    tmp.write_bytes(buf.getvalue())
    onnx.checker.check_model(str(tmp))
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"image": x.numpy()})[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(str(tmp))
        return lambda x: evaluator.run(None, {"image": x.numpy()})[0]


def export_student(student: nn.Module, fmt: str, out: str | os.PathLike, input_size: tuple[int, int], *,
                   runs: int = 10, seed: int = 0) -> dict[str, Any]:
    """Export, check against the eager student on a random sample, time both; returns a report.

    The file appears at ``out`` only once the check passed (written beside it, then renamed)."""
    if fmt not in FORMATS:
        raise HarnessError(f"option --format {fmt}: must be one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise HarnessError(f"option --out {out}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise HarnessError(f"option --out {out}: folder {out.parent} does not exist")
    model = DepthOnly(student).eval()
    generator = torch.Generator().manual_seed(seed)
    sample = torch.rand(1, 3, *input_size, generator=generator)
    try:
        tmp = _tmp_beside(out)
    except OSError as exc:
        raise HarnessError(f"option --out {out}: cannot write there ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings():  # tracer notes on the student's input checks, constant folding
            warnings.simplefilter("ignore")
            run = {"torchscript": _torchscript, "onnx": _onnx, "export": _torch_export}[fmt](model, sample, tmp)
        with torch.no_grad():
            eager = model(sample).numpy()
        exported = run(sample)
        if exported.shape != eager.shape:
            raise ExportError(f"export check: the exported model returns shape {exported.shape}, "
                              f"the student {eager.shape}")
        diff = np.abs(exported - eager)
        max_abs = float(diff.max())
        max_rel = float((diff / np.maximum(np.abs(eager), 1e-6)).max())
        if not np.allclose(exported, eager, rtol=RTOL, atol=ATOL):
            raise ExportError(f"export check: exported output differs from the student's by up to "
                              f"{max_abs:.3g} m (tolerance rtol={RTOL}, atol={ATOL}); file not written")
        with torch.no_grad():
            eager_ms = median_latency_ms(lambda: model(sample), runs)
        exported_ms = median_latency_ms(lambda: run(sample), runs)
        os.replace(tmp, out)
    except HarnessError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:  # a full disk: nothing is left at --out or beside it
        tmp.unlink(missing_ok=True)
        raise RunFailure(f"option --out {out}: cannot write the export ({exc.strerror or exc})") from exc
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"export to {fmt} failed: {line[:200]}") from exc
    return {
        "format": fmt,
        "path": str(out),
        "bytes": out.stat().st_size,
        "parameters": count_parameters(student),
        "input_size": list(input_size),
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "eager_ms": eager_ms,
        "exported_ms": exported_ms,
        "runs": runs,
    }
