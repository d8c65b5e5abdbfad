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


# --------------------------------------------------------------------------------------------
# robustness table (issue 9): `harness leaderboard --robustness`
# --------------------------------------------------------------------------------------------
ROBUSTNESS_SHORT = {
    "brightness": "bright", "dark": "dark", "fog": "fog", "frost": "frost", "snow": "snow", "contrast": "contr",
    "defocus_blur": "defoc", "glass_blur": "glass", "motion_blur": "motion", "zoom_blur": "zoom",
    "elastic_transform": "elast", "color_quant": "quant", "gaussian_noise": "gauss", "impulse_noise": "impul",
    "shot_noise": "shot", "iso_noise": "iso", "pixelate": "pixel", "jpeg_compression": "jpeg",
}


def _mean_std(vals: list) -> tuple[float, float | None] | None:
    if not vals or any(v is None or not isinstance(v, (int, float)) or not math.isfinite(v) for v in vals):
        return None  # never average over a missing cell
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in vals) / (len(vals) - 1))


def robustness_tables(results: list[dict[str, Any]], reference: str = "baseline") -> dict[tuple, dict[str, Any]]:
    """Group results with a ``robustness`` record by (protocol id, robustness spec id); per
    (method, profile) row, per seed: clean DEE, mDEE, mCE, RmCE, mRR, CE per corruption and
    AbsRel per weather set, then mean ± std over seeds.

    CE is recomputed here against ``reference``: ``"baseline"`` = the mean DEE over the seeds of
    the ``baseline`` rows of the same group and profile, or ``"robodepth_monodepth2"`` =
    RoboDepth's published table. Without a reference, CE cells are missing (mRR never needs one).
    """
    from harness import robustness

    groups: dict[tuple, dict[tuple, dict]] = defaultdict(dict)
    for r in results:
        rob = r.get("robustness")
        if not isinstance(rob, dict) or "per_corruption" not in rob:
            continue
        key = (r["protocol"].get("id", "?"), rob.get("spec_id", "?"))
        row = groups[key].setdefault((r["method"], r.get("profile", "?")), {})
        row.setdefault(r["seed"], r)
    out = {}
    for key, rows in groups.items():
        first = next(iter(next(iter(rows.values())).values()))
        spec = first["robustness"].get("spec", {})
        names = [n for n in ROBUSTNESS_SHORT if any(n in s["robustness"]["per_corruption"]
                                                    for seeds in rows.values() for s in seeds.values())]
        weathers = sorted({w for seeds in rows.values() for s in seeds.values()
                           for w in s["robustness"].get("weather", {})})
        table = []
        for (method, profile), seeds in rows.items():
            ref = _robustness_reference(rows, profile, reference, spec.get("dee", "dee2"))
            cols: dict[str, list] = defaultdict(list)
            for r in seeds.values():
                rob = r["robustness"]
                dees = {n: p["dee"] for n, p in rob["per_corruption"].items()}
                summ = robustness.summarize(rob["clean"]["dee"], dees, ref)
                cols["clean DEE"].append(rob["clean"]["dee"])
                for k in ("mDEE", "mCE", "RmCE", "mRR"):
                    cols[k].append(summ[k])
                for n in names:
                    cols[n].append((summ["per_corruption"].get(n) or {}).get("ce"))
                for w in weathers:
                    cols[w].append((rob.get("weather", {}).get(w) or {}).get("abs_rel"))
            stats = {k: _mean_std(v) for k, v in cols.items()}
            table.append({"method": method, "profile": profile, "n": len(seeds), "stats": stats,
                          "protocol": first["protocol"], "reference": None if ref is None else reference})
        table.sort(key=lambda t: (_sort_value(t["stats"].get("mCE"), True), _sort_value(t["stats"].get("mDEE"), True)))
        out[key] = {"rows": table, "names": names, "weathers": weathers, "spec": spec}
    return out


def _robustness_reference(rows: dict, profile: str, reference: str, kind: str) -> dict[str, float] | None:
    from harness import robustness

    if reference != "baseline":
        return robustness.reference_table(reference, kind)
    seeds = rows.get(("baseline", profile))
    if not seeds:
        return None
    recs = [r["robustness"] for r in seeds.values()]
    common = set.intersection(*(set(rec["per_corruption"]) for rec in recs))
    table = {n: sum(rec["per_corruption"][n]["dee"] for rec in recs) / len(recs) for n in common}
    table["clean"] = sum(rec["clean"]["dee"] for rec in recs) / len(recs)
    return table


def render_robustness(results: list[dict[str, Any]], fmt: str = "github", reference: str = "baseline") -> str:
    """The robustness leaderboard: one table per (protocol, robustness spec), rows sorted by mCE."""
    if fmt not in FORMATS:
        raise HarnessError(f"option --format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if not results:
        raise HarnessError("no result files found: run `harness run --method NAME` first")
    groups = robustness_tables(results, reference)
    if not groups:
        raise HarnessError("no result has robustness metrics: run `harness run --method NAME --eval-robustness`")
    parts = []
    for (pid, sid), g in groups.items():
        proto, spec = g["rows"][0]["protocol"], g["spec"]
        header = ["method", "seeds", "clean DEE", "mDEE", "mCE %", "RmCE %", "mRR %",
                  *(f"CE {ROBUSTNESS_SHORT[n]}" for n in g["names"]), *(f"{w} AbsRel" for w in g["weathers"])]
        keys = ["clean DEE", "mDEE", "mCE", "RmCE", "mRR", *g["names"], *g["weathers"]]
        digits = {"mCE": 2, "RmCE": 2, "mRR": 2}
        rows = [[t["method"], t["n"], *(_rcell(t["stats"].get(k), fmt, digits.get(k, 3)) for k in keys)]
                for t in g["rows"]]
        title = (f"robustness, protocol {pid} ({proto.get('dataset')}/{proto.get('split')}, input "
                 f"{proto.get('resolution')}), spec {sid}: {len(spec.get('conditions', []))} conditions, "
                 f"{spec.get('frames')} frames, corruption seed {spec.get('seed')}, {spec.get('dee')}, "
                 f"CE reference {reference}, profile {g['rows'][0]['profile']}")
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["protocol", "spec", *header])
            for row in rows:
                w.writerow([pid, sid, *row])
            parts.append(buf.getvalue().rstrip("\n"))
        else:
            tablefmt = "github" if fmt == "github" else "latex_booktabs"
            intro = f"**{title}**\n" if fmt == "github" else f"% {title}\n"
            parts.append(intro + tabulate(rows, headers=header, tablefmt=tablefmt, disable_numparse=True))
    return "\n\n".join(parts) + "\n"


def _rcell(stat, fmt: str, digits: int) -> str:
    if stat is None:
        return MISSING
    mean, std = stat
    if fmt == "csv":
        return f"{mean:.{digits + 1}f}" if std is None else f"{mean:.{digits + 1}f}±{std:.{digits + 1}f}"
    if std is None:
        return f"{mean:.{digits}f}"
    pm = "$\\pm$" if fmt == "latex" else "±"
    return f"{mean:.{digits}f} {pm} {std:.{digits}f}"
