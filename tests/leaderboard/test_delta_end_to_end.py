"""End to end: a method and its declared control, two quick runs on tiny data, and the
leaderboard's Δ vs control with its bootstrap CI and Wilcoxon p (and the per-drive table)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_method_and_control_runs_give_delta_with_ci_and_p(tmp_path):
    env = dict(os.environ, STEREODISTILL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               STEREODISTILL_PLUGINS="tests.plugins.controlled_method",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    res = tmp_path / "results"
    tiny = ["--cfg-options", "data.generate.frames_per_drive=4", "evaluate.teacher=False", "progress=False"]

    def harness(*args):
        out = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    for method in ("controlled", "baseline"):  # the method, then its declared control (baseline, same profile)
        harness("run", "--method", method, "--quick", "--results", str(res), "--work-dir", str(tmp_path / method), *tiny)
    method = json.loads((res / "controlled__synth__quick__seed0.json").read_text())
    control = json.loads((res / "baseline__synth__quick__seed0.json").read_text())
    assert method["control"] == {"method": "baseline", "profile": "quick"} and control["control"] is None
    assert method["budget"] == control["budget"] and method["budget"]["epochs"] == 1
    frames = method["per_frame"]["test"]["frames"]
    assert frames == control["per_frame"]["test"]["frames"] and len(frames) == method["metrics"]["student"]["num_images"]
    assert all(re.fullmatch(r".+_drive_\d+_sync/\d{10}", f) for f in frames)
    drives = {f.rsplit("/", 1)[0] for f in frames}
    assert len(drives) >= 2
    per_image = method["per_frame"]["test"]["abs_rel"]
    assert sum(per_image) / len(per_image) == pytest.approx(method["metrics"]["student"]["abs_rel"], abs=1e-5)
    assert len(method["per_frame"]["mean_depth"]["test"]["abs_rel"]) == len(frames)

    text = harness("leaderboard", "--results", str(res), "--no-cost", "--per-drive")
    row = next(ln for ln in text.splitlines() if ln.startswith("| controlled "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    delta = method["metrics"]["student"]["abs_rel"] - control["metrics"]["student"]["abs_rel"]
    m = re.search(r"([+-]\d\.\d{3}) \[([+-]\d\.\d{3}), ([+-]\d\.\d{3})\]", row)
    assert m and float(m.group(1)) == pytest.approx(delta, abs=1e-3)
    assert float(m.group(2)) <= float(m.group(1)) <= float(m.group(3))
    assert "baseline/quick" in cells
    p = float(cells[cells.index(m.group(0)) + 1])
    assert 0 < p <= 1
    per_drive = text.split("**per drive:")[1]
    assert all(d.rsplit("drive_", 1)[1][:4] in per_drive for d in drives)  # one column per test drive
