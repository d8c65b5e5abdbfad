"""``harness matrix CONFIG``: run a declared benchmark matrix (data, teachers, runs, reports)."""
from __future__ import annotations

import sys
import time
from pathlib import Path


def register(sub) -> None:
    mx = sub.add_parser("matrix", help="run a declared matrix of methods x profiles x seeds (controls included) "
                        "as a DAG on a submitit executor; finished jobs are skipped")
    mx.add_argument("config", nargs="?", default="reference",
                    help="matrix config file, or a bundled one: reference (default), quick")
    mx.add_argument("--lanes", type=_positive, default=1, help="jobs at a time (local: parallel processes; default 1)")
    mx.add_argument("--executor", default="auto", choices=("auto", "local", "slurm", "debug"),
                    help="submitit executor: slurm (cluster), local (processes here), debug (in this process, "
                    "one by one); auto: slurm when sbatch is found, else local")
    mx.add_argument("--threads", type=_positive, help="torch threads per job (default: CPU cores / lanes)")
    mx.add_argument("--timeout-min", type=_positive, default=24 * 60, help="executor time limit per job (minutes)")
    mx.add_argument("--slurm-partition", help="SLURM partition")
    pick = mx.add_mutually_exclusive_group()
    pick.add_argument("--only", metavar="JOB[,JOB...]", help="run only these jobs (and unfinished ones they wait for)")
    pick.add_argument("--rerun-failed", action="store_true", help="run only the jobs that failed last time")
    mx.add_argument("--dry-run", action="store_true", help="print the jobs, what they wait for and their state; run nothing")
    mx.set_defaults(handler=cmd_matrix)


def _shown(path: Path) -> str:
    """The config path as given relative to the current directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_matrix(args) -> int:
    from harness.cli.common import plugin_host
    from harness.errors import HarnessError
    from harness.pipeline import matrix, scheduler
    from harness.report.results import check_writable_dir, now_iso

    path = matrix.resolve_matrix_file(args.config)
    spec = matrix.load_matrix(path)
    jobs = matrix.plan(spec, plugin_host())
    results_dir = Path(spec.get("results", "results"))
    state_dir = Path(spec.get("work_dirs", "work_dirs")) / ".matrix"
    header = {"config": _shown(path), "config_hash": matrix.digest(spec), "executor": args.executor,
              "lanes": args.lanes}
    if args.dry_run:
        known = scheduler.Record.read_jobs(results_dir / "matrix.json", header["config_hash"])
        rows = []
        for job in jobs:
            prev = known.get(job.id)
            done = matrix.is_done(job, prev if prev and prev.get("hash") == job.hash else None)
            deps = ", ".join(job.deps) if len(job.deps) < 4 else f"{len(job.deps)} jobs ({job.deps[0]}, ...)"
            rows.append([job.id, "done" if done else "to run", deps or "-"])
        from tabulate import tabulate

        print(tabulate(rows, headers=["job", "state", "waits for"]))
        return 0
    check_writable_dir(results_dir, f"matrix.results of {path}")
    check_writable_dir(state_dir, f"matrix.work_dirs of {path}")
    record = scheduler.Record(results_dir / "matrix.json", header, lock=state_dir / "matrix.json.lock")
    selected = None
    if args.only:
        selected = {j.strip() for j in args.only.split(",") if j.strip()}
    elif args.rerun_failed:
        selected = {j for j, r in record.jobs.items() if r.get("state") == "failed"}
        if not selected:
            raise HarnessError(f"option --rerun-failed: no failed job in {record.path}")
    threads = args.threads or scheduler.default_threads(args.lanes)
    executor = scheduler.make_executor(args.executor, state_dir / "submitit", timeout_min=args.timeout_min,
                                       cpus=threads, slurm_partition=args.slurm_partition)
    lanes = 1 if executor.cluster == "debug" else args.lanes
    started = time.time()
    record.update(executor=executor.cluster, lanes=lanes, threads=threads, started=now_iso(), ended=None, wall_s=None)
    state = scheduler.run_matrix(jobs, executor, record, state_dir=state_dir, lanes=lanes, threads=threads,
                                 selected=selected)
    wall = round(time.time() - started, 1)
    ran = sorted(j for j, r in record.jobs.items() if r.get("ran"))
    record.update(ended=now_iso(), wall_s=wall, invocations=[
        *record.header["invocations"], {"started": record.header["started"], "wall_s": wall, "ran": len(ran)}])
    for line in scheduler.summary_lines(state, record.jobs, args.config):
        print(line, file=sys.stderr)
    print(f"matrix record -> {record.path}")
    return 1 if any(s in ("failed", "blocked") for s in state.values()) else 0
