"""Robustness metrics (RoboDepth's DEE, CE/mCE, RR/mRR, RCE/RmCE) and the evaluation of a
trained student on corrupted and adverse-weather conditions (``harness run --eval-robustness``).

Definitions (``docs/robustness.md``, "Metrics"; RoboDepth's ``evaluate_kittic.py``):

* DEE (depth estimation error) of one evaluation: ``dee1 = abs_rel - a1 + 1``,
  ``dee2 = (abs_rel - a1 + 1) / 2`` (RoboDepth's headline, the default), ``dee3 = abs_rel / a1``;
* per corruption ``i``: ``abs_rel`` and ``a1`` of each severity rounded to ``round_digits`` (3),
  averaged over the severities, DEE computed from the averages and rounded (RoboDepth's
  arithmetic; ``round_digits=None`` keeps full precision);
* ``CE_i = DEE_i / DEE_i^ref`` and ``mCE = 100 * mean_i CE_i`` against a reference row (the
  harness's ``baseline`` method under the same protocol and conditions by default, or RoboDepth's
  published MonoDepth2 R18 mono 640x192 table, :data:`ROBODEPTH_MONODEPTH2`);
* ``RCE_i = (DEE_clean - DEE_i) / (DEE_clean^ref - DEE_i^ref)``, ``RmCE = 100 * mean``;
* ``RR_i = (1 - DEE_i) / (1 - DEE_clean)``, ``mRR = 100 * mean_i RR_i`` (no reference needed);
* ``mDEE = mean_i DEE_i`` (not a RoboDepth number; reported for reading).

The clean DEE is computed from the clean test metrics rounded the same way.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.data import corruptions as C
from harness.errors import HarnessError

__all__ = [
    "DEE_KINDS",
    "DEFAULTS",
    "REFERENCES",
    "ROBODEPTH_MONODEPTH2",
    "clean_score",
    "corruption_score",
    "dee",
    "evaluate_conditions",
    "choose_reference_profile",
    "find_baseline_reference",
    "parse_reference",
    "reference_table",
    "settings",
    "summarize",
]

DEE_KINDS = ("dee1", "dee2", "dee3")

#: ``evaluate.robustness`` defaults (a config's ``evaluate.robustness`` dict is merged over them).
DEFAULTS: dict[str, Any] = dict(
    enabled=False,          # harness run --eval-robustness (or a *-c dataset) turns it on
    corruptions="all",      # "all", a name, "a,b" or a list
    severities=[1, 2, 3, 4, 5],  # or "all", an int, "1,3"
    seed=0,                 # corruption seed: independent of the training seed
    max_frames=None,        # evaluate at most this many evenly spaced test frames (all: None)
    corrupt_size=None,      # None: corrupt at the network input size; or [H, W]
    per_severity_draws=False,
    corrupted_root=None,    # read a stored corrupted copy (e.g. RoboDepth's KITTI-C) instead
    weather="auto",         # DrivingStereo sunny/cloudy/foggy/rainy as conditions ("auto": when the dataset has them)
    dee="dee2",
    round_digits=3,
    reference="baseline",   # "baseline", "baseline:<profile>" (result files in --results) or "robodepth_monodepth2"
)

#: RoboDepth's reference row: MonoDepth2 ResNet-18, mono, 640x192, on KITTI-C
#: (RoboDepth ``get_scores_monodepth2_mono``; DEE2 as in docs/robustness.md).
ROBODEPTH_MONODEPTH2: dict[str, dict[str, float]] = {
    "dee1": {
        "clean": 0.238, "brightness": 0.259, "dark": 0.561, "fog": 0.311, "frost": 0.553, "snow": 1.023,
        "contrast": 0.373, "defocus_blur": 0.487, "glass_blur": 0.484, "motion_blur": 0.433, "zoom_blur": 0.402,
        "elastic_transform": 0.258, "color_quant": 0.386, "gaussian_noise": 0.768, "impulse_noise": 0.779,
        "shot_noise": 0.681, "iso_noise": 0.776, "pixelate": 0.289, "jpeg_compression": 0.391,
    },
    "dee2": {
        "clean": 0.119, "brightness": 0.130, "dark": 0.280, "fog": 0.155, "frost": 0.277, "snow": 0.511,
        "contrast": 0.187, "defocus_blur": 0.244, "glass_blur": 0.242, "motion_blur": 0.216, "zoom_blur": 0.201,
        "elastic_transform": 0.129, "color_quant": 0.193, "gaussian_noise": 0.384, "impulse_noise": 0.389,
        "shot_noise": 0.340, "iso_noise": 0.388, "pixelate": 0.145, "jpeg_compression": 0.196,
    },
    "dee3": {
        "clean": 0.131, "brightness": 0.140, "dark": 0.330, "fog": 0.166, "frost": 0.327, "snow": 1.058,
        "contrast": 0.199, "defocus_blur": 0.271, "glass_blur": 0.270, "motion_blur": 0.236, "zoom_blur": 0.221,
        "elastic_transform": 0.141, "color_quant": 0.209, "gaussian_noise": 0.551, "impulse_noise": 0.563,
        "shot_noise": 0.442, "iso_noise": 0.557, "pixelate": 0.158, "jpeg_compression": 0.215,
    },
}
REFERENCES = ("baseline", "robodepth_monodepth2")
_DS_WEATHERS = ("sunny", "cloudy", "foggy", "rainy")


# --------------------------------------------------------------------------------------------
# pure metric functions
# --------------------------------------------------------------------------------------------
def _round(x: float, digits: int | None) -> float:
    return x if digits is None else round(float(x), int(digits))


def dee(abs_rel: float, a1: float, kind: str = "dee2") -> float:
    """RoboDepth's depth estimation error of one (AbsRel, delta1) pair."""
    if kind == "dee1":
        return abs_rel - a1 + 1.0
    if kind == "dee2":
        return (abs_rel - a1 + 1.0) / 2.0
    if kind == "dee3":
        return abs_rel / a1 if a1 else math.inf
    raise ValueError(f"dee kind must be one of {DEE_KINDS}, got {kind!r}")


def clean_score(metrics: Mapping[str, float], kind: str = "dee2", digits: int | None = 3) -> dict[str, float]:
    """``{"abs_rel", "a1", "dee"}`` of the clean evaluation (each rounded as RoboDepth)."""
    ar, a1 = _round(metrics["abs_rel"], digits), _round(metrics["a1"], digits)
    return {"abs_rel": ar, "a1": a1, "dee": _round(dee(ar, a1, kind), digits)}


def corruption_score(levels: Mapping[int, Mapping[str, float]], kind: str = "dee2",
                     digits: int | None = 3) -> dict[str, Any]:
    """``{"abs_rel", "a1", "dee", "severities"}`` of one corruption from its per-severity metrics
    (``{severity: {"abs_rel": .., "a1": ..}}``): rounded levels, averaged, DEE of the averages."""
    if not levels:
        raise ValueError("no severities")
    sevs = sorted(levels)
    ar = sum(_round(levels[s]["abs_rel"], digits) for s in sevs) / len(sevs)
    a1 = sum(_round(levels[s]["a1"], digits) for s in sevs) / len(sevs)
    return {"abs_rel": _round(ar, digits), "a1": _round(a1, digits), "dee": _round(dee(ar, a1, kind), digits),
            "severities": sevs}


def _ratio(num: float, den: float) -> float | None:
    if den == 0 or not (math.isfinite(num) and math.isfinite(den)):
        return None
    return num / den


def summarize(clean_dee: float, corruption_dee: Mapping[str, float],
              reference: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Per-corruption CE, RCE, RR and the means (in %), from DEE values.

    ``reference`` maps ``"clean"`` and corruption names to the reference row's DEE; without it
    (or for a corruption it lacks) CE/RCE are ``None`` and so are mCE/RmCE. Returns
    ``{"per_corruption": {name: {"dee", "ce", "rce", "rr"}}, "mCE", "RmCE", "mRR", "mDEE",
    "corruptions": n}``.
    """
    per: dict[str, dict[str, float | None]] = {}
    for name, d in corruption_dee.items():
        ref = None if reference is None else reference.get(name)
        ref_clean = None if reference is None else reference.get("clean")
        per[name] = {
            "dee": d,
            "ce": None if ref is None else _ratio(d, ref),
            "rce": None if ref is None or ref_clean is None else _ratio(clean_dee - d, ref_clean - ref),
            "rr": _ratio(1.0 - d, 1.0 - clean_dee),
        }

    def mean100(key: str) -> float | None:
        vals = [p[key] for p in per.values()]
        if not vals or any(v is None for v in vals):
            return None
        return 100.0 * sum(vals) / len(vals)

    return {
        "per_corruption": per,
        "mCE": mean100("ce"),
        "RmCE": mean100("rce"),
        "mRR": mean100("rr"),
        "mDEE": (sum(corruption_dee.values()) / len(corruption_dee)) if corruption_dee else None,
        "corruptions": len(per),
    }


def reference_table(name: str, kind: str = "dee2") -> dict[str, float]:
    """A published reference row (``robodepth_monodepth2``) for DEE ``kind``."""
    if name != "robodepth_monodepth2":
        raise HarnessError(f"robustness reference {name!r}: no published table (known: robodepth_monodepth2)")
    return dict(ROBODEPTH_MONODEPTH2[kind])


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
def settings(cfg) -> dict[str, Any]:
    """``DEFAULTS`` merged with the config's ``evaluate.robustness`` (validated)."""
    evaluate = cfg.get("evaluate") or {}
    own = evaluate.get("robustness") or {}
    own = own.to_dict() if hasattr(own, "to_dict") else dict(own)
    unknown = sorted(set(own) - set(DEFAULTS))
    if unknown:
        raise HarnessError(f"config evaluate.robustness: unknown key(s) {unknown} (known: {', '.join(DEFAULTS)})")
    s = dict(DEFAULTS, **own)
    if s["dee"] not in DEE_KINDS:
        raise HarnessError(f"config evaluate.robustness.dee: must be one of {DEE_KINDS}, got {s['dee']!r}")
    parse_reference(s["reference"], "config evaluate.robustness.reference")
    if s["max_frames"] is not None and int(s["max_frames"]) < 1:
        raise HarnessError("config evaluate.robustness.max_frames: must be a positive integer or None")
    if s["round_digits"] is not None and int(s["round_digits"]) < 0:
        raise HarnessError("config evaluate.robustness.round_digits: must be >= 0 or None")
    try:
        s["conditions"] = [] if s["corruptions"] in ([], (), None, "none") else \
            C.resolve_conditions(s["corruptions"], s["severities"])
    except ValueError as exc:
        raise HarnessError(f"config evaluate.robustness: {exc}") from None
    return s


def spec_of(s: Mapping[str, Any], frames: int, weather: list[str]) -> dict[str, Any]:
    """What makes two robustness evaluations comparable (its hash is ``spec_id``)."""
    return {
        "conditions": [f"{c}/{v}" for c, v in s["conditions"]],
        "weather": list(weather),
        "seed": int(s["seed"]),
        "corrupt_size": None if s["corrupt_size"] is None else [int(v) for v in s["corrupt_size"]],
        "per_severity_draws": bool(s["per_severity_draws"]),
        "stored": s["corrupted_root"] is not None,
        "max_frames": None if s["max_frames"] is None else int(s["max_frames"]),
        "frames": int(frames),
        "dee": s["dee"],
        "round_digits": s["round_digits"],
        "corruptions_version": C.VERSION,
    }


def spec_id(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# reference rows from result files
# --------------------------------------------------------------------------------------------
def parse_reference(name: str, what: str = "robustness reference") -> tuple[str, str | None]:
    """``"baseline"`` -> ``("baseline", None)``, ``"baseline:PROFILE"`` -> ``("baseline", PROFILE)``,
    ``"robodepth_monodepth2"`` -> ``(name, None)``; anything else is a :class:`HarnessError`
    naming ``what``."""
    kind, _, profile = str(name).partition(":")
    if kind not in REFERENCES or (profile and kind != "baseline") or (_ and not profile):
        raise HarnessError(f"{what}: must be 'baseline', 'baseline:<profile>' or 'robodepth_monodepth2', "
                           f"got {name!r}")
    return kind, profile or None


def choose_reference_profile(available, own: str | None, wanted: str | None = None) -> str | None:
    """Which ``baseline`` profile is the CE reference of a row of profile ``own``.

    One profile's seeds, never a mix of profiles: ``wanted`` if given (None when it has no
    results); otherwise the row's own profile if the baseline ran it; otherwise the only baseline
    profile there is; None when several qualify and none was chosen (ambiguous: CE missing).
    """
    available = set(available)
    if wanted is not None:
        return wanted if wanted in available else None
    if own in available:
        return own
    return next(iter(available)) if len(available) == 1 else None


def find_baseline_reference(results_dir, protocol_id: str, sid: str, own_profile: str | None = None,
                            profile: str | None = None, method: str = "baseline") -> dict | None:
    """Mean DEE per corruption (and ``clean``) over the seeds of ONE ``method`` profile (see
    :func:`choose_reference_profile`) among the result files in ``results_dir`` that share the
    protocol id and robustness ``spec_id``; ``None`` if there is none or the choice is ambiguous."""
    d = Path(results_dir)
    if not d.is_dir():
        return None
    by_profile: dict[str, list] = {}
    for path in sorted(d.glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rob = r.get("robustness") if isinstance(r, dict) else None
        if (not isinstance(rob, dict) or r.get("method") != method or rob.get("spec_id") != sid
                or (r.get("protocol") or {}).get("id") != protocol_id):
            continue
        by_profile.setdefault(r.get("profile"), []).append((r.get("seed"), str(path), rob))
    chosen = choose_reference_profile(by_profile, own_profile, profile)
    if chosen is None:
        return None
    rows = by_profile[chosen]
    return {"table": mean_dee_table([rob for _, _, rob in rows]), "profile": chosen,
            "seeds": sorted(s for s, _, _ in rows), "files": [p for _, p, _ in rows]}


def mean_dee_table(records: list[Mapping[str, Any]]) -> dict[str, float]:
    """Mean DEE per corruption the records share, and of ``clean``, over robustness records."""
    common = set.intersection(*(set(rec["per_corruption"]) for rec in records))
    table = {n: sum(rec["per_corruption"][n]["dee"] for rec in records) / len(records) for n in common}
    table["clean"] = sum(rec["clean"]["dee"] for rec in records) / len(records)
    return table


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def evaluate_conditions(ctx, predict: Callable, test_set, protocol, clean_metrics: Mapping[str, Any], *,
                        method: str, results_dir=None) -> dict[str, Any] | None:
    """Evaluate ``predict`` on every configured condition of ``test_set`` (``None`` when
    ``evaluate.robustness.enabled`` is off). Returns the result file's ``robustness`` record
    (schema in :mod:`harness.report.results`)."""
    s = settings(ctx.cfg)
    if not s["enabled"]:
        return None
    from harness.data.corrupted_views import CorruptedView, subsample_indices
    from harness.eval.loop import evaluate_split
    from harness.eval.metrics import rounded
    from harness.pipeline.train import progress_callback

    t0 = time.time()
    # the test split again, reading only what the evaluation uses (images, meta; GT comes from eval_gt)
    light = frozenset({"image", "meta"})
    base = ctx.build_dataset("test", light)
    base = getattr(base, "base", base)  # a *-c dataset: corrupt its base
    indices = subsample_indices(len(base), s["max_frames"])
    batch_size = int(ctx.cfg.evaluate.get("batch_size", 8))

    def evaluate(ds, proto=protocol) -> dict[str, Any]:  # the run's evaluation, without a progress bar
        return rounded(evaluate_split(predict, ds, proto, device=ctx.device, batch_size=batch_size,
                                      extra_metrics=ctx.extra_metrics).summary)

    def view(corruption=None, severity=None, ds=base, sub=indices):
        return CorruptedView(ds, corruption, severity, seed=int(s["seed"]), corrupt_size=s["corrupt_size"],
                             per_severity_draws=s["per_severity_draws"], corrupted_root=s["corrupted_root"],
                             indices=sub)

    # the run's clean test metrics are reused when they are exactly the clean condition
    reuse = (indices is None and s["corrupted_root"] is None and getattr(test_set, "corruption", None) is None
             and getattr(test_set, "corrupted_root", None) is None)
    clean = dict(clean_metrics) if reuse else evaluate(view())
    conditions: dict[str, dict] = {}
    cb = progress_callback("robust") if ctx.progress else None
    for k, (name, sev) in enumerate(s["conditions"]):
        conditions[f"{name}/{sev}"] = evaluate(view(name, sev))
        if cb:
            cb(k + 1, len(s["conditions"]))

    weather_metrics: dict[str, dict] = {}
    weathers = _weather_splits(ctx, s)
    for w in weathers:
        ds = ctx.build_dataset("test", light, split=w)
        ds_base = getattr(ds, "base", ds)
        sub = CorruptedView(ds_base, indices=subsample_indices(len(ds_base), s["max_frames"]))
        weather_metrics[w] = evaluate(sub, ctx.protocol(ds_base, protocol.scale))

    kind, digits = s["dee"], s["round_digits"]
    clean_rec = clean_score(clean, kind, digits)
    per_corr: dict[str, dict] = {}
    by_name: dict[str, dict[int, dict]] = {}
    for key, m in conditions.items():
        name, sev = key.split("/")
        by_name.setdefault(name, {})[int(sev)] = m
    for name, levels in by_name.items():
        per_corr[name] = corruption_score(levels, kind, digits)

    spec = spec_of(s, len(indices) if indices is not None else len(base), weathers)
    sid = spec_id(spec)
    pid = protocol.protocol_id()
    dees = {n: p["dee"] for n, p in per_corr.items()}
    ref_info: dict[str, Any] = {"name": s["reference"]}
    ref_kind, ref_profile = parse_reference(s["reference"])
    if ref_kind == "robodepth_monodepth2":
        table = reference_table("robodepth_monodepth2", kind)
        ref_info["source"] = "RoboDepth MonoDepth2 R18 mono 640x192 (published KITTI-C table)"
    elif method == "baseline":
        table = dict(dees, clean=clean_rec["dee"])
        ref_info["source"] = "this run (the baseline is its own reference)"
    else:
        found = None if results_dir is None else find_baseline_reference(
            results_dir, pid, sid, own_profile=getattr(ctx.cfg, "profile", None), profile=ref_profile)
        table = None if found is None else found["table"]
        ref_info.update({"source": "results", "profile": found["profile"], "seeds": found["seeds"],
                         "files": found["files"]} if found else
                        {"source": None, "note": "no baseline result of one profile (this run's, the configured "
                                                 "one or the only one) with this protocol and robustness spec "
                                                 "in the results directory; the leaderboard computes CE later"})
    summary = summarize(clean_rec["dee"], dees, table)
    for name, p in summary["per_corruption"].items():
        per_corr[name].update({k: p[k] for k in ("ce", "rce", "rr")})
    return {
        "spec": spec,
        "spec_id": sid,
        "clean": dict(clean_rec, metrics=rounded(clean)),
        "conditions": conditions,
        "weather": weather_metrics,
        "per_corruption": per_corr,
        "summary": {k: summary[k] for k in ("mCE", "RmCE", "mRR", "mDEE", "corruptions")},
        "complete": len(per_corr) == len(C.CORRUPTIONS)
        and all(p["severities"] == list(C.SEVERITIES) for p in per_corr.values()),
        "reference": ref_info,
        "seconds": round(time.time() - t0, 2),
    }


def _weather_splits(ctx, s) -> list[str]:
    w = s["weather"]
    name = ctx.data_cfg["dataset"]
    if w in (None, False, "none", []):
        return []
    if w == "auto":
        return list(_DS_WEATHERS) if name in ("drivingstereo", "drivingstereo-c") else []
    return [w] if isinstance(w, str) else list(w)

