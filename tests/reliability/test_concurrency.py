"""Concurrent writers: one results folder shared by parallel runs loses nothing; the teacher
cache trains each teacher once under its file lock and readers never see a partial file."""
from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import time

import pytest
import torch

from harness.pipeline import teacher_cache
from harness.report.results import load_results, write_result
from tests.reliability.conftest import REPO, harness_cmd, subprocess_env


def _result(method, seed, value):
    return {"schema_version": 1, "method": method, "seed": seed, "profile": "p",
            "protocol": {"id": "x"}, "datasets": {"test": {"name": "synth"}},
            "metrics": {"student": {"abs_rel": value}}, "payload": "x" * 200_000}


def _writer(results_dir, method, rounds):
    for i in range(rounds):
        write_result(_result(method, i % 3, float(i)), results_dir)
        write_result(_result("shared", 0, float(i)), results_dir)  # both processes rewrite this one


def test_two_processes_writing_one_results_folder_lose_nothing(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(tmp_path, m, 20)) for m in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"{m}__synth__p__seed{s}.json" for m in ("a", "b") for s in range(3)]
                           + ["shared__synth__p__seed0.json"])  # no temp file left
    results = load_results(tmp_path)  # every file parses: no torn write
    assert len(results) == 7


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4))


def _load_or_train(cache_dir, log, value, started):
    def train_fn(model, work):
        with open(log, "a") as f:
            f.write("trained\n")
        started.set()
        time.sleep(1.0)  # long enough for the other process to queue on the lock
        with torch.no_grad():
            model.w.fill_(value)
        return {}

    model = _Tiny()
    meta = teacher_cache.load_or_train(model, key="k", cache_dir=cache_dir, train_fn=train_fn, describe={})
    with open(log, "a") as f:
        f.write(f"{'hit' if meta['cached'] else 'miss'} {model.w[0].item()}\n")


def test_concurrent_teacher_cache_trains_once_and_reads_whole_files(tmp_path):
    ctx = mp.get_context("fork")
    log = tmp_path / "log.txt"
    started = ctx.Event()
    first = ctx.Process(target=_load_or_train, args=(tmp_path, log, 1.0, started))
    first.start()
    assert started.wait(60)
    second = ctx.Process(target=_load_or_train, args=(tmp_path, log, 2.0, started))
    second.start()
    for p in (first, second):
        p.join(120)
        assert p.exitcode == 0
    lines = log.read_text().splitlines()
    assert lines.count("trained") == 1
    assert sorted(ln for ln in lines if ln != "trained") == ["hit 1.0", "miss 1.0"]  # the reader got the full weights
    assert not list((tmp_path / "teachers").rglob("*.tmp"))


def test_unreadable_teacher_cache_entry_is_retrained_with_a_warning(tmp_path):
    calls = []

    def train_fn(model, work):
        calls.append(1)
        return {}

    teacher_cache.load_or_train(_Tiny(), key="k", cache_dir=tmp_path, train_fn=train_fn, describe={})
    (tmp_path / "teachers" / "k" / "teacher.pth").write_bytes(b"PK\x03\x04 cut short")
    with pytest.warns(teacher_cache.CacheWarning, match="teacher cache entry .* is unreadable and is retrained"):
        meta = teacher_cache.load_or_train(_Tiny(), key="k", cache_dir=tmp_path, train_fn=train_fn, describe={})
    assert meta["cached"] is False and len(calls) == 2
    assert teacher_cache.load_or_train(_Tiny(), key="k", cache_dir=tmp_path, train_fn=train_fn,
                                       describe={})["cached"] is True


@pytest.mark.slow
def test_two_harness_runs_share_a_results_folder_and_the_teacher(tmp_path):
    """As a parallel tox matrix does: two quick runs at once, one results folder, one cache."""
    env = subprocess_env(tmp_path / "cache", plugins="")
    procs = [subprocess.Popen(harness_cmd("run", "--method", "baseline", "--quick", "--seed", seed,
                                          "--results", tmp_path / "results", "--work-dir", tmp_path / f"w{seed}",
                                          "--cfg-options", "evaluate.mean_depth=False", "progress=False"),
                              env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    files = sorted((tmp_path / "results").glob("*.json"))
    assert [f.name for f in files] == ["baseline__synth__quick__seed0.json", "baseline__synth__quick__seed1.json"]
    teachers = [json.loads(f.read_text())["teacher"] for f in files]
    assert sorted(t["cached"] for t in teachers) == [False, True]  # trained once, under the lock
    assert teachers[0]["key"] == teachers[1]["key"]
    assert len(list((tmp_path / "cache" / "teachers").glob("*/teacher.pth"))) == 1
