"""Train a teacher once and reuse it: cached by a hash of its config, schedule and data.

Layout under ``<cache_dir>/teachers/``: ``<key>/teacher.pth`` (state dict), ``<key>/meta.json``
(config, data fingerprint, training time, validation metrics), ``<key>/logs/`` (the training's
mmengine text/JSON logs, config dump and TensorBoard events; checkpoints left out) and ``<key>.lock``. A file lock
makes concurrent runs of a method matrix train each teacher exactly once; an interrupted
training resumes from its own checkpoints in ``<key>.work/``. The teacher seed is part of the
teacher config (``teacher_train.seed``), not the student's seed, so every student seed of a
benchmark sees the same teacher.

``teacher.pth`` and ``meta.json`` are each written to a temp file and renamed, ``meta.json``
last, and readers look only under the lock, so no run ever reads a partial file. An entry
whose files cannot be read (a damaged disk, a copy cut short) is reported with a warning and
retrained.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from harness.pipeline import checkpoint, distributed
from harness.errors import HarnessWarning, RunFailure
from harness.report.results import atomic_write_text

CACHE_ENV = "STEREODISTILL_CACHE"
CACHE_FORMAT = 2  # 2: seeded initial weights and per-epoch reseeding (harness/pipeline/determinism.py)


class CacheWarning(HarnessWarning):
    """A teacher cache entry could not be read and is rebuilt."""


def cache_root(configured: str | None) -> Path:
    root = configured or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stereodistill"
    return Path(root).expanduser()


#: folders under a data root that the harness itself writes (never part of the data's identity)
OWN_FOLDERS = frozenset({"precomputed"})


def files_fingerprint(root: str | os.PathLike) -> str:
    """Identity of the files under a data root: sha256 over (path, size, mtime) of every file,
    leaving out hidden files, lock files and the harness's own folders (``precomputed/``). A
    modified copy of a dataset differs (its files were rewritten); a copy that keeps sizes and
    times (``cp -p``) is the same data."""
    root = Path(root).resolve()
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (rel == "." and d in OWN_FOLDERS))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(".lock"):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            digest.update(f"{os.path.join(rel, name)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def teacher_key(teacher_cfg: dict, train_cfg: dict, data_fingerprint: str, input_size, files: str | None = None) -> str:
    """The cache key: teacher config, training schedule, the data (split fingerprint and, with
    ``files``, :func:`files_fingerprint` of its root) and the input size."""
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "teacher": teacher_cfg,
            "train": train_cfg,
            "data": data_fingerprint,
            "input_size": list(input_size),
            **({"files": files} if files is not None else {}),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_entry(entry: Path) -> tuple[dict, dict] | None:
    """``(state_dict, meta)`` of a complete, loadable entry, else None; an unreadable entry is
    removed (so it is retrained) with a warning."""
    if not ((entry / "meta.json").is_file() and (entry / "teacher.pth").is_file()):
        return None
    try:
        state = torch.load(entry / "teacher.pth", map_location="cpu", weights_only=True)
        meta = json.loads((entry / "meta.json").read_text())
    except Exception as exc:  # unreadable: retrain rather than fail the run
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        warnings.warn(f"teacher cache entry {entry} is unreadable and is retrained ({type(exc).__name__}: {first})",
                      CacheWarning, 3)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    return state, meta


def _keep_logs(work: Path, logs: Path) -> None:
    """Copy the training's logs (not its checkpoints) into the entry; a failure costs the logs only."""
    try:
        shutil.copytree(work, logs, ignore=shutil.ignore_patterns("*.pth", "*.pth.tmp", "last_checkpoint"),
                        dirs_exist_ok=True)
    except OSError as exc:
        warnings.warn(f"the teacher's training logs were not kept in {logs}: {exc.strerror or exc}", CacheWarning, 3)


def load_or_train(
    teacher: torch.nn.Module,
    *,
    key: str,
    cache_dir: Path,
    train_fn,
    describe: dict[str, Any],
) -> dict[str, Any]:
    """Fill ``teacher`` with cached weights, training it with ``train_fn(teacher, work_dir)`` first
    if no cache entry exists. Returns the cache metadata (with ``cached``: whether it was a hit).

    In a multi-process run rank 0 holds the lock and decides; on a miss every rank trains
    (``train_fn`` is a distributed stage) and rank 0 writes the entry."""
    base = cache_dir / "teachers"
    base.mkdir(parents=True, exist_ok=True)
    entry = base / key
    main = distributed.is_main_process()
    with FileLock(str(base / f"{key}.lock")) if main else contextlib.nullcontext():
        cached = _read_entry(entry) if main else None
        if distributed.broadcast_object(cached is not None):
            state, meta = cached or _read_entry(entry)  # the other ranks read the entry rank 0 checked
            teacher.load_state_dict(state)
            meta["cached"] = True
            return meta
        work = base / f"{key}.work"
        checkpoint.trust_directory(work)
        start = time.time()
        extra = train_fn(teacher, work) or {}
        distributed.sync_buffers(teacher)  # every rank goes on with the teacher rank 0 stores
        seconds = time.time() - start
        meta = dict(describe, key=key, train_seconds=round(seconds, 2), created=time.time(), **extra)
        if main:
            tmp = entry / "teacher.pth.tmp"
            try:
                entry.mkdir(exist_ok=True)
                torch.save({k: v.detach().cpu() for k, v in teacher.state_dict().items()}, tmp)
                os.replace(tmp, entry / "teacher.pth")
                atomic_write_text(entry / "meta.json", json.dumps(meta, indent=2, sort_keys=True, default=str))
            except OSError as exc:  # e.g. a full disk: no meta.json, so the entry counts as missing
                tmp.unlink(missing_ok=True)
                raise RunFailure(f"cannot write the teacher cache entry {entry}: {exc.strerror or exc}") from exc
            _keep_logs(work, entry / "logs")
            shutil.rmtree(work, ignore_errors=True)
        distributed.barrier()
        meta["cached"] = False
        return meta
