"""Leaderboard tables built only from result files.

Rows are (method, profile) pairs with their seeds aggregated as mean ± sample std and the seed
count; tables are grouped by protocol id and training budget (:func:`harness.report.results.budget_of`)
and results of different protocols or budgets are never ranked together. A row with fewer seeds
than the best-covered row is marked and ranked after every row with more. Each method row
shows ``Δ vs control`` (:mod:`harness.report.compare`; docs/results.md). A missing value is
shown as ``–`` and never averaged. Beside the metrics: the paper's
reported number where its protocol id equals the table's (:mod:`harness.report.paper`) and cost
columns (:mod:`harness.report.cost`) for every student and teacher row. Formats: github, latex
(booktabs, best student value bold), csv (raw numbers, ``_std`` columns) and html
(:mod:`harness.report.html`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable

from harness.errors import HarnessError
from harness.report.compare import NO_PER_FRAME, delta_columns, fill_delta_cells, per_drive_table
from harness.report.results import TABLE_METRICS, budget_of
from harness.report.table import MISSING, Column, Table, to_csv, to_github, to_latex

FORMATS = ("github", "latex", "csv", "html")
COLUMNS = TABLE_METRICS
HIGHER_IS_BETTER = frozenset({"a1", "a2", "a3"})
# cost columns: (key, header, kind, digits, record field, scale)
COST_COLUMNS = (
    ("params", "params", "count", 3, "params", 1.0),
    ("gflops", "GFLOPs", "float", 2, "flops", 1e-9),
    ("cpu_ms", "CPU ms", "float", 1, "latency_ms", 1.0),
    ("gpu_ms", "GPU ms", "float", 2, "latency_gpu_ms", 1.0),
    ("peak_mb", "peak MB", "float", 1, "peak_mem_mb", 1.0),
    ("gpu_peak_mb", "GPU peak MB", "float", 1, "peak_mem_gpu_mb", 1.0),
)
OPTIONAL_COST = frozenset({"gpu_ms", "gpu_peak_mb"})  # shown only when some row was measured on a GPU

CostFn = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def _row_key(r: dict[str, Any], role: str) -> tuple[str, str, Any]:
    """(label, profile, identity) of the row a result's ``role`` joins. A frozen teacher from the
    cache and the training-set mean depth map are one model per table (identity: the cache key,
    the training data), whatever profile or seed scored them; an online teacher is trained by
    each run, a row per (method, profile) with real seeds."""
    profile = r.get("profile", "?")
    if role == "student":
        return r["method"], profile, None
    if role == "teacher":
        t = r.get("teacher") or {}
        label = f"teacher:{t.get('type', '?')}"
        if "cached" in t and t.get("mode") != "online":
            return label, "", ("cached", t.get("key"))
        return label, profile, None
    fingerprint = ((r.get("datasets") or {}).get("train") or {}).get("fingerprint")
    return (role, "", ("data", fingerprint)) if fingerprint else (role, profile, None)


def aggregate(results: list[dict[str, Any]], metric: str, metrics: list[str] | None = None) -> dict[tuple, list]:
    """Group by (protocol id, training budget id), then by row; each row holds per-metric seed
    values. Besides the student rows, the teacher and mean-depth predictors of every run appear
    as reference rows (``<method>:teacher`` is merged into one ``teacher:<type>`` row)."""
    groups: dict[tuple, dict[tuple, dict[str, Any]]] = defaultdict(dict)
    for r in results:
        gid = (r["protocol"].get("id", "?"), budget_of(r)["id"])
        for role, values in r["metrics"].items():
            if not isinstance(values, dict):
                continue
            label, profile, identity = _row_key(r, role)
            key = (label, profile) if identity is None else (label, identity)
            row = groups[gid].setdefault(key, {"method": label, "profile": profile, "seeds": {}, "results": {},
                                               "role": role, "protocol": r["protocol"], "budget": budget_of(r),
                                               "single": identity is not None, "profiles": set()})
            row["profiles"].add(r.get("profile", "?"))
            # one value per seed: reference rows repeat across methods of the same seed
            row["seeds"].setdefault(r["seed"], values)
            row["results"].setdefault(r["seed"], r)
    columns = set(metrics or COLUMNS) | {metric}
    out = {}
    for gid, rows in groups.items():
        table = []
        for row in rows.values():
            if row["single"]:  # one model: its (identical) value once, no seed spread
                first = row["seeds"][min(row["seeds"])]
                stats = {col: _mean_std([first.get(col)]) for col in columns}
                n = None
                profiles = sorted(row["profiles"])
                row["profile"] = ", ".join(profiles) if len(profiles) <= 2 else f"{len(profiles)} profiles"
            else:
                stats = {col: _mean_std([v.get(col) for v in row["seeds"].values()]) for col in columns}
                n = len(row["seeds"])
            table.append(dict(row, stats=stats, n=n))
        most = max((t["n"] or 0 for t in table if t["role"] == "student"), default=0)
        for t in table:
            t["unranked"] = t["role"] == "student" and (t["n"] or 0) < most
        lower = metric not in HIGHER_IS_BETTER
        # fewer seeds than the best-covered row: never ranked above a row with more
        table.sort(key=lambda t: (t["role"] != "student", -(t["n"] or 0), _sort_value(t["stats"].get(metric), lower),
                                  t["method"]))
        out[gid] = table
    return out


def _sort_value(stat, lower: bool) -> float:
    if stat is None:
        return math.inf
    return stat[0] if lower else -stat[0]


def budget_text(budget: dict[str, Any]) -> str:
    return (f"training budget {budget.get('id')}: {budget.get('epochs')} epochs x batch {budget.get('batch_size')} "
            f"over {budget.get('train_frames')} training frames")


def parse_metrics(text: str | None) -> list[str] | None:
    """``--metrics a,b,...`` -> the metric columns in that order (None: the default columns)."""
    if text is None:
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise HarnessError(f"option --metrics: {text!r} names no metric (e.g. --metrics abs_rel,silog)")
    return list(dict.fromkeys(names))


def build_tables(results: list[dict[str, Any]], metric: str = "abs_rel", costs: CostFn | None = None,
                 papers: dict[str, list[dict]] | None = None, metrics: list[str] | None = None) -> list[Table]:
    """One :class:`Table` per (protocol id, training budget). ``metric`` ranks the rows;
    ``metrics`` are the metric columns (default :data:`COLUMNS`, the ranking metric first when
    it is not one of them). ``costs(result)`` gives ``{"student": {...}, "teacher": {...}}`` (no
    cost columns when None); ``papers`` maps method -> paper entries."""
    from harness.report.paper import reported_for

    if not results:
        raise HarnessError("no result files found: run `harness run --method NAME` first")
    known = {k for r in results for v in r["metrics"].values() if isinstance(v, dict) for k in v}
    if metric not in known:
        raise HarnessError(f"option --metric: {metric!r} is not in the results (known: {', '.join(sorted(known))})")
    unknown = [m for m in metrics or () if m not in known]
    if unknown:
        raise HarnessError(f"option --metrics: {', '.join(map(repr, unknown))} not in the results "
                           f"(known: {', '.join(sorted(known))})")
    base = list(metrics) if metrics else list(COLUMNS)
    shown = base if metric in base else [metric, *base]
    tables = []
    for (pid, bid), rows in aggregate(results, metric, shown).items():
        reported = {t["method"]: reported_for(papers or {}, t["method"], pid) for t in rows if t["role"] == "student"}
        paper_cols = [c for c in shown if c == metric or any(c in rep for rep in reported.values())]
        columns = [Column("method", "method", "text"), Column("profile", "profile", "text"),
                   Column("seeds", "seeds", "int")]
        columns += [Column(c, c, "stat", "higher" if c in HIGHER_IS_BETTER else "lower") for c in shown]
        columns += delta_columns(metric)
        columns += [Column(f"paper_{c}", f"{c} (paper)", "float") for c in paper_cols]
        for t in rows:
            t["cells"] = {"method": t["method"], "profile": t["profile"], "seeds": t["n"],
                          **{c: t["stats"].get(c) for c in shown},
                          **{f"paper_{c}": reported.get(t["method"], {}).get(c) for c in paper_cols}}
            if t["unranked"]:
                t["flags"] = {"seeds"}
        fill_delta_cells(rows, metric)
        if costs is not None:
            columns += _cost_columns(rows, costs)
        proto = rows[0]["protocol"]
        title = (f"protocol {pid}: {proto.get('dataset')}/{proto.get('split')}, GT {proto.get('gt_source')}, "
                 f"crop={proto.get('crop')}, depth {proto.get('min_depth')}-{proto.get('max_depth')} m, "
                 f"scale={proto.get('scale')}, flip_pp={proto.get('flip_pp')}, input {proto.get('resolution')}; "
                 f"{budget_text(rows[0]['budget'])}")
        notes = [f"ranked by {metric}; mean ± std over seeds; {MISSING} = missing, never averaged; reference "
                 "rows (a cached teacher, the mean depth map) are one model each, scored once"]
        if any(t["unranked"] for t in rows):
            notes.append("seeds* = fewer seeds than the best-covered row: ranked after every row with more, never bold")
        notes.append(f"Δ vs control: {metric} of the row minus its like-for-like control's on the same test "
                     "frames (seeds pooled), 95 % bootstrap CI over drives, paired Wilcoxon p over per-drive "
                     f"means; '{NO_PER_FRAME}': results written before per-frame metrics were recorded")
        if costs is not None:
            notes.append("cost at batch 1 and the input resolution: FLOPs of one forward pass, median latency, "
                         "peak tensor memory; T/S = teacher FLOPs / student FLOPs of the run's config")
        tables.append(Table(key=pid, title=title, columns=columns, rows=rows, notes=notes, budget=bid))
    return tables


def _cost_columns(rows: list[dict[str, Any]], costs: CostFn) -> list[Column]:
    """Fill cost cells of ``rows`` (student and teacher rows) and return the cost columns."""
    for t in rows:
        first = t["results"][min(t["results"])]
        record = costs(first) if t["role"] in ("student", "teacher") else None
        own = (record or {}).get(t["role"]) or {}
        for key, _, _, _, field, scale in COST_COLUMNS:
            value = own.get(field)
            t["cells"][key] = value * scale if isinstance(value, (int, float)) else None
        teacher = (record or {}).get("teacher") or {}
        ratio = None
        if t["role"] == "student" and teacher.get("flops") and own.get("flops"):
            ratio = teacher["flops"] / own["flops"]
        t["cells"]["ts_flops"] = ratio
    columns = [Column(key, header, kind, None, digits) for key, header, kind, digits, _, _ in COST_COLUMNS
               if key not in OPTIONAL_COST or any(t["cells"][key] is not None for t in rows)]
    return [*columns, Column("ts_flops", "T/S FLOPs", "ratio", None, 1)]


def render(results: list[dict[str, Any]], fmt: str = "github", metric: str = "abs_rel",
           costs: CostFn | None = None, papers: dict[str, list[dict]] | None = None,
           metrics: list[str] | None = None, per_drive: bool = False) -> str:
    """The leaderboard as text. ``per_drive`` adds, after each table, the per-drive values of
    ``metric`` (the HTML page always has them)."""
    if fmt not in FORMATS:
        raise HarnessError(f"option --format: {fmt!r} is not one of {', '.join(FORMATS)}")
    tables = build_tables(results, metric, costs, papers, metrics)
    if per_drive or fmt == "html":
        tables = [x for t in tables for x in (t, per_drive_table(t, metric)) if x is not None]
    if fmt == "csv":
        return to_csv(tables)
    if fmt == "html":
        from harness.report.html import to_html

        return to_html(tables, meta=f"Built by `harness leaderboard` from {len(results)} result files; "
                                    f"{len(tables)} table(s).")
    write = to_github if fmt == "github" else to_latex
    return "\n\n".join(write(t) for t in tables) + "\n"


def _mean_std(vals: list) -> tuple[float, float | None] | None:
    if not vals or any(v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                       for v in vals):
        return None  # never average over a missing cell
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in vals) / (len(vals) - 1))


# --------------------------------------------------------------------------------------------
# robustness table: `harness leaderboard --robustness`
# --------------------------------------------------------------------------------------------
ROBUSTNESS_SHORT = {
    "brightness": "bright", "dark": "dark", "fog": "fog", "frost": "frost", "snow": "snow", "contrast": "contr",
    "defocus_blur": "defoc", "glass_blur": "glass", "motion_blur": "motion", "zoom_blur": "zoom",
    "elastic_transform": "elast", "color_quant": "quant", "gaussian_noise": "gauss", "impulse_noise": "impul",
    "shot_noise": "shot", "iso_noise": "iso", "pixelate": "pixel", "jpeg_compression": "jpeg",
}


def robustness_tables(results: list[dict[str, Any]], reference: str = "baseline") -> dict[tuple, dict[str, Any]]:
    """Group results with a ``robustness`` record by (protocol id, robustness spec id, training
    budget id); per
    (method, profile) row, per seed: clean DEE, mDEE, mCE, RmCE, mRR, CE per corruption and
    AbsRel per weather set, then mean ± std over seeds.

    CE is recomputed here against ``reference``: ``"baseline"`` = the mean DEE over the seeds of
    ONE ``baseline`` profile of the same group (the row's own profile, else the only one; see
    :func:`harness.eval.robustness.choose_reference_profile`), ``"baseline:PROFILE"`` = that profile's,
    or ``"robodepth_monodepth2"`` = RoboDepth's published table. Without a reference (none, or
    several baseline profiles and none chosen), CE cells are missing (mRR never needs one).
    """
    from harness.eval import robustness

    ref_kind, wanted = robustness.parse_reference(reference, "option --robustness-reference")
    groups: dict[tuple, dict[tuple, dict]] = defaultdict(dict)
    for r in results:
        rob = r.get("robustness")
        if not isinstance(rob, dict) or "per_corruption" not in rob:
            continue
        key = (r["protocol"].get("id", "?"), rob.get("spec_id", "?"), budget_of(r)["id"])
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
            ref = _robustness_reference(rows, profile, ref_kind, wanted, spec.get("dee", "dee2"))
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
                          "protocol": first["protocol"], "budget": budget_of(first),
                          "reference": None if ref is None else reference})
        table.sort(key=lambda t: (_sort_value(t["stats"].get("mCE"), True), _sort_value(t["stats"].get("mDEE"), True)))
        out[key] = {"rows": table, "names": names, "weathers": weathers, "spec": spec}
    return out


def _robustness_reference(rows: dict, profile: str, ref_kind: str, wanted: str | None,
                          kind: str) -> dict[str, float] | None:
    """The CE reference table of a row of ``profile``: a published table, or the mean DEE of one
    ``baseline`` profile of the group (see :func:`harness.eval.robustness.choose_reference_profile`)."""
    from harness.eval import robustness

    if ref_kind != "baseline":
        return robustness.reference_table(ref_kind, kind)
    chosen = robustness.choose_reference_profile([p for m, p in rows if m == "baseline"], profile, wanted)
    if chosen is None:
        return None
    return robustness.mean_dee_table([r["robustness"] for r in rows[("baseline", chosen)].values()])


def render_robustness(results: list[dict[str, Any]], fmt: str = "github", reference: str = "baseline") -> str:
    """The robustness leaderboard: one table per (protocol, robustness spec), rows sorted by mCE."""
    from harness.eval.robustness import parse_reference

    if fmt not in FORMATS:
        raise HarnessError(f"option --format: {fmt!r} is not one of {', '.join(FORMATS)}")
    parse_reference(reference, "option --robustness-reference")  # before the emptiness check
    if not results:
        raise HarnessError("no result files found: run `harness run --method NAME` first")
    groups = robustness_tables(results, reference)
    if not groups:
        raise HarnessError("no result has robustness metrics: run `harness run --method NAME --eval-robustness`")
    tables = []
    for (pid, sid, bid), g in groups.items():
        proto, spec = g["rows"][0]["protocol"], g["spec"]
        columns = [Column("method", "method", "text"), Column("profile", "profile", "text"), Column("seeds", "seeds", "int"),
                   Column("clean DEE", "clean DEE", "stat", "lower"),
                   Column("mDEE", "mDEE", "stat", "lower"), Column("mCE", "mCE %", "stat", "lower", 2),
                   Column("RmCE", "RmCE %", "stat", "lower", 2), Column("mRR", "mRR %", "stat", "higher", 2),
                   *(Column(n, f"CE {ROBUSTNESS_SHORT[n]}", "stat", "lower") for n in g["names"]),
                   *(Column(w, f"{w} AbsRel", "stat", "lower") for w in g["weathers"])]
        rows = [{"role": "student", "cells": dict(t["stats"], method=t["method"], profile=t["profile"], seeds=t["n"])}
                for t in g["rows"]]
        title = (f"robustness, protocol {pid} ({proto.get('dataset')}/{proto.get('split')}, input "
                 f"{proto.get('resolution')}), spec {sid}: {len(spec.get('conditions', []))} conditions, "
                 f"{spec.get('frames')} frames, corruption seed {spec.get('seed')}, {spec.get('dee')}, "
                 f"CE reference {reference}; {budget_text(g['rows'][0]['budget'])}")
        tables.append(Table(key=f"{pid}/{sid}", title=title, columns=columns, rows=rows, budget=bid))
    if fmt == "csv":
        return to_csv(tables, lead=("protocol", "spec"))
    if fmt == "html":
        from harness.report.html import to_html

        return to_html(tables, title="stereodistill robustness leaderboard")
    write = to_github if fmt == "github" else to_latex
    return "\n\n".join(write(t) for t in tables) + "\n"
