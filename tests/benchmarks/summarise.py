"""Print the README's benchmark table from a pytest-benchmark JSON file.

    python -m pytest tests/benchmarks --benchmark-enable --benchmark-json tests/benchmarks/results/cpu.json
    python tests/benchmarks/summarise.py tests/benchmarks/results/cpu.json

One row per benchmark: its median seconds per round and the figures it records in
``extra_info`` (throughputs and ratios); nothing is typed by hand.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

#: extra_info keys shown, in this order, with their column label
FIGURES = {
    "step_ratio": "harness/bare step",
    "step_ratio_cpu": "… CPU time",
    "control_ratio": "bare/bare control",
    "control_ratio_cpu": "… CPU time",
    "epoch_ratio": "harness/bare epoch",
    "stage_ratio": "harness/bare stage",
    "epoch_end_s": "epoch-end s",
    "images_per_s": "images/s",
    "loader_over_model": "loader/model",
    "frames_per_second": "frames/s",
    "ms_per_image": "ms/image",
    "speedup": "speedup",
}


def _fmt(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(report: dict) -> str:
    rows = ["| benchmark | median s/round | figures |", "|---|---:|---|"]
    for bench in report["benchmarks"]:
        info = bench.get("extra_info", {})
        figures = "; ".join(f"{label} {_fmt(info[key])}" for key, label in FIGURES.items() if key in info)
        rows.append(f"| `{bench['name']}` | {bench['stats']['median']:.4f} | {figures} |")
    machine = report.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw", "unknown CPU")
    head = f"{report.get('datetime', '')[:10]}, {cpu}, Python {machine.get('python_version', '?')}"
    return head + "\n\n" + "\n".join(rows) + "\n"


STEP_PARTS = ("student", "teacher", "strategy modules", "losses", "backward", "optimizer")


def step_cost_table(report: dict) -> str:
    """The per-method step cost table (``test_step_cost_benchmark.py``): the step / baseline
    step ratio and the median seconds of each part; empty when the report has none."""
    rows = []
    for bench in report["benchmarks"]:
        info = bench.get("extra_info", {})
        if "parts" not in info:
            continue
        method = bench.get("params", {}).get("method", bench["name"])
        parts = " | ".join(f"{info['parts'].get(p, 0.0):.3f}" for p in STEP_PARTS)
        rows.append(f"| {method} ({info.get('stage', '')}) | {info['ratio']:.2f} | {info['step_s']:.3f} | "
                    f"{info['baseline_step_s']:.3f} | {parts} |")
    if not rows:
        return ""
    head = ["| method (stage) | step / baseline | step s | baseline s | " + " | ".join(f"{p} s" for p in STEP_PARTS) + " |",
            "|---|---:|---:|---:|" + "---:|" * len(STEP_PARTS)]
    return "\n".join(head + rows) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: summarise.py BENCHMARK_JSON", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"summarise.py: {path}: not a readable pytest-benchmark JSON ({exc})", file=sys.stderr)
        return 1
    sys.stdout.write(table(report))
    steps = step_cost_table(report)
    if steps:
        sys.stdout.write("\n" + steps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
