"""Small fake result files for the leaderboard tests."""
from __future__ import annotations

import json
from pathlib import Path

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
PROTOCOL = {"dataset": "synth", "split": "test", "gt_source": "dense", "crop": "none", "min_depth": 0.001,
            "max_depth": 80.0, "scale": "none", "flip_pp": False, "resolution": [96, 320]}


def fake_result(method: str, seed: int, abs_rel: float, *, pid: str = "p1", profile: str = "synth_small",
                a1: float = 0.9, drop: tuple[str, ...] = (), cost: dict | None = None, teacher: str = "stereo") -> dict:
    student = {"abs_rel": abs_rel, "sq_rel": 0.5, "rmse": 3.0, "rmse_log": 0.2, "a1": a1, "a2": 0.95, "a3": 0.98}
    for k in drop:
        student.pop(k)
    result = {
        "schema_version": 1, "method": method, "seed": seed, "profile": profile,
        "protocol": dict(PROTOCOL, id=pid), "datasets": {"test": {"name": "synth"}},
        "metrics": {"student": student,
                    "teacher": {"abs_rel": 0.05, "sq_rel": 0.1, "rmse": 1.0, "rmse_log": 0.1, "a1": 0.97, "a2": 0.99, "a3": 1.0}},
        "teacher": {"type": teacher, "key": "k0"},
        "config": {"student": {"type": "resnet"}, "teacher": {"type": teacher}},
    }
    if cost is not None:
        result["cost"] = cost
    return result


def write(results_dir: Path, result: dict) -> Path:
    path = Path(results_dir) / f"{result['method']}__{result['profile']}__{result['protocol']['id']}__seed{result['seed']}.json"
    path.write_text(json.dumps(result))
    return path


COST = {"student": {"params": 1_000_000, "flops": 2_000_000_000, "latency_ms": 10.0, "peak_mem_mb": 5.0},
        "teacher": {"params": 3_000_000, "flops": 8_000_000_000, "latency_ms": 30.0, "peak_mem_mb": 20.0}}
