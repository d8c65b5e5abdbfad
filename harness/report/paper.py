"""Papers' reported numbers, as data shipped by each method plugin (``register(..., paper=PATH)``).

``paper.json``::

    {
      "paper": "<citation>", "url": "...", "note": "...",
      "results": {
        "<label>": {
          "protocol": {"dataset": "kitti", "split": "eigen", "gt_source": "velodyne", "crop": "garg",
                       "min_depth": 0.001, "max_depth": 80, "gt_mask": "range", "scale": "median",
                       "flip_pp": false, "resolution": [192, 640]},
          "protocol_note": "free text: where the protocol comes from, what is assumed",
          "metrics": {"abs_rel": 0.111, "a1": 0.87}
        }
      }
    }

The protocol id of an entry is computed exactly as a run's (:class:`harness.eval.protocol.Protocol`).
``split_hash`` may be given; otherwise it is the hash of the bundled split file
``harness/splits/<split>/test_files.txt`` (the KITTI loader's rule). An entry whose protocol is
incomplete (e.g. the paper does not state its input resolution) has no id and is never shown
beside a reproduced number: the leaderboard only puts numbers side by side when the protocols
are the same.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.eval.protocol import Protocol

SPLITS_DIR = Path(__file__).resolve().parent.parent / "splits"


def protocol_id(desc: dict[str, Any]) -> str | None:
    """The protocol id of a paper's protocol description, or None if it is incomplete."""
    if not isinstance(desc, dict):
        return None
    d = dict(desc)
    if "split_hash" not in d:
        split_file = SPLITS_DIR / str(d.get("split", "")) / "test_files.txt"
        if not d.get("split") or not split_file.is_file():
            return None
        d["split_hash"] = hashlib.sha256(split_file.read_bytes()).hexdigest()
    d.setdefault("name", f"{d.get('dataset')}-{d.get('split')}")
    try:
        return Protocol.from_dict(d).protocol_id()
    except (ValueError, TypeError):
        return None


def load_paper(path: str | Path) -> list[dict[str, Any]]:
    """The entries of one ``paper.json`` as ``{"label", "protocol_id", "metrics", "note"}``;
    a missing or malformed file gives no entries (paper numbers are optional)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    out = []
    for label, entry in ((data.get("results") or {}) if isinstance(data, dict) else {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
            continue
        metrics = {k: float(v) for k, v in entry["metrics"].items() if isinstance(v, (int, float))}
        out.append({"label": label, "protocol_id": protocol_id(entry.get("protocol")), "metrics": metrics,
                    "note": entry.get("protocol_note", "")})
    return out


def reported_numbers(catalog) -> dict[str, list[dict[str, Any]]]:
    """Method name -> its paper's entries, for every registered method that ships a paper file."""
    out = {}
    for name, entry in catalog.entries["methods"].items():
        path = entry.extra.get("paper")
        if path:
            out[name] = load_paper(path)
    return out


def reported_for(papers: dict[str, list[dict]], method: str, pid: str) -> dict[str, float]:
    """The reported metrics of ``method`` under protocol ``pid`` (empty when none match)."""
    for entry in papers.get(method, []):
        if entry["protocol_id"] is not None and entry["protocol_id"] == pid:
            return entry["metrics"]
    return {}
