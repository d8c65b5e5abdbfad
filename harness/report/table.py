"""A leaderboard table as data (columns with a direction, rows of cells) and its text formats.

A cell is ``None`` (missing: shown as ``–``, never averaged), a ``(mean, std | None)`` pair
(``std`` is None for a single seed), a ``(delta, low, high)`` triple (kind ``delta``: a
difference with its confidence interval), a number, or text (a marker such as "no per-frame
data" in any column). The HTML page is in
:mod:`harness.report.html`.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

MISSING = "–"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "stat"  # stat (mean ± std) | int | count (1.23M) | float | ratio (2.5×) | delta | text
    better: str | None = None  # "lower" | "higher" | None (not ranked, never bold)
    digits: int = 3


@dataclass
class Table:
    key: str  # protocol id (plus spec id for robustness tables)
    title: str
    columns: list[Column]
    # {"cells": {column key: cell}, "role": "student" | "teacher" | ..., optional "flags": {column
    # keys shown with a trailing "*"} and "unranked": True (never bold)}
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    budget: str = ""  # the training budget's id (tables of one protocol split by budget)


def mean_of(cell) -> float | None:
    """The number a cell is ranked and sorted by (None when missing or text)."""
    if cell is None or isinstance(cell, str):
        return None
    value = cell[0] if isinstance(cell, tuple) else cell
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def format_cell(cell, col: Column, fmt: str) -> str:
    """``fmt``: ``github`` | ``latex`` | ``html`` (CSV writes raw numbers, see :func:`to_csv`)."""
    if cell is None:
        return MISSING
    if col.kind == "text" or isinstance(cell, str):
        return str(cell)
    if col.kind == "delta":
        delta, lo, hi = cell
        return f"{delta:+.{col.digits}f} [{lo:+.{col.digits}f}, {hi:+.{col.digits}f}]"
    if col.kind == "int":
        return str(int(cell))
    if col.kind == "stat":
        mean, std = cell if isinstance(cell, tuple) else (cell, None)
        if std is None:
            return f"{mean:.{col.digits}f}"
        pm = "$\\pm$" if fmt == "latex" else "±"
        return f"{mean:.{col.digits}f} {pm} {std:.{col.digits}f}"
    value = mean_of(cell)
    if value is None:
        return MISSING
    if col.kind == "count":
        return format_count(value)
    if col.kind == "ratio":
        return f"{value:.{col.digits}f}×" if fmt != "latex" else f"{value:.{col.digits}f}$\\times$"
    return f"{value:.{col.digits}f}"


def format_count(n: float) -> str:
    """``1234567`` -> ``1.23M`` (parameters, FLOPs)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def row_text(row: dict[str, Any], col: Column, fmt: str) -> str:
    """A cell as text, with ``*`` when the row flags the column."""
    text = format_cell(row["cells"].get(col.key), col, fmt)
    return text + "*" if col.key in row.get("flags", ()) else text


def best_rows(table: Table, col: Column) -> set[int]:
    """Indices of the ranked student rows holding the best value of ``col`` as displayed (ties
    all win, unless every row ties)."""
    if col.better is None:
        return set()
    shown = {}
    for i, row in enumerate(table.rows):
        if row.get("role") != "student" or row.get("unranked") or mean_of(row["cells"].get(col.key)) is None:
            continue
        shown[i] = round(mean_of(row["cells"][col.key]), col.digits)  # compare what is displayed
    if len(set(shown.values())) < 2:
        return set()  # one row, or all tied: nothing stands out
    best = min(shown.values()) if col.better == "lower" else max(shown.values())
    return {i for i, v in shown.items() if v == best}


def to_github(table: Table) -> str:
    header = [c.header for c in table.columns]
    rows = [[row_text(r, c, "github") for c in table.columns] for r in table.rows]
    body = tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
    notes = "".join(f"\n\n{n}" for n in table.notes)
    return f"**{table.title}**\n\n{body}{notes}"


_LATEX_SPECIAL = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "#": "\\#", "_": "\\_", "{": "\\{",
                  "}": "\\}", "$": "\\$", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs tabular; the best student value of every ranked column is bold."""
    cols = table.columns
    bold = {c.key: best_rows(table, c) for c in cols}
    lines = [f"% {table.title}", "\\begin{tabular}{l" + "r" * (len(cols) - 1) + "}", "\\toprule",
             " & ".join(latex_escape(c.header) for c in cols) + " \\\\", "\\midrule"]
    for i, row in enumerate(table.rows):
        cells = []
        for c in cols:
            text = row_text(row, c, "latex")
            text = latex_escape(text) if c.kind == "text" else text.replace("–", "--").replace("%", "\\%")
            cells.append(f"\\textbf{{{text}}}" if i in bold[c.key] else text)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {n}" for n in table.notes]
    return "\n".join(lines)


def csv_header(table: Table) -> list[str]:
    out = []
    for c in table.columns:
        out.append(c.key)
        if c.kind == "delta":
            out += [f"{c.key}_low", f"{c.key}_high"]
        if c.kind == "stat" and any(isinstance(r["cells"].get(c.key), tuple) for r in table.rows):
            out.append(f"{c.key}_std")
    return out


def to_csv_rows(table: Table, header: list[str]) -> list[list[str]]:
    """Raw numbers: a mean column and, for stat columns, a ``_std`` column; missing cells empty."""
    rows = []
    for r in table.rows:
        values: dict[str, Any] = {}
        for c in table.columns:
            cell = r["cells"].get(c.key)
            if isinstance(cell, tuple) and c.kind == "delta":
                values[c.key] = _number(cell[0])
                values[f"{c.key}_low"], values[f"{c.key}_high"] = _number(cell[1]), _number(cell[2])
            elif isinstance(cell, tuple):
                values[c.key] = _number(cell[0])
                values[f"{c.key}_std"] = "" if cell[1] is None else _number(cell[1])
            elif isinstance(cell, (int, float)):
                values[c.key] = _number(cell)
            else:
                values[c.key] = "" if cell is None else str(cell)
        rows.append([values.get(h, "") for h in header])
    return rows


def _number(v: float) -> str:
    v = round(float(v), 6)
    return str(int(v)) if v.is_integer() and abs(v) >= 1 else repr(v)


def to_csv(tables: list[Table], lead: tuple[str, ...] = ("protocol",)) -> str:
    """One CSV for all tables: ``protocol`` (the table key) first, then each table's columns
    (tables may differ in columns, so the header is their union in first-seen order)."""
    header: list[str] = []
    for t in tables:
        header += [h for h in csv_header(t) if h not in header]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    budget = any(t.budget for t in tables)
    w.writerow([*lead, *header, *(["budget"] if budget else [])])
    for t in tables:
        keys = t.key.split("/")
        for row in to_csv_rows(t, header):
            w.writerow([*keys[: len(lead)], *row, *([t.budget] if budget else [])])
    return buf.getvalue()
