"""Leaderboard cells built from per-frame data: ``Δ vs control`` and the per-drive tables.

A row's results (one per seed) carry ``per_frame`` (see :mod:`harness.report.results`) and the
method's ``control`` (``{"method", "profile"}``); the control row is looked up in the same
table (same protocol and training budget), and the two are paired frame by frame
(:func:`harness.report.stats.paired_delta`). Results written before per-frame metrics existed
get the :data:`NO_PER_FRAME` marker instead of a number.
"""
from __future__ import annotations

import re
from typing import Any

from harness.report import stats
from harness.report.table import Column, Table

NO_PER_FRAME = "no per-frame data"
NO_CONTROL_ROW = "control not in table"


def per_frame_of(result: dict[str, Any], role: str) -> dict | None:
    """A result's per-frame test record of ``role`` (``student``: ``per_frame.test``; the
    reference rows: ``per_frame.<role>.test``)."""
    pf = result.get("per_frame")
    if not isinstance(pf, dict):
        return None
    rec = pf.get("test") if role == "student" else (pf.get(role) or {}).get("test")
    return rec if isinstance(rec, dict) else None


def row_frames(row: dict[str, Any], metric: str) -> list[dict[str, float]] | None:
    """``{frame: value}`` per seed of a leaderboard row, None when any seed has no per-frame data."""
    runs = [stats.frame_values(per_frame_of(r, row["role"]), metric) for r in row["results"].values()]
    return None if not runs or any(v is None for v in runs) else runs


def row_control(row: dict[str, Any]) -> tuple[bool, dict | None]:
    """(recorded, control) of a student row: whether its results record a control at all (files
    before controls existed do not), and the first seed's ``{"method", "profile"}`` or None."""
    first = row["results"][min(row["results"])]
    return "control" in first, first.get("control")


def fill_delta_cells(rows: list[dict[str, Any]], metric: str) -> None:
    """Set ``control``, ``delta`` and ``delta_p`` cells (and ``row["delta"]``) of every student row."""
    students = {(t["method"], t["profile"]): t for t in rows if t["role"] == "student"}
    for t in rows:
        t["cells"].update(control=None, delta=None, delta_p=None)
        if t["role"] != "student":
            continue
        recorded, control = row_control(t)
        own = row_frames(t, metric)
        if control is not None:
            t["cells"]["control"] = f"{control.get('method')}/{control.get('profile')}"
        if own is None or not recorded:
            t["cells"]["delta"] = NO_PER_FRAME
            continue
        if control is None:
            continue
        ref = students.get((control.get("method"), control.get("profile")))
        if ref is None:
            t["cells"]["delta"] = NO_CONTROL_ROW
            continue
        other = row_frames(ref, metric)
        if other is None:
            t["cells"]["delta"] = f"control: {NO_PER_FRAME}"
            continue
        out = stats.paired_delta(own, other)
        if out is None:
            t["cells"]["delta"] = "no common frames"
            continue
        t["delta"] = out
        t["cells"]["delta"] = (out["delta"], *out["ci"])
        t["cells"]["delta_p"] = out["p"]


def delta_columns(metric: str) -> list[Column]:
    return [Column("control", "control", "text"),
            Column("delta", f"Δ {metric} vs control [95% CI]", "delta", None),
            Column("delta_p", "p (Wilcoxon)", "float", None)]


def short_drive(drive: str) -> str:
    """``2011_09_26/2011_09_26_drive_0040_sync`` -> ``0040`` (else the last path part)."""
    m = re.search(r"drive_(\d+)", drive)
    return m.group(1) if m else drive.rsplit("/", 1)[-1]


def per_drive_table(table: Table, metric: str) -> Table | None:
    """One row per leaderboard row with per-frame data: the mean of ``metric`` on each test drive
    (seeds pooled); a drive more than 50 % off the row's median drive is flagged (``row["flags"]``), so an
    outlier drive shows at a glance. None when no row has per-frame data."""
    rows, drives = [], set()
    for t in table.rows:
        runs = row_frames(t, metric)
        if runs is None:
            continue
        means = stats.per_drive_means(stats.pool_seeds(runs))
        drives |= set(means)
        rows.append({"role": t["role"], "cells": {"method": t["cells"]["method"], "profile": t["cells"]["profile"],
                                                  **{f"d:{d}": v for d, v in means.items()}}})
    if not rows:
        return None
    order = sorted(drives)
    for r in rows:
        values = sorted(v for k, v in r["cells"].items() if k.startswith("d:"))
        median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
        r["flags"] = {k for k, v in r["cells"].items() if k.startswith("d:") and abs(v - median) > 0.5 * abs(median)}
    columns = [Column("method", "method", "text"), Column("profile", "profile", "text"),
               *(Column(f"d:{d}", short_drive(d), "float", None) for d in order)]
    notes = [f"per-drive mean {metric} on the test split (seeds pooled); * = more than 50 % off the row's median drive"]
    return Table(key=table.key, title=f"per drive: {table.title}", columns=columns, rows=rows, notes=notes,
                 budget=table.budget)
