"""The leaderboard as one static, self-contained HTML page (inline CSS and JS, no network).

One table per protocol group; a click on a column header sorts by it (again: reverse order),
missing cells (``–``) always sort last; the best student value of a ranked column is bold.
"""
from __future__ import annotations

from html import escape

from harness.report.table import Table, best_rows, mean_of, row_text

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em;color:#222;background:#fff}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.05em;margin:1.8em 0 .4em;font-weight:600}
p.meta,p.note{color:#555;font-size:.88em;margin:.3em 0}
div.wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:.8em;font-variant-numeric:tabular-nums}
th,td{padding:.25em .45em;text-align:right;white-space:nowrap}
span.sd{color:#777;font-size:.85em}
th:first-child,td:first-child{text-align:left}
thead th{border-top:2px solid #222;border-bottom:1px solid #222;cursor:pointer;user-select:none}
thead th:hover{background:#eef}
th.asc::after{content:" \\25B2"} th.desc::after{content:" \\25BC"}
tbody tr:last-child td{border-bottom:2px solid #222}
tbody tr.ref td{color:#666;font-style:italic}
tbody tr:nth-child(even){background:#f6f6f6}
td.best{font-weight:700} td.missing{color:#aaa} td.flag{background:#f8d0c8}
h3{font-size:.95em;margin:1em 0 .3em;font-weight:600}
"""

_JS = """
document.querySelectorAll("table.lb").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("thead th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        if (x === "" && y === "") return 0;
        if (x === "") return 1;
        if (y === "") return -1;
        var nx = parseFloat(x), ny = parseFloat(y), r;
        r = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def to_html(tables: list[Table], title: str = "stereodistill leaderboard", meta: str = "") -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if meta:
        parts.append(f'<p class="meta">{escape(meta)}</p>')
    parts.append('<p class="meta">Click a column header to sort. Rows are seeds aggregated as mean ± std '
                 "(sample std); – marks a missing value (never averaged). Bold: best student value of "
                 "the column. Results of different protocols or training budgets are never in one table. "
                 "Δ vs control: method minus its like-for-like control on the same test frames (seeds "
                 "pooled), 95 % bootstrap CI over drives, paired Wilcoxon p over per-drive means. Per-drive "
                 "tables: a red cell is a drive more than 50 % off the row's median drive.</p>")
    for i, t in enumerate(tables):
        parts.append(_table(t, i))
    parts += [f"<script>{_JS}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _table(t: Table, index: int) -> str:
    bold = {c.key: best_rows(t, c) for c in t.columns}
    head = "".join(f'<th scope="col" data-key="{escape(c.key)}">{escape(c.header)}</th>' for c in t.columns)
    body = []
    for i, row in enumerate(t.rows):
        cells = []
        for c in t.columns:
            cell = row["cells"].get(c.key)
            text = escape(row_text(row, c, "html"))
            if c.kind == "stat" and isinstance(cell, tuple) and cell[1] is not None:  # the std in small grey
                mean_text, _, std_text = text.partition(" ± ")
                text = f'{mean_text}<span class="sd"> ± {std_text}</span>'
            value = mean_of(cell)
            sort_key = str(cell) if c.kind == "text" and cell is not None else ("" if value is None else repr(value))
            cls = " ".join(k for k, on in (("best", i in bold[c.key]), ("missing", cell is None),
                                           ("flag", c.key in row.get("flags", ()))) if on)
            cls_attr = f' class="{cls}"' if cls else ""
            cells.append(f'<td{cls_attr} data-v="{escape(sort_key)}">{text}</td>')
        row_cls = "" if row.get("role") == "student" else ' class="ref"'
        body.append(f"<tr{row_cls}>{''.join(cells)}</tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in t.notes)
    return (f'<h2 id="t{index}-{escape(t.key)}">{escape(t.title)}</h2>\n<div class="wrap"><table class="lb" data-protocol="{escape(t.key)}">'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + f"\n</tbody></table></div>\n{notes}")
