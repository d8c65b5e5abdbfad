"""End to end: ``torchrun --nproc_per_node 2 -m harness.cli run ... --launcher pytorch`` on CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torchrun_two_cpu_processes_quick_run(tmp_path):
    port = 29500 + os.getpid() % 2000
    env = dict(os.environ, STEREODISTILL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "harness.cli", "run", "--method", "baseline", "--quick", "--device", "cpu",
           "--launcher", "pytorch", "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
           "--cfg-options", "progress=False"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = [ln for ln in out.stdout.splitlines() if ln.startswith("baseline:")]
    assert len(summary) == 1, out.stdout  # rank 0 reports, rank 1 stays quiet
    files = list((tmp_path / "results").glob("*.json"))
    assert len(files) == 1
    result = json.loads(files[0].read_text())
    res = result["resources"]
    assert res["launcher"] == "pytorch" and res["world_size"] == 2 and len(res["per_rank"]) == 2
    assert all(r["peak_rss_mb"] > 0 for r in res["per_rank"])
    assert result["val"]["student"]["abs_rel"] > 0 and result["metrics"]["student"]["num_images"] > 0
    assert (tmp_path / "work" / "student" / "epoch_1.pth").is_file()
    assert not (tmp_path / ".dist_test").exists()  # metrics are gathered in memory, not via a temp dir
