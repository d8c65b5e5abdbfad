"""``--resume`` continues the run a work dir holds, and only that run.

* The work dir's run record (``run_config.json``) holds the resolved config of the interrupted run;
  a resume with a different config (a new learning rate, another seed or method) is refused with
  the first differing key, since its result would mix two configurations. The keys in
  :data:`MAY_CHANGE` only affect how the run is watched or where it reads from; those in
  :data:`REDOES` continue a finished run to more epochs or re-evaluate it.
* A stage that finished records its final-epoch losses and validation in ``<stage>/stage_result.json``;
  a resume reuses them instead of the empty/stale values a Runner with nothing left to train reports.
* A run that finished records its result file in the run record; resuming it again returns that
  result and rewrites nothing.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.data import formats
from harness.errors import HarnessError, RunFailure
from harness.pipeline import checkpoint
from harness.report import results

RUN_RECORD = "run_config.json"
STAGE_RESULT = "stage_result.json"
#: config keys a resume may change (display, data loading, caches)
MAY_CHANGE = ("progress", "log_interval", "num_workers", "cache_dir", "data.root")
#: keys a resume may change that redo part of a finished run: more epochs, other evaluation settings
REDOES = ("schedule.epochs", "evaluate")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_digest(cfg) -> str:
    """8 hex digits identifying a configuration: the config without ``seed``, :data:`MAY_CHANGE`
    and the evaluation settings (a resume that re-evaluates finds the same folder)."""
    tree = _plain(cfg.to_dict())
    tree.pop("seed", None)
    for key in (*MAY_CHANGE, "evaluate"):
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:8]


def read_record(work_dir: Path) -> dict[str, Any] | None:
    path = Path(work_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"option --resume: the run record {path} cannot be read ({exc}); rerun without "
                           f"--resume to start fresh") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise HarnessError(f"option --resume: the run record {path} holds no config; rerun without --resume "
                           f"to start fresh")
    return record


def first_difference(old: Any, new: Any, prefix: str = "", ignore=MAY_CHANGE + REDOES) -> tuple[str, Any, Any] | None:
    """``(dotted key, old value, new value)`` of the first key (in the new config's order) whose
    value differs, ignoring the keys in ``ignore``; None when equal."""
    if prefix in ignore:
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            sub = f"{prefix}.{key}" if prefix else str(key)
            found = first_difference(old.get(key, "<absent>"), new.get(key, "<absent>"), sub, ignore)
            if found:
                return found
        return None
    return None if old == new else (prefix, old, new)


def check_same_config(work_dir: Path, cfg) -> dict[str, Any] | None:
    """Refuse a resume whose config differs from the run record's; returns the record."""
    record = read_record(work_dir)
    if record is None:
        return None
    found = first_difference(record["config"], _plain(cfg.to_dict()))
    if found:
        key, old, new = found
        raise HarnessError(f"option --resume: {work_dir} holds a run with {key}={old!r}, this one has "
                           f"{key}={new!r}; rerun without --resume (or with another --work-dir) to start fresh")
    return record


def finished_result(record: dict[str, Any] | None, work_dir: Path, cfg) -> tuple[dict, Path] | None:
    """The result a finished run of this work dir wrote (None if it did not finish, the file moved
    or this resume continues it to more epochs)."""
    name = (record or {}).get("result")
    if not name or first_difference(record["config"], _plain(cfg.to_dict()), ignore=MAY_CHANGE):
        return None
    path = Path(name)
    try:
        result = results.read_result(path)
    except HarnessError:
        return None
    if Path(result.get("work_dir", "")).resolve() != Path(work_dir).resolve():
        return None
    result.pop("_path", None)
    return result, path


def record_result(work_dir: Path, path: Path) -> None:
    """Note in the run record that the run finished and wrote ``path``."""
    record_path = Path(work_dir) / RUN_RECORD
    if not record_path.is_file():
        return
    record = json.loads(record_path.read_text())
    record["result"] = str(Path(path).resolve())
    _write_json(record_path, record)


def finished_stage(stage_dir: Path, epochs: int) -> dict[str, Any] | None:
    """What a stage that already trained all its ``epochs`` recorded; None otherwise."""
    path = Path(stage_dir) / STAGE_RESULT
    last = checkpoint.marked_checkpoint(stage_dir)
    if last is None or last.name != f"epoch_{epochs}.pth" or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("epochs") == epochs else None


def forget_stage(stage_dir: Path) -> None:
    """A stage that trains from scratch: the previous run's stage record no longer applies."""
    (Path(stage_dir) / STAGE_RESULT).unlink(missing_ok=True)


def record_stage(stage_dir: Path, epochs: int, values: dict[str, Any]) -> None:
    _write_json(Path(stage_dir) / STAGE_RESULT, dict(values, epochs=epochs))


def _write_json(path: Path, value: dict[str, Any]) -> None:
    try:
        formats.atomic_write_bytes(path, json.dumps(value, indent=2, sort_keys=True, default=str).encode())
    except OSError as exc:  # e.g. a full disk: the previous file is intact
        raise RunFailure(f"cannot write {path}: {exc.strerror or exc}") from exc
