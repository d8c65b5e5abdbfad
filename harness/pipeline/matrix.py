"""``harness matrix``: a declared benchmark matrix planned as a DAG of jobs.

A matrix config (``harness/config/configs/matrix/reference.py``) is data: the methods and their
profiles (``runs``), the seeds, the controls, the leaderboard files and the figures. It is
planned into jobs, each with the jobs it waits for:

- ``data/<hash>``: generate (or check) one distinct data set;
- ``teacher/<name>-<hash>``: train (or find in the cache) one distinct frozen teacher;
- ``run/<name>/seed<N>``: one ``harness run`` (after its data and teacher, and after the run
  whose models it re-scores);
- ``report/<file>``: one ``harness leaderboard`` file or the figures, after every run.

A run job is *done* when its result file exists and the config recorded in it has the hash of
the config the job would run (``config_hash``); a data or teacher job when its last record has
the job's hash. Jobs run through :mod:`harness.pipeline.scheduler` (submitit executors); this
module only plans and runs one job (:func:`execute_job`), under a per-job file lock, so two
matrix commands at once never run a job twice.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.config.loader import CONFIG_DIR, build_run_config, load_file, parse_cfg_options
from harness.errors import HarnessError
from harness.report.results import _jsonable

MATRIX_DIR = CONFIG_DIR / "matrix"
RUN_KEYS = {"method", "name", "config", "quick", "eval_robustness", "cfg_options", "rescore", "seeds"}
MATRIX_KEYS = {"seeds", "results", "work_dirs", "controls", "runs", "leaderboards", "figures", "quick"}
LEADERBOARD_KEYS = {"format", "out", "metric", "robustness", "reference", "no_cost"}


@dataclass
class Job:
    """One node of the matrix DAG."""

    id: str
    kind: str  # data | teacher | run | report
    hash: str
    deps: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)  # run/report: the harness command line
    cfg: dict[str, Any] | None = None  # data/teacher: the resolved config they build from
    result: str | None = None  # run: the result file it writes
    outputs: list[str] = field(default_factory=list)  # report: the files it writes
    work_dir: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"kind": self.kind, "hash": self.hash, "deps": self.deps, "argv": self.argv,
                "result": self.result, "outputs": self.outputs, "work_dir": self.work_dir}


def digest(obj: Any) -> str:
    """Hash of a JSON-able structure (tuples and lists alike, keys sorted)."""
    canonical = json.loads(json.dumps(obj, sort_keys=True, default=_jsonable))
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


def config_hash(cfg: dict[str, Any]) -> str:
    """The hash a result's recorded ``config`` is compared with (see :func:`run_done`)."""
    return digest(cfg)


# --------------------------------------------------------------------------------------------
# The matrix config
# --------------------------------------------------------------------------------------------


def resolve_matrix_file(path: str | None) -> Path:
    """A matrix config file, or the name of a bundled one (``reference``, ``quick``)."""
    name = path or "reference"
    p = Path(name)
    if not p.is_file() and (MATRIX_DIR / f"{name}.py").is_file():
        p = MATRIX_DIR / f"{name}.py"
    if not p.is_file():
        known = ", ".join(sorted(f.stem for f in MATRIX_DIR.glob("*.py")))
        raise HarnessError(f"matrix config {name}: no such file (bundled: {known})")
    return p


def load_matrix(path: Path) -> dict[str, Any]:
    """The ``matrix`` dict of a config file, checked key by key."""
    cfg = load_file(path, "matrix config").to_dict()
    spec = cfg.get("matrix")
    if not isinstance(spec, dict):
        raise HarnessError(f"matrix config {path}: no `matrix = dict(...)` in the file")
    _check_keys(path, "matrix", spec, MATRIX_KEYS)
    runs = spec.get("runs")
    if not isinstance(runs, list) or not runs:
        raise HarnessError(f"matrix config {path}: matrix.runs must be a non-empty list")
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or "method" not in run:
            raise HarnessError(f"matrix config {path}: matrix.runs[{i}] must be a dict with a method")
        _check_keys(path, f"matrix.runs[{i}]", run, RUN_KEYS)
    for i, lb in enumerate(spec.get("leaderboards") or []):
        if not isinstance(lb, dict) or "out" not in lb:
            raise HarnessError(f"matrix config {path}: matrix.leaderboards[{i}] must be a dict with an out file")
        _check_keys(path, f"matrix.leaderboards[{i}]", lb, LEADERBOARD_KEYS)
    seeds = spec.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)
            and len(set(seeds)) == len(seeds)):
        raise HarnessError(f"matrix config {path}: matrix.seeds must be distinct non-negative integers, got {seeds!r}")
    return spec


def _check_keys(path: Path, where: str, d: dict, known: set[str]) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise HarnessError(f"matrix config {path}: unknown key(s) {unknown} in {where} (known: {', '.join(sorted(known))})")


def resolve_run_config(config: str | None) -> str | None:
    """A run's ``config``: a file (relative to the current directory), a bundled profile name,
    or ``plugins/<method>/configs/<file>`` of the installed method plugins."""
    if not config:
        return None
    p = Path(config)
    if p.is_file():
        return str(p)
    if (CONFIG_DIR / f"{config}.py").is_file():
        return str(CONFIG_DIR / f"{config}.py")
    if p.parts and p.parts[0] == "plugins":
        import stereodistill_plugins

        inside = Path(stereodistill_plugins.__file__).parent.joinpath(*p.parts[1:])
        if inside.is_file():
            return str(inside)
    raise HarnessError(f"matrix run config {config!r}: no such file or bundled profile")


def control_runs(catalog, method: str, config: str | None) -> list[dict[str, Any]]:
    """The control runs ``method`` declares for the profile of ``config``, as ``runs`` entries."""
    from harness.config.controls import control_runs as declared

    out = []
    for control in declared(catalog, method, config):
        run = control.matrix_run()
        if control.quick:
            run["quick"] = True
        out.append(run)
    return out


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def plan(spec: dict[str, Any], host) -> list[Job]:
    """The matrix as jobs in dependency order (data, teachers, runs, reports)."""
    catalog = host.catalog
    results_dir = str(spec.get("results", "results"))
    work_root = Path(str(spec.get("work_dirs", "work_dirs")))
    runs = list(spec["runs"])
    controls = []
    if spec.get("controls"):
        for r in spec["runs"]:
            controls += [c for c in control_runs(catalog, r["method"], r.get("config"))
                         if c["name"] not in {x.get("name") for x in controls}]
    names = [r.get("name", r["method"]) for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HarnessError(f"matrix: several runs are named {dup}: give each a distinct `name`")
    data_jobs: dict[str, Job] = {}
    teacher_jobs: dict[str, Job] = {}
    run_jobs: list[Job] = []
    by_result: dict[str, str] = {}
    for run, name in zip(runs, names):
        catalog.get("methods", run["method"])  # an unknown method: one error line before anything runs
        if run.get("rescore") and (run["rescore"] not in names or run["rescore"] == name):
            raise HarnessError(f"matrix run {name!r}: rescore={run['rescore']!r} names no run of this matrix")
    for run, is_control in [*((r, False) for r in runs), *((c, True) for c in controls)]:
        name = run.get("name", run["method"])
        seed_jobs = [_run_job(run, name, int(seed), spec, host, results_dir, work_root, data_jobs, teacher_jobs)
                     for seed in run.get("seeds", spec.get("seeds", [0]))]
        if is_control and all(j.result in by_result for j in seed_jobs):
            continue  # the control is a listed run already
        for job in seed_jobs:
            if job.result in by_result:
                raise HarnessError(f"matrix runs {by_result[job.result]!r} and {job.id!r} would both write {job.result}")
            by_result[job.result] = job.id
            run_jobs.append(job)
    run_ids = [j.id for j in run_jobs]
    reports = []
    for lb in spec.get("leaderboards") or []:
        out = str(Path(results_dir) / lb["out"])
        argv = ["leaderboard", "--results", results_dir, "--out", out]
        if lb.get("robustness"):
            argv += ["--robustness", "--robustness-reference", str(lb.get("reference", "baseline"))]
        if lb.get("format"):
            argv += ["--format", str(lb["format"])]
        if lb.get("metric"):
            argv += ["--metric", str(lb["metric"])]
        if lb.get("no_cost"):
            argv.append("--no-cost")
        reports.append(Job(id=f"report/{lb['out']}", kind="report", hash=digest(argv), deps=run_ids, argv=argv,
                           outputs=[out]))
    fig = spec.get("figures")
    if fig:
        out_dir = str(Path(results_dir) / fig.get("out_dir", "figures"))
        argv = ["visualize", "--results", results_dir, "--out-dir", out_dir]
        if fig.get("seed") is not None:
            argv += ["--seed", str(int(fig["seed"]))]
        reports.append(Job(id="report/figures", kind="report", hash=digest(argv), deps=run_ids, argv=argv,
                           outputs=[str(Path(out_dir) / "qualitative.png")]))
    return [*data_jobs.values(), *teacher_jobs.values(), *run_jobs, *reports]


def _run_job(run, name, seed, spec, host, results_dir, work_root, data_jobs, teacher_jobs) -> Job:
    method = run["method"]
    entry = host.catalog.get("methods", method)
    quick = bool(run.get("quick", spec.get("quick", False)))
    config = resolve_run_config(run.get("config"))
    options = [str(o) for o in run.get("cfg_options") or []]
    robust = [o for o in options if o.startswith("evaluate.robustness")]
    cfg = build_run_config(method=method, method_config=entry.extra.get("config"), config_file=config,
                           quick=quick, cfg_options=[o for o in options if o not in robust])
    if run.get("eval_robustness") or robust:  # as `harness run --eval-robustness --cfg-options ...` does
        current = dict((cfg.get("evaluate") or {}).get("robustness") or {})
        current["enabled"] = True
        current.update({k[len("evaluate.robustness."):]: v for k, v in parse_cfg_options(robust).items()})
        cfg.evaluate["robustness"] = current
    cfg.seed = seed
    host.configure_run(cfg)
    resolved = cfg.to_dict()
    data = resolved.get("data") or {}
    data_id = digest({k: data.get(k) for k in ("dataset", "root", "generate")})  # what prepare reads
    data_job = data_jobs.setdefault(data_id, Job(id=f"data/{data_id[:8]}", kind="data", hash=data_id, cfg=resolved))
    deps = [data_job.id]
    if _needs_teacher(entry.obj, resolved):
        tid = digest({k: resolved.get(k) for k in ("teacher", "teacher_train", "data")})
        tname = (resolved.get("teacher") or {}).get("type", "teacher")
        teacher = teacher_jobs.setdefault(tid, Job(id=f"teacher/{tname}-{tid[:8]}", kind="teacher", hash=tid,
                                                   deps=[data_job.id], cfg=resolved))
        deps.append(teacher.id)
    rescore = run.get("rescore")
    work_dir = str(work_root / (rescore or name) / f"seed{seed}")
    argv = ["run", "--method", method, "--seed", str(seed), "--results", results_dir, "--work-dir", work_dir]
    if config:
        argv += ["--config", config]
    if quick:
        argv.append("--quick")
    if run.get("eval_robustness"):
        argv.append("--eval-robustness")
    if options:
        argv += ["--cfg-options", *options]
    if rescore:
        argv.append("--resume")
        deps.append(f"run/{rescore}/seed{seed}")
    dataset = data.get("dataset", "synth")
    result = str(Path(results_dir) / f"{method}__{dataset}__{resolved['profile']}__seed{seed}.json")
    return Job(id=f"run/{name}/seed{seed}", kind="run", hash=config_hash(resolved), deps=deps, argv=argv,
               result=result, work_dir=work_dir)


def _needs_teacher(strategy_cls, cfg: dict[str, Any]) -> bool:
    """A run reads a cached trained teacher: its own frozen one, one it precomputes outputs
    with, or the configured one it is scored against as a reference row."""
    mode = getattr(strategy_cls, "teacher_mode", "none")
    if mode == "frozen" or getattr(strategy_cls, "precompute", None):
        return True
    return mode != "online" and bool((cfg.get("evaluate") or {}).get("teacher", True))


# --------------------------------------------------------------------------------------------
# Done checks and running one job
# --------------------------------------------------------------------------------------------


def run_done(job: Job) -> bool:
    """A run job is done when its result file exists and records the job's config."""
    path = Path(job.result)
    try:
        recorded = json.loads(path.read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(recorded, dict) and config_hash(recorded) == job.hash


def is_done(job: Job, record: dict[str, Any] | None) -> bool:
    if job.kind == "run":
        return run_done(job)
    finished = bool(record) and record.get("state") == "done" and record.get("hash") == job.hash
    return finished and all(Path(p).exists() for p in job.outputs)


def lock_path(state_dir: Path, job_id: str) -> Path:
    return state_dir / "locks" / (job_id.replace("/", "__") + ".lock")


def log_path(state_dir: Path, job_id: str) -> Path:
    return state_dir / "logs" / (job_id.replace("/", "__") + ".log")


def execute_job(job: Job, state_dir: str, threads: int, resume: bool, previous: dict | None) -> dict[str, Any]:
    """Run one job (the function the executor calls, in its own process or lane).

    Holds the job's file lock while it runs; a job another matrix command finished meanwhile
    is not run again (``ran: False``). Never raises: failures come back as ``exit`` != 0 with
    the last lines of the log."""
    state = Path(state_dir)
    lock = lock_path(state, job.id)
    lock.parent.mkdir(parents=True, exist_ok=True)
    log = log_path(state, job.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if is_done(job, previous if job.kind != "run" else None):
            return {"ran": False, "exit": 0, "state": "done"}
        start = time.time()
        try:
            if job.kind in ("run", "report"):
                argv = list(job.argv) + (["--resume"] if resume and "--resume" not in job.argv else [])
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                with open(log, "w") as out:
                    code = subprocess.run([sys.executable, "-m", "harness.cli", *argv], stdout=out,
                                          stderr=subprocess.STDOUT, env=env).returncode
            else:
                code = _in_process(job, threads, log)
        except Exception as exc:  # an executor lane must report, not die
            with open(log, "a") as out:
                out.write(f"harness matrix: {type(exc).__name__}: {exc}\n")
            code = 1
        end = time.time()
        done = code == 0 and (job.kind != "run" or run_done(job))
        if code == 0 and not done:
            with open(log, "a") as out:
                out.write(f"harness matrix: the run exited 0 but {job.result} does not record this job's config\n")
        return {"ran": True, "exit": code if not (code == 0 and not done) else 1, "state": "done" if done else "failed",
                "start": _iso(start), "end": _iso(end), "wall_s": round(end - start, 2), "log": str(log),
                "tail": "" if done else _tail(log)}


def _in_process(job: Job, threads: int, log: Path) -> int:
    """Data and teacher jobs: build the data (and train or load the teacher) like a run does."""
    import contextlib

    import torch
    from mmengine.config import Config

    from harness.host.manager import PluginHost
    from harness.pipeline.run import RunContext

    torch.set_num_threads(threads)
    cfg = Config(job.cfg)
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        host = PluginHost()
        ctx = RunContext(cfg, host, work_dir=Path("."))  # data and teachers live in the cache
        ctx.prepare_data()
        if job.kind == "teacher":
            name, teacher = ctx.build_model("teachers", "teacher")
            info = ctx.load_teacher(teacher)
            print(f"teacher {name} {info.get('key')}: {'cached' if info.get('cached') else 'trained'}")
        else:
            print(f"data ready at {ctx.data_root}")
    return 0


def _iso(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])
