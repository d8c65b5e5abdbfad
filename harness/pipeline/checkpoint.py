"""Checkpoint loading for the harness's own files on torch >= 2.6.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch 2.6+ then defaults to
``weights_only=True`` and refuses mmengine's checkpoints (they pickle optimiser state and
message-hub objects), so ``--resume`` fails with an ``UnpicklingError``. We replace mmengine's
local-file loader: files under a directory the harness itself writes (its work dirs and its
cache, see :func:`trust_directory`) load with ``weights_only=False``; any other file keeps
torch's safe default.

Crash safety: :func:`save_atomically` writes a checkpoint to a temp file in the same directory
and renames it into place, so a checkpoint path either holds a complete file or does not exist;
:func:`resumable_checkpoint` picks the newest complete checkpoint of a work dir for ``--resume``
and skips (with a warning) a truncated or unreadable one left by an older harness or a failing disk.
"""
from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import torch
from mmengine.hooks import Hook
from mmengine.runner.checkpoint import CheckpointLoader

from harness.errors import HarnessWarning, RunFailure

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


class CheckpointWarning(HarnessWarning):
    """A checkpoint was skipped on resume (truncated or unreadable)."""


def save_atomically(save: Callable[..., None], out_dir: str, filename: str, *args, **kwargs) -> None:
    """Call ``save(out_dir, <temp name>, *args, **kwargs)`` (mmengine's ``Runner.save_checkpoint``
    signature), flush the file to disk and rename it to ``filename``; no temp file survives a failure,
    and an ``OSError`` (a full disk) becomes a :class:`~harness.errors.RunFailure` naming the file."""
    tmp_name = f".{filename}.{os.getpid()}.tmp"
    tmp, final = os.path.join(out_dir, tmp_name), os.path.join(out_dir, filename)
    try:
        save(out_dir, tmp_name, *args, **kwargs)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # e.g. a full disk: the previous checkpoints are intact
            raise RunFailure(f"cannot write checkpoint {final}: {exc.strerror or exc}") from exc
        raise


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole torch zip checkpoint (central directory present, CRCs match)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def _epoch_of(path: Path) -> int:
    m = re.fullmatch(r"epoch_(\d+)\.pth", path.name)
    return int(m.group(1)) if m else -1


MARKER = "last_checkpoint"


def marked_checkpoint(stage_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``<stage_dir>/last_checkpoint`` names, looked up *by file name in this
    folder* (a moved or copied work dir uses its own files, never the original's); None when the
    marker is missing, unreadable or names no file here."""
    name = marker_name(stage_dir)
    path = Path(stage_dir) / name if name else None
    return path if path is not None and path.is_file() else None


def marker_name(stage_dir: str | os.PathLike) -> str | None:
    """The file name ``last_checkpoint`` holds (mmengine writes a path), None if unreadable."""
    try:
        named = (Path(stage_dir) / MARKER).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(named).name or None


def latest_checkpoint(stage_dir: str | os.PathLike) -> Path | None:
    """The checkpoint a stage folder ends with: the one ``last_checkpoint`` names, else the
    newest ``epoch_N.pth`` (a folder whose marker was lost)."""
    epochs = sorted(Path(stage_dir).glob("epoch_*.pth"), key=_epoch_of, reverse=True)
    return marked_checkpoint(stage_dir) or (epochs[0] if epochs else None)


def write_marker(stage_dir: str | os.PathLike) -> None:
    """Rewrite ``last_checkpoint`` (mmengine writes an absolute path) as the bare file name, so
    the work dir stays valid when it is moved or copied."""
    path = marked_checkpoint(stage_dir)
    if path is not None:
        tmp = Path(stage_dir) / f".{MARKER}.{os.getpid()}.tmp"
        tmp.write_text(path.name)
        os.replace(tmp, Path(stage_dir) / MARKER)


class RelativeMarkerHook(Hook):
    """After mmengine's ``CheckpointHook`` wrote ``last_checkpoint``, make it relative."""

    priority = "LOWEST"

    def after_train_epoch(self, runner) -> None:
        if runner.rank == 0:
            write_marker(runner.work_dir)


def resumable_checkpoint(work_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of ``work_dir`` (the one ``last_checkpoint`` names first,
    then ``epoch_N.pth`` newest first); incomplete ones are skipped with a :class:`CheckpointWarning`.
    Temp files of a save that a crash interrupted are removed."""
    work = Path(work_dir)
    for pattern in (".*.pth.*.tmp", f".{MARKER}.*.tmp"):  # a save or marker write interrupted by a crash
        for stale in work.glob(pattern):
            stale.unlink(missing_ok=True)
    named = marked_checkpoint(work)
    candidates = ([named] if named else []) + sorted(work.glob("epoch_*.pth"), key=_epoch_of, reverse=True)
    seen: set[Path] = set()
    for path in candidates:
        if path.resolve() in seen or not path.is_file():
            continue
        seen.add(path.resolve())
        if is_complete(path):
            return path
        warnings.warn(f"checkpoint {path} is truncated or unreadable and is skipped on resume", CheckpointWarning, 2)
    return None
