"""Result files: schema, atomic writing and loading.

A result is one JSON file per run (``schema_version`` 1; ``per_frame``, ``control``, ``budget``,
``stages`` and ``teacher_stages`` are described in docs/results.md; files without them load)::

    {
      "schema_version": 1,
      "method": "baseline",            "method_plugin": "baseline",
      "profile": "synth_benchmark",    "seed": 0,
      "datasets": {"train": {...}, "test": {...}},   # name, split, split_hash, frames, root, fingerprint, supervision
      "protocol": {... Protocol.to_dict() ..., "id": "<protocol_id>"},
      "metrics": {"student": {...}, "teacher": {...}, "mean_depth": {...}},   # summaries
      "per_frame": {"test": {"frames": ["<drive folder>/<frame>", ...], "<metric>": [...]},   # student
                    "teacher": {"test": {...}}, "mean_depth": {"test": {...}}},
      "control": {"method": ..., "profile": ...} | null,     # harness/config/controls.py
      "budget": {"epochs": .., "batch_size": .., "train_frames": .., "id": ..},
      "losses": {"<stage>": {"<term>": final-epoch mean, "loss": ...}},
      "val": {"<stage>": {"abs_rel": ..., ...},   # last validation the runner logged per stage
              "final": {...}},                     # the final student on the val split
      "stages": {"<stage>": {                      # harness/pipeline/schedule.py (absent in older files)
          "optimizer": {"type": "AdamW", "lr": ..., ...}, "param_scheduler": [...],   # as built
          "reset_schedule": bool, "continues": "<previous stage>" | null,
          "epochs": n, "schedule_epochs": [start, end, chain length], "epoch_lr": [...]}},
      "teacher_stages": {"<stage>": {"<scale>": {...}}},   # online teachers only, test split
      "teacher": {"type": ..., "cache_key": ..., "cached": bool, "train_seconds": ...} | null,
      "config": {... the fully resolved config ...},
      "versions": {"stereodistill": ..., "torch": ..., "mmengine": ..., "numpy": ..., "python": ...},
      "git_commit": "<sha>" | null,
      "timings": {"total_s": ..., "data_s": ..., "teacher_s": ..., "train_s": ..., "eval_s": ...},
      "device": "cpu" | "cuda" | "cuda:<local rank>",
      "resources": {                   # peak memory (harness/pipeline/resources.py)
        "peak_rss_mb": ...,            # this process (rank 0): resource.getrusage ru_maxrss
        "peak_rss_children_mb": ...,   # largest finished child (data-loader workers); a forked
                                       # child starts from its parent's RSS, so >= the parent's at fork
        "cuda_max_allocated_mb": ... | null,   # torch.cuda.max_memory_allocated, null on CPU
        "launcher": "none" | "pytorch", "world_size": n,
        "per_rank": [{"peak_rss_mb": .., ...}, ...]   # only in multi-process runs
      },
      "created": "<ISO 8601 UTC>",
      "work_dir": "<absolute path of the run's work dir (stage checkpoints)>",
      "cost": {"student": {...}, "teacher": {...} | null},   # harness/report/cost.py: params, flops,
                                       # latency_ms, peak_mem_mb (+ latency_gpu_ms, peak_mem_gpu_mb)
      "robustness": {...},             # only with --eval-robustness / a *-c dataset, see below
      "method_notes": {...}            # only when the strategy recorded decisions (Strategy.notes)
    }

``robustness`` (``harness/eval/robustness.py``, docs/robustness.md; absent when not evaluated)::

    {
      "spec": {"conditions": ["brightness/1", ...], "weather": ["sunny", ...], "seed": 0,
               "corrupt_size": null | [H, W], "per_severity_draws": false, "stored": false,
               "max_frames": null | n, "frames": n, "dee": "dee2", "round_digits": 3,
               "corruptions_version": 1},
      "spec_id": "<hash of spec>",     # results are compared only within (protocol.id, spec_id)
      "clean": {"abs_rel": .., "a1": .., "dee": .., "metrics": {... clean test summary ...}},
      "conditions": {"<corruption>/<severity>": {... test summary, as metrics.student ...}},
      "weather": {"sunny": {... summary ...}, ...},          # DrivingStereo weather sets
      "per_corruption": {"<corruption>": {"abs_rel": .., "a1": .., "dee": .., "severities": [1, .., 5],
                                           "ce": .. | null, "rce": .. | null, "rr": ..}},
      "summary": {"mCE": .. | null, "RmCE": .. | null, "mRR": .., "mDEE": .., "corruptions": n},
      "complete": bool,                # all 18 corruptions x 5 severities
      "reference": {"name": "baseline" | "robodepth_monodepth2", "source": .., "seeds": [..], ...},
      "seconds": ..
    }

``harness leaderboard`` reads only these files. A file in the folder that is not one of them
(foreign JSON, a corrupt or other-schema file) is skipped with a one-line warning, so one bad
file never hides the others. Writes are atomic (temp file + rename, fsync'd): a crash or a full
disk leaves the previous file intact and no temp file behind; concurrent writers of one folder
(a parallel tox matrix) each land a complete file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.data.formats import user_mode
from harness.errors import HarnessError, HarnessWarning, RunFailure

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema_version", "method", "seed", "protocol", "metrics")
#: files of a results folder that are known not to be results (``harness matrix``'s record)
NOT_RESULTS = frozenset({"matrix.json"})


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and ``os.replace``
    (mode 0666 minus the umask, as a plain ``open``)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # an unwritable folder: name the file asked for, not the temp name
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    try:
        user_mode(fd)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # e.g. a full disk: no temp file is left, the previous file is intact
        _unlink_quietly(tmp)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def check_writable_dir(path: str | os.PathLike, option: str) -> Path:
    """Create ``path`` if needed and prove it is writable, before any long work starts."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HarnessError(f"option {option} {p}: directory is not writable ({exc.strerror or exc})") from None
    return p


#: the longest path the system opens (Linux PATH_MAX) less room for the temp-file suffix
PATH_LIMIT = 4096 - 32


def check_result_path(results_dir: Path, name: str) -> None:
    """Refuse, before any training, a result path the file system would refuse at the end."""
    path = Path(results_dir).resolve() / name
    try:
        name_max = os.pathconf(results_dir, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(name)) + 24 > name_max or len(os.fsencode(str(path))) > PATH_LIMIT:
        raise HarnessError(f"option --results {results_dir}: the result file {name} would have a path of "
                           f"{len(str(path))} characters (name {len(name)}), more than the file system allows")


def result_filename(result: dict[str, Any]) -> str:
    ds = result["datasets"]["test"]["name"]
    return f"{result['method']}__{ds}__{result['profile']}__seed{result['seed']}.json"


class SkippedResultWarning(HarnessWarning):
    """A file in the results folder is not a readable result of this schema and was skipped."""


def write_result(result: dict[str, Any], results_dir: str | os.PathLike) -> Path:
    path = Path(results_dir) / result_filename(result)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=_jsonable) + "\n")
    except OSError as exc:  # e.g. ENOSPC: the previous file (if any) is intact, no temp file is left
        raise RunFailure(f"cannot write result {path}: {exc.strerror or exc}") from exc
    return path


def read_result(path: Path) -> dict[str, Any]:
    """One result file, validated; :class:`HarnessError` says why it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: not a readable result JSON ({exc})") from None
    missing = [k for k in REQUIRED_KEYS if k not in data] if isinstance(data, dict) else list(REQUIRED_KEYS)
    if missing:
        raise HarnessError(f"{path}: not a stereodistill result (missing {', '.join(missing)})")
    if data["schema_version"] != SCHEMA_VERSION:
        raise HarnessError(f"{path}: result schema_version {data['schema_version']} is not supported "
                           f"(this harness reads {SCHEMA_VERSION})")
    if not isinstance(data["metrics"], dict) or not isinstance(data["protocol"], dict) or "id" not in data["protocol"]:
        raise HarnessError(f"{path}: not a stereodistill result (metrics or protocol.id malformed)")
    field = malformed_field(data)
    if field:
        raise HarnessError(f"{path}: field {field}")
    data["_path"] = str(path)
    return data


#: metric values a table ranks and averages: a finite number (or null = not measured)
TABLE_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def malformed_field(data: dict[str, Any]) -> str | None:
    """The first field of a result whose type or value a table cannot use, described; else None."""
    def bad(name: str, value: Any, want: str) -> str:
        return f"{name} is {value!r}, must be {want}"

    if not isinstance(data["method"], str) or not data["method"]:
        return bad("method", data["method"], "a method name")
    if isinstance(data["seed"], bool) or not isinstance(data["seed"], int):
        return bad("seed", data["seed"], "an integer")
    if not isinstance(data.get("profile", ""), str):
        return bad("profile", data["profile"], "a string")
    if not isinstance(data["protocol"]["id"], str):
        return bad("protocol.id", data["protocol"]["id"], "a string")
    for role, values in data["metrics"].items():
        if not isinstance(values, dict):
            continue
        for key in TABLE_METRICS:
            value = values.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return bad(f"metrics.{role}.{key}", value, "a finite number or null")
    return None


def load_results(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Load every ``*.json`` result under ``results_dir`` (not recursive); files that are not
    results are skipped with a :class:`SkippedResultWarning` naming the file and the reason."""
    d = Path(results_dir)
    if not d.is_dir():
        raise HarnessError(f"option --results {d}: no such directory")
    out = []
    for path in sorted(d.glob("*.json")):
        if path.name in NOT_RESULTS:
            continue
        try:
            out.append(read_result(path))
        except HarnessError as exc:
            warnings.warn(f"{exc}; skipped", SkippedResultWarning, 2)
    return out


def training_budget(config: dict[str, Any], train_frames: int | None) -> dict[str, Any]:
    """The student's training budget: epochs and batch size of the schedule and the training
    frames; ``id`` hashes them. Results of different budgets are never ranked together."""
    sched = config.get("schedule") or {}
    budget = {"epochs": sched.get("epochs"), "batch_size": sched.get("batch_size"), "train_frames": train_frames}
    budget["id"] = hashlib.sha256(json.dumps(budget, sort_keys=True).encode()).hexdigest()[:8]
    return budget


def budget_of(result: dict[str, Any]) -> dict[str, Any]:
    """A result's recorded ``budget``, or (files written before it existed) the same record
    derived from its resolved config and training split."""
    recorded = result.get("budget")
    if isinstance(recorded, dict) and "id" in recorded:
        return recorded
    frames = ((result.get("datasets") or {}).get("train") or {}).get("frames")
    return training_budget(result.get("config") or {}, frames)


def package_versions() -> dict[str, str]:
    import mmengine
    import numpy
    import torch

    import harness

    return {
        "stereodistill": harness.__version__,
        "torch": torch.__version__,
        "mmengine": mmengine.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit of the harness source tree (None outside a git checkout), ``-dirty`` when a
    tracked file differs from it — except the committed reference results under ``results/``,
    which every benchmark run rewrites and which are not code."""
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results"],
                           cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
