"""Checkpoint loading for the harness's own files on torch >= 2.6.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch 2.6+ then defaults to
``weights_only=True`` and refuses mmengine's checkpoints (they pickle optimiser state and
message-hub objects), so ``--resume`` fails with an ``UnpicklingError``. We replace mmengine's
local-file loader: files under a directory the harness itself writes (its work dirs and its
cache, see :func:`trust_directory`) load with ``weights_only=False``; any other file keeps
torch's safe default.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from mmengine.runner.checkpoint import CheckpointLoader

_TRUSTED: set[Path] = set()


def trust_directory(path: str | os.PathLike) -> None:
    """Mark a directory whose checkpoints the harness wrote itself."""
    _TRUSTED.add(Path(path).resolve())


def is_trusted(filename: str | os.PathLike) -> bool:
    p = Path(filename).resolve()
    return any(p == root or root in p.parents for root in _TRUSTED)


def load_local(filename: str, map_location=None):
    """Load a local checkpoint; trusted harness files may contain arbitrary pickles."""
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(filename, map_location=map_location, weights_only=not is_trusted(filename))


def install() -> None:
    """Register :func:`load_local` as mmengine's loader for plain paths (idempotent)."""
    CheckpointLoader.register_scheme(prefixes="", loader=load_local, force=True)
