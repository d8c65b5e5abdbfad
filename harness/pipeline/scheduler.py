"""Run the jobs of a matrix (:mod:`harness.pipeline.matrix`) on a submitit executor.

submitit provides the executors: ``slurm`` (one SLURM job per matrix job, on a cluster),
``local`` (each job in its own process on this machine; at most ``lanes`` at a time) and
``debug`` (in this process, one after the other: for tests). A job is submitted when every job
it waits for is done; one whose dependency failed is ``blocked``. Finished jobs are skipped.

``<results>/matrix.json`` is the record, rewritten atomically (under a lock, merged with what
other matrix commands wrote) at every change: the matrix config and its hash, the executor,
the lanes, the start, end and wall time of the last invocation (``invocations``: every one,
with how many jobs it ran) and per job its state (``done``,
``failed``, ``blocked``, ``running``, ``pending``), whether it ran in the last invocation, where
(executor job id, lane), start, end, wall time, exit status and log file.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from harness.errors import HarnessError
from harness.pipeline.matrix import Job, digest, execute_job, is_done
from harness.report.results import atomic_write_text, now_iso

EXECUTORS = ("auto", "local", "slurm", "debug")
RECORD_FORMAT = 1


def make_executor(kind: str, folder: Path, *, timeout_min: int, cpus: int, slurm_partition: str | None):
    """A submitit executor (``auto``: SLURM when ``sbatch`` is found, else local)."""
    import submitit

    if kind not in EXECUTORS:
        raise HarnessError(f"option --executor {kind!r}: one of {', '.join(EXECUTORS)}")
    cluster = None if kind == "auto" else kind
    try:
        ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    except Exception as exc:  # e.g. slurm requested where there is no sbatch
        raise HarnessError(f"option --executor {kind}: {exc}") from None
    params: dict[str, Any] = {"timeout_min": timeout_min, "cpus_per_task": cpus, "name": "harness-matrix"}
    if ex.cluster == "slurm" and slurm_partition:
        params["slurm_partition"] = slurm_partition
    ex.update_parameters(**params)
    return ex


class Record:
    """``matrix.json``: read-merge-write under a file lock, so concurrent matrix commands of the
    same config keep one consistent record."""

    def __init__(self, path: Path, header: dict[str, Any], lock: Path):
        self.path = path
        self.lock = FileLock(str(lock))
        self.header = header
        self.jobs = self.read_jobs(path, header["config_hash"])
        self.header["invocations"] = self.invocations()  # kept while this invocation rewrites the file

    @staticmethod
    def read_jobs(path: Path, config_hash: str) -> dict[str, dict[str, Any]]:
        """The job records of ``path`` when it records the same matrix config, else none."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        ok = isinstance(data, dict) and data.get("config_hash") == config_hash and isinstance(data.get("jobs"), dict)
        return data["jobs"] if ok else {}

    def invocations(self) -> list[dict[str, Any]]:
        """The earlier invocations of this matrix config (start, wall time, jobs run)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        ok = isinstance(data, dict) and data.get("config_hash") == self.header["config_hash"]
        return list(data.get("invocations") or []) if ok else []

    def update(self, job_id: str | None = None, **fields: Any) -> None:
        with self.lock:
            for jid, rec in self.read_jobs(self.path, self.header["config_hash"]).items():
                # what other matrix commands recorded meanwhile
                if jid != job_id and rec.get("updated", 0) > self.jobs.get(jid, {}).get("updated", 0):
                    self.jobs[jid] = rec
            if job_id is not None:
                self.jobs[job_id] = dict(self.jobs.get(job_id, {}), **fields, updated=round(time.time(), 3))
            else:
                self.header.update(fields)
            data = dict(self.header, format=RECORD_FORMAT, jobs=self.jobs,
                        failed=sorted(j for j, r in self.jobs.items() if r.get("state") == "failed"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def run_matrix(
    jobs: list[Job],
    executor,
    record: Record,
    *,
    state_dir: Path,
    lanes: int,
    threads: int,
    selected: set[str] | None = None,
    poll_s: float = 1.0,
    show: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, str]:
    """Run ``jobs`` (those in ``selected`` and the unfinished jobs they wait for; all when None);
    returns job id -> final state."""
    by_id = {j.id: j for j in jobs}
    wanted = _closure(by_id, selected) if selected is not None else set(by_id)
    state: dict[str, str] = {}
    for job in jobs:
        if job.kind == "report":
            job.hash = input_hash(job, by_id)
        prev = record.jobs.get(job.id)
        if prev and prev.get("hash") != job.hash:
            prev = None
        if is_done(job, prev):
            state[job.id] = "done"
            record.update(job.id, **job.to_record(), state="done", ran=False)
        elif job.id not in wanted:
            state[job.id] = "not selected"
        else:
            state[job.id] = "pending"
            resume = job.kind == "run" and bool(prev) and prev.get("state") in ("running", "failed")
            record.update(job.id, **job.to_record(), state="pending", ran=False, resume=resume)
    debug = getattr(executor, "cluster", "") == "debug"
    running: dict[str, tuple[Any, int]] = {}
    free_lanes = list(range(1, lanes + 1))
    show(table(jobs, state, record.jobs))
    try:
        while any(s == "pending" for s in state.values()) or running:
            for jid, (sub, lane) in list(running.items()):
                if debug or sub.done():
                    _finish(by_id[jid], sub, lane, state, record, show)
                    del running[jid]
                    free_lanes.append(lane)
            for job in jobs:
                if state[job.id] != "pending":
                    continue
                dep_states = [state.get(d, "done") for d in job.deps]
                if any(s in ("failed", "blocked", "not selected") for s in dep_states):
                    state[job.id] = "blocked"
                    bad = [d for d in job.deps if state.get(d) in ("failed", "blocked", "not selected")]
                    record.update(job.id, state="blocked", ran=False, blocked_by=bad)
                    show(f"{now_iso()} {job.id}: blocked (waits for {', '.join(bad)})")
                elif all(s == "done" for s in dep_states) and free_lanes:
                    if job.kind == "report":
                        job.hash = input_hash(job, by_id)
                        record.update(job.id, hash=job.hash)
                    lane = free_lanes.pop(0)
                    prev = record.jobs.get(job.id, {})
                    sub = executor.submit(execute_job, job, str(state_dir), threads, bool(prev.get("resume")), prev)
                    running[job.id] = (sub, lane)
                    state[job.id] = "running"
                    where = _where(executor, sub, lane)
                    record.update(job.id, state="running", where=where, start=now_iso(), end=None, exit=None,
                                  wall_s=None, started_at=time.time())
                    show(f"{now_iso()} {job.id}: running on {where}")
                    if debug:
                        break  # the debug executor runs it when its result is asked for, right above
            if running and not debug:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for jid, (sub, _) in running.items():
            sub.cancel(check=False)
            record.update(jid, state="failed", exit=130, end=now_iso(), note="interrupted")
            state[jid] = "failed"
        raise
    show(table(jobs, state, record.jobs))
    return state


def input_hash(job: Job, by_id: dict[str, Job]) -> str:
    """A report's hash: its command and the content of the result files it tabulates, so a
    report is made again whenever a result changed."""
    import hashlib

    contents = {}
    for dep in job.deps:
        path = by_id[dep].result if dep in by_id else None
        if path and Path(path).is_file():
            contents[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest({"argv": job.argv, "inputs": contents})


def _finish(job: Job, sub, lane: int, state: dict[str, str], record: Record, show) -> None:
    try:
        out = sub.result()
    except Exception as exc:  # the executor lost the job (timeout, preemption, killed process)
        out = {"ran": True, "exit": 1, "state": "failed", "tail": f"{type(exc).__name__}: {str(exc)[-300:]}"}
    state[job.id] = out["state"]
    fields = {k: out[k] for k in ("start", "end", "wall_s", "log", "tail") if k in out}
    if not out["ran"]:
        fields["note"] = "finished by another matrix command"
    record.update(job.id, state=out["state"], exit=out["exit"], ran=bool(out["ran"]), **fields)
    wall = f" in {out['wall_s']:.0f}s" if out.get("wall_s") is not None else ""
    show(f"{now_iso()} {job.id}: {out['state']}{wall}" + (f" ({out.get('tail')})" if out["state"] == "failed" else ""))


def _closure(by_id: dict[str, Job], selected: set[str]) -> set[str]:
    unknown = sorted(selected - set(by_id))
    if unknown:
        raise HarnessError(f"option --only: no job {unknown[0]!r} in this matrix (see --dry-run for the job ids)")
    out: set[str] = set()
    todo = list(selected)
    while todo:
        jid = todo.pop()
        if jid not in out:
            out.add(jid)
            todo.extend(by_id[jid].deps)
    return out


def _where(executor, sub, lane: int) -> str:
    cluster = getattr(executor, "cluster", "?")
    return f"{cluster} job {sub.job_id}" + (f", lane {lane}" if cluster == "local" else "")


def table(jobs: list[Job], state: dict[str, str], records: dict[str, dict[str, Any]]) -> str:
    """The progress table: every job, its state, where it runs or ran, its wall time."""
    from tabulate import tabulate

    rows = []
    for job in jobs:
        rec = records.get(job.id, {})
        st = state.get(job.id, rec.get("state", "?"))
        ran = rec.get("ran")
        wall = rec.get("wall_s")
        if st == "running" and rec.get("started_at"):
            wall = time.time() - rec["started_at"]
        rows.append([job.id, st + ("" if st != "done" or ran else " (skipped)"),
                     rec.get("where", "") if st in ("running", "failed") or ran else "",
                     "" if wall is None else f"{wall:.0f}s", rec.get("exit", "") if rec.get("exit") is not None else ""])
    return tabulate(rows, headers=["job", "state", "where", "wall", "exit"])


def summary_lines(state: dict[str, str], records: dict[str, dict[str, Any]], config_arg: str) -> list[str]:
    """The end of a matrix: counts, and every failed job with its log and how to rerun it."""
    counts: dict[str, int] = {}
    for s in state.values():
        counts[s] = counts.get(s, 0) + 1
    lines = ["matrix: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    failed = [j for j, s in state.items() if s == "failed"]
    for jid in failed:
        rec = records.get(jid, {})
        lines.append(f"  failed: {jid} (exit {rec.get('exit')}; log {rec.get('log', '-')})")
    if failed:
        lines.append(f"  rerun them alone: harness matrix {config_arg} --rerun-failed "
                     f"(or --only {','.join(failed)})")
    return lines


def default_threads(lanes: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, lanes))
