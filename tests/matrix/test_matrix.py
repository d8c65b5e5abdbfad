"""`harness matrix`: config checks, the planned DAG, skip/resume/lock/failure handling, executors."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from filelock import FileLock

from harness.cli.main import main
from harness.host.manager import PluginHost
from harness.pipeline import matrix, scheduler

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(*args, cwd=None, env=None, timeout=900):
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def host():
    return PluginHost()


def write_matrix(path, **spec):
    path.write_text("matrix = " + repr(spec) + "\n")
    return path


def in_process(capsys, monkeypatch, cwd, *args):
    """``harness ARGS`` in this process (fast: no interpreter start-up), as (code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def one_error(out, *fragments):
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), out.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


# -- the config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, fragments", [
    (dict(runs=[]), ["matrix.runs must be a non-empty list"]),
    (dict(runs=[dict(method="baseline", confg="synth_small")]), ["unknown key(s) ['confg']", "matrix.runs[0]"]),
    (dict(runs=[dict(method="baseline")], seeds=[0, 0]), ["matrix.seeds"]),
    (dict(runs=[dict(method="baseline")], lanes=2), ["unknown key(s) ['lanes']"]),
    (dict(runs=[dict(method="nope")]), ["unknown method 'nope'"]),
    (dict(runs=[dict(method="baseline"), dict(method="baseline", config="synth_small")]), ["named ['baseline']"]),
    (dict(runs=[dict(method="baseline", rescore="other")]), ["rescore='other'"]),
    (dict(runs=[dict(method="baseline", config="no_such_profile")]), ["no_such_profile"]),
])
def test_bad_matrix_config_is_one_line(tmp_path, capsys, monkeypatch, spec, fragments):
    cfg = write_matrix(tmp_path / "m.py", **spec)
    one_error(in_process(capsys, monkeypatch, tmp_path, "matrix", str(cfg), "--dry-run"), *fragments)
    assert os.listdir(tmp_path) == ["m.py"]  # nothing written


def test_missing_matrix_file_names_the_bundled_ones(tmp_path, capsys, monkeypatch):
    one_error(in_process(capsys, monkeypatch, tmp_path, "matrix", "nope.py", "--dry-run"), "nope.py", "reference", "quick")


def test_bad_lanes_is_a_usage_error(tmp_path, capsys, monkeypatch):
    one_error(in_process(capsys, monkeypatch, tmp_path, "matrix", "quick", "--lanes", "0"), "--lanes")


def test_cli_error_has_no_traceback_in_a_fresh_process(tmp_path):
    one_error(harness("matrix", str(write_matrix(tmp_path / "m.py", runs=[])), "--dry-run", cwd=tmp_path), "matrix.runs")


def test_dry_run_lists_jobs_and_what_they_wait_for(tmp_path, capsys, monkeypatch):
    out = in_process(capsys, monkeypatch, tmp_path, "matrix", "quick", "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(ln.startswith("run/adu/seed1") and "to run" in ln and "teacher/stereo-" in ln for ln in lines)
    assert any(ln.startswith("report/leaderboard.md") and "4 jobs (run/baseline/seed0, ...)" in ln for ln in lines)
    assert os.listdir(tmp_path) == []


# -- the plan -----------------------------------------------------------------------------------


def by_teacher(jobs, run_id):
    (run,) = [j for j in jobs if j.id == run_id]
    return [d for d in run.deps if d.startswith("teacher/")]


def test_reference_plan_is_a_dag_data_teachers_runs_reports(host):
    jobs = matrix.plan(matrix.load_matrix(matrix.resolve_matrix_file("reference")), host)
    order = {j.id: i for i, j in enumerate(jobs)}
    kinds = [j.kind for j in jobs]
    assert kinds == sorted(kinds, key=["data", "teacher", "run", "report"].index)
    for job in jobs:  # every dependency is planned before the job
        assert all(order[d] < order[job.id] for d in job.deps), job.id
    runs = [j for j in jobs if j.kind == "run"]
    assert len({j.result for j in runs}) == len(runs) == 39  # 9 listed rows + 4 declared controls, 3 seeds each
    ids = {j.id for j in runs}
    # declared controls not listed are added with the same seeds; those listed are not run twice
    assert {"run/recursive-synth_small_control/seed2", "run/structure-synth_small_control/seed0",
            "run/baseline-synth_small_video/seed1", "run/baseline-synth_small_sparse/seed0"} <= ids
    assert not any(i.startswith("run/baseline-synth_small_stereo/") for i in ids)  # = baseline-stereo
    teachers = [j for j in jobs if j.kind == "teacher"]
    # the dense-GT stereo teacher, the sparse-GT one of adu and its control, the semantic one
    assert sorted(t.id.split("-")[0] for t in teachers) == ["teacher/semantic", "teacher/stereo", "teacher/stereo"]
    assert by_teacher(jobs, "run/adu/seed0") == by_teacher(jobs, "run/baseline-synth_small_sparse/seed0") != \
        by_teacher(jobs, "run/baseline/seed0")
    # one data set for all (flip modes of a split do not change what is generated)
    assert len([j for j in jobs if j.kind == "data"]) == 1
    by_id = {j.id: j for j in jobs}
    rescore = by_id["run/baseline-stereo-median/seed1"]
    assert "run/baseline-stereo/seed1" in rescore.deps and "--resume" in rescore.argv
    assert rescore.work_dir == by_id["run/baseline-stereo/seed1"].work_dir
    assert not any(d.startswith("teacher/") for d in by_id["run/recursive/seed0"].deps)  # online teacher
    assert any(d.startswith("teacher/semantic") for d in by_id["run/structure/seed0"].deps)
    assert [j.id for j in jobs if j.kind == "report"][-1] == "report/figures"
    assert all(set(j.deps) == {r.id for r in runs} for j in jobs if j.kind == "report")


def test_run_hash_is_the_config_a_result_records(host, tmp_path):
    spec = dict(runs=[dict(method="baseline", cfg_options=["schedule.epochs=2"])], seeds=[3], quick=True,
                results=str(tmp_path / "r"), work_dirs=str(tmp_path / "w"))
    job = [j for j in matrix.plan(spec, host) if j.kind == "run"][0]
    assert job.result.endswith("baseline__synth__quick__seed3.json")
    assert not matrix.run_done(job)
    resolved = [j for j in matrix.plan(spec, host) if j.kind == "data"][0].cfg
    (tmp_path / "r").mkdir()
    with open(job.result, "w") as f:
        json.dump({"config": json.loads(json.dumps(resolved))}, f)
    assert matrix.run_done(job)
    resolved["schedule"]["epochs"] = 3
    with open(job.result, "w") as f:
        json.dump({"config": resolved}, f)
    assert not matrix.run_done(job)  # a result of another config is not this job's


# -- running: fake cheap jobs through real executors ---------------------------------------------


def cli_job(job_id, argv, deps=(), outputs=()):
    return matrix.Job(id=job_id, kind="report", hash=matrix.digest(argv), deps=list(deps), argv=list(argv),
                      outputs=list(outputs))


def run(jobs, tmp_path, kind="debug", lanes=1, selected=None):
    record = scheduler.Record(tmp_path / "matrix.json", {"config": "test", "config_hash": "h"}, lock=tmp_path / "lock")
    ex = scheduler.make_executor(kind, tmp_path / "submitit", timeout_min=10, cpus=1, slurm_partition=None)
    lines = []
    state = scheduler.run_matrix(jobs, ex, record, state_dir=tmp_path / "state", lanes=lanes, threads=1,
                                 selected=selected, poll_s=0.2, show=lines.append)
    return state, json.loads((tmp_path / "matrix.json").read_text()), lines


def test_failed_job_blocks_dependents_is_listed_and_reruns_alone(tmp_path):
    out = tmp_path / "synth"
    jobs = [cli_job("ok", ["list", "methods"]),
            cli_job("bad", ["list", "no-such-kind"]),
            cli_job("after-bad", ["list", "methods"], deps=["bad"]),
            cli_job("report", ["data", "synth", "--out", str(out), "--frames", "1", "--height", "32", "--width", "64"],
                    deps=["ok"], outputs=[str(out)])]
    (tmp_path / "matrix.json").unlink(missing_ok=True)
    state, rec, lines = run(jobs, tmp_path)
    assert state == {"ok": "done", "bad": "failed", "after-bad": "blocked", "report": "done"}
    assert rec["failed"] == ["bad"] and rec["jobs"]["bad"]["exit"] == 2
    assert "invalid choice" in rec["jobs"]["bad"]["tail"] and os.path.isfile(rec["jobs"]["bad"]["log"])
    assert rec["jobs"]["after-bad"]["blocked_by"] == ["bad"]
    for key in ("start", "end", "wall_s", "where", "exit"):
        assert rec["jobs"]["ok"][key] is not None
    summary = scheduler.summary_lines(state, rec["jobs"], "m.py")
    assert any("failed: bad (exit 2" in ln for ln in summary) and any("--rerun-failed" in ln for ln in summary)
    # a second invocation skips what is done: nothing runs
    state, rec, _ = run(jobs, tmp_path, selected={"ok", "report"})
    assert state["ok"] == state["report"] == "done" and rec["jobs"]["report"]["ran"] is False
    # rerun only the failed job, fixed: its dependent stays unselected
    jobs[1] = cli_job("bad", ["list", "methods"])
    state, rec, _ = run(jobs, tmp_path, selected={"bad"})
    assert state["bad"] == "done" and rec["jobs"]["bad"]["ran"] is True and state["after-bad"] == "not selected"
    assert rec["failed"] == []


def test_report_is_remade_when_a_result_changes(tmp_path):
    res = tmp_path / "r.json"
    res.write_text("{}")
    run_job = matrix.Job(id="run", kind="run", hash="x", result=str(res))
    out = tmp_path / "t.txt"
    report = cli_job("report", ["list", "methods"], deps=["run"], outputs=[str(out)])
    out.write_text("made")
    by_id = {"run": run_job, "report": report}
    first = scheduler.input_hash(report, by_id)
    res.write_text('{"changed": 1}')
    assert scheduler.input_hash(report, by_id) != first


def test_local_executor_runs_lanes_in_parallel(tmp_path):
    jobs = [cli_job(f"j{i}", ["data", "synth", "--out", str(tmp_path / f"s{i}"), "--frames", "4", "--height", "32",
                              "--width", "64"]) for i in range(2)]
    state, rec, lines = run(jobs, tmp_path, kind="local", lanes=2)
    assert state == {"j0": "done", "j1": "done"}
    a, b = rec["jobs"]["j0"], rec["jobs"]["j1"]
    # both were handed to the executor before either finished (from the scheduler's own log,
    # not from wall-clock times, which a loaded machine makes overlap or not by chance)
    events = [ln.split(" ", 1)[1] for ln in lines if isinstance(ln, str) and (": running on" in ln or ": done" in ln)]
    started = [i for i, e in enumerate(events) if ": running on" in e]
    finished = [i for i, e in enumerate(events) if ": done" in e]
    assert len(started) == 2 and len(finished) == 2 and max(started) < min(finished)
    assert {a["where"].split("lane ")[-1], b["where"].split("lane ")[-1]} == {"1", "2"}
    assert a["where"].startswith("local job ")


def test_lock_keeps_a_second_matrix_from_running_a_job_twice(host, tmp_path):
    spec = dict(runs=[dict(method="baseline")], quick=True, results=str(tmp_path / "r"), work_dirs=str(tmp_path / "w"))
    job = [j for j in matrix.plan(spec, host) if j.kind == "run"][0]
    resolved = [j for j in matrix.plan(spec, host) if j.kind == "data"][0].cfg
    state = tmp_path / "state"
    lock = FileLock(str(matrix.lock_path(state, job.id)))
    matrix.lock_path(state, job.id).parent.mkdir(parents=True)
    lock.acquire()  # "the other matrix command" is running this job
    out = {}
    t = threading.Thread(target=lambda: out.update(matrix.execute_job(job, str(state), 1, False, None)))
    t.start()
    time.sleep(1.0)
    assert t.is_alive()  # waits for the lock instead of starting a second run
    (tmp_path / "r").mkdir()
    with open(job.result, "w") as f:  # the other command finishes the job
        json.dump({"config": json.loads(json.dumps(resolved))}, f)
    lock.release()
    t.join(30)
    assert out == {"ran": False, "exit": 0, "state": "done"}


def test_interrupted_run_is_resumed(tmp_path):
    res = tmp_path / "r.json"
    job = matrix.Job(id="run/x/seed0", kind="run", hash="h", argv=["list", "methods"], result=str(res))
    (tmp_path / "matrix.json").write_text(json.dumps(
        {"config_hash": "h", "jobs": {job.id: {"hash": "h", "state": "running", "updated": 1}}}))
    record = scheduler.Record(tmp_path / "matrix.json", {"config": "t", "config_hash": "h"}, lock=tmp_path / "lock")
    calls = []

    class Ex:  # records what the scheduler submits; the job "fails" (no result file)
        cluster = "debug"

        def submit(self, fn, job, state_dir, threads, resume, prev):
            calls.append(resume)
            return type("Sub", (), {"job_id": "1", "done": lambda s: True,
                                    "result": lambda s: {"ran": True, "exit": 1, "state": "failed"}})()

    scheduler.run_matrix([job], Ex(), record, state_dir=tmp_path, lanes=1, threads=1, show=lambda s: None)
    assert calls == [True]  # the killed attempt's checkpoints are continued with --resume


@pytest.mark.slow
def test_quick_matrix_end_to_end_then_everything_is_skipped(tmp_path):
    cache = tmp_path / "cache"
    cfg = write_matrix(tmp_path / "m.py", seeds=[0], quick=True, results="r", work_dirs="w",
                       runs=[dict(method="baseline", cfg_options=["evaluate.teacher=False"])],
                       leaderboards=[dict(format="csv", out="lb.csv", no_cost=True)])
    env = {"STEREODISTILL_CACHE": str(cache)}
    out = harness("matrix", str(cfg), "--executor", "debug", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    rec = json.loads((tmp_path / "r" / "matrix.json").read_text())
    assert rec["executor"] == "debug" and rec["wall_s"] > 0 and rec["config_hash"]
    assert {j: r["state"] for j, r in rec["jobs"].items()} == {
        j: "done" for j in rec["jobs"]} and "run/baseline/seed0" in rec["jobs"]
    assert not any(k.startswith("teacher/") for k in rec["jobs"])  # evaluate.teacher=False: no teacher
    assert (tmp_path / "r" / "lb.csv").read_text().count("baseline") >= 1
    again = harness("matrix", str(cfg), "--executor", "debug", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    rec = json.loads((tmp_path / "r" / "matrix.json").read_text())
    assert not any(r["ran"] for r in rec["jobs"].values()), rec["jobs"]
    assert [i["ran"] for i in rec["invocations"]] == [len(rec["jobs"]), 0]  # every invocation, and what ran
    assert "done (skipped)" in again.stderr
