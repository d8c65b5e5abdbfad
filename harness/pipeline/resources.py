"""Peak memory of a run, recorded under ``resources`` in its result file."""
from __future__ import annotations

import resource
import sys

import torch


def _rss_mb(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def reset_peaks(device: str) -> None:
    """Start counting the GPU peak from here (RSS peaks cannot be reset: they cover the process)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> dict[str, float | None]:
    """``peak_rss_mb``: this process; ``peak_rss_children_mb``: the largest finished child (data
    loader workers); ``cuda_max_allocated_mb``: peak tensor memory on the GPU (None on CPU)."""
    cuda = None
    if device.startswith("cuda") and torch.cuda.is_available():
        cuda = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return {
        "peak_rss_mb": _rss_mb(resource.RUSAGE_SELF),
        "peak_rss_children_mb": _rss_mb(resource.RUSAGE_CHILDREN),
        "cuda_max_allocated_mb": cuda,
    }
