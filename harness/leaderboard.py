"""Leaderboard tables built only from result files.

Rows are methods (seeds aggregated as mean ± std with the seed count); tables are grouped by
protocol id and results of different protocols are never ranked together. A missing value is
shown as ``–`` and never averaged.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from typing import Any

from tabulate import tabulate

from harness.errors import HarnessError

FORMATS = ("github", "latex", "csv")
COLUMNS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
MISSING = "–"
HIGHER_IS_BETTER = frozenset({"a1", "a2", "a3"})


def aggregate(results: list[dict[str, Any]], metric: str) -> dict[str, list[dict[str, Any]]]:
    """Group by protocol id, then by (method, profile); each row holds per-metric seed values.

    Besides the student rows, the teacher and mean-depth predictors of every run appear as
    reference rows (``<method>:teacher`` is merged into one ``teacher:<type>`` row).
    """
    groups: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for r in results:
        pid = r["protocol"].get("id", "?")
        for role, values in r["metrics"].items():
            if not isinstance(values, dict):
                continue
            if role == "student":
                label = r["method"]
            elif role == "teacher":
                label = f"teacher:{(r.get('teacher') or {}).get('type', '?')}"
            else:
                label = role
            key = (label, r.get("profile", "?"))
            row = groups[pid].setdefault(key, {"method": label, "profile": key[1], "seeds": {}, "role": role,
                                                "protocol": r["protocol"]})
            # one value per seed: reference rows repeat across methods of the same seed
            row["seeds"].setdefault(r["seed"], values)
    out = {}
    for pid, rows in groups.items():
        table = []
        for row in rows.values():
            stats = {}
            for col in set(COLUMNS) | {metric}:
                vals = [v.get(col) for v in row["seeds"].values()]
                if any(x is None or not isinstance(x, (int, float)) or not math.isfinite(x) for x in vals):
                    stats[col] = None  # never average over a missing cell
                    continue
                mean = sum(vals) / len(vals)
                std = math.sqrt(sum((x - mean) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
                stats[col] = (mean, std if len(vals) > 1 else None)
            table.append(dict(row, stats=stats, n=len(row["seeds"])))
        lower = metric not in HIGHER_IS_BETTER
        table.sort(key=lambda t: (t["role"] != "student", _sort_value(t["stats"].get(metric), lower)))
        out[pid] = table
    return out


def _sort_value(stat, lower: bool) -> float:
    if stat is None:
        return math.inf
    return stat[0] if lower else -stat[0]


def render(results: list[dict[str, Any]], fmt: str = "github", metric: str = "abs_rel") -> str:
    if fmt not in FORMATS:
        raise HarnessError(f"option --format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if not results:
        raise HarnessError("no result files found: run `harness run --method NAME` first")
    known = {k for r in results for v in r["metrics"].values() if isinstance(v, dict) for k in v}
    if metric not in known:
        raise HarnessError(f"option --metric: {metric!r} is not in the results (known: {', '.join(sorted(known))})")
    columns = list(COLUMNS) if metric in COLUMNS else [metric, *COLUMNS]
    parts = []
    for pid, table in aggregate(results, metric).items():
        proto = table[0]["protocol"]
        header = ["method", "seeds", *columns]
        rows = [[t["method"], t["n"], *(_cell(t["stats"].get(c), fmt) for c in columns)] for t in table]
        title = (f"protocol {pid}: {proto.get('dataset')}/{proto.get('split')}, crop={proto.get('crop')}, "
                 f"depth {proto.get('min_depth')}-{proto.get('max_depth')} m, scale={proto.get('scale')}, "
                 f"input {proto.get('resolution')}, profile {table[0]['profile']}")
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["protocol", *header])
            for row in rows:
                w.writerow([pid, *row])
            parts.append(buf.getvalue().rstrip("\n"))
        else:
            tablefmt = "github" if fmt == "github" else "latex_booktabs"
            intro = f"**{title}**\n" if fmt == "github" else f"% {title}\n"
            parts.append(intro + tabulate(rows, headers=header, tablefmt=tablefmt, disable_numparse=True))
    return "\n\n".join(parts) + "\n"


def _cell(stat, fmt: str) -> str:
    if stat is None:
        return MISSING
    mean, std = stat
    if fmt == "csv":
        return f"{mean:.4f}" if std is None else f"{mean:.4f}±{std:.4f}"
    if std is None:  # a single seed has no spread to show
        return f"{mean:.3f}"
    pm = "$\\pm$" if fmt == "latex" else "±"
    return f"{mean:.3f} {pm} {std:.3f}"
