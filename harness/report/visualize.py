"""``harness visualize``: pictures of a leaderboard's runs.

- ``qualitative.png``: one row per test frame, columns input | GT | teacher | each method's
  student. Depth is shown as inverse depth through matplotlib's perceptual ``magma`` colormap
  (near = bright), on one scale per row (the GT's 2nd-98th percentile), so columns compare
  directly; invalid GT pixels are black. Predictions of a median-scaled protocol are median
  scaled to the GT first, as the metrics are.
- ``robustness_<protocol>.png``: bar charts from the results' ``robustness`` records
  (``harness run --eval-robustness``): DEE per corruption and mRR per method.

Students come from the last stage checkpoint in each result's ``work_dir`` (or ``--run
METHOD=DIR``), rebuilt from the result's recorded config through the public registries;
the teacher column is the cached teacher the runs share (``result.teacher.key``).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.pipeline import checkpoint
from harness.errors import HarnessError
from harness.pipeline.teacher_cache import cache_root

EVAL_KEYS = frozenset({"image", "depth_gt", "depth_gt_mask", "meta"})


# --------------------------------------------------------------------------------------------
# choosing runs
# --------------------------------------------------------------------------------------------
def frames_key(result: dict[str, Any]) -> str:
    """What fixes the test frames a picture shows: dataset, split file hash and input resolution
    (methods of one benchmark with different scaling policies differ in protocol id only)."""
    p = result["protocol"]
    return f"{p.get('dataset')}/{p.get('split')}@{str(p.get('split_hash'))[:8]}/{p.get('resolution')}"


def select_runs(results: list[dict[str, Any]], *, seed: int | None = None, protocol: str | None = None,
                methods: list[str] | None = None) -> list[dict[str, Any]]:
    """One result per (method, profile) on one set of test frames: ``seed`` or each method's
    lowest seed; ``protocol`` narrows to one protocol id."""
    results = [r for r in results if (protocol is None or r["protocol"].get("id") == protocol)
               and (seed is None or r["seed"] == seed) and (not methods or r["method"] in methods)]
    if not results:
        raise HarnessError("no result matches" + (f" protocol {protocol}" if protocol else "")
                           + (f" seed {seed}" if seed is not None else "")
                           + (f" methods {','.join(methods)}" if methods else ""))
    frames = Counter(frames_key(r) for r in results)
    if len(frames) > 1:
        ids = sorted({r["protocol"].get("id") for r in results})
        raise HarnessError(f"option --protocol: the results hold {len(frames)} test sets ({', '.join(sorted(frames))}); "
                           f"choose a protocol id ({', '.join(map(str, ids))})")
    chosen: dict[tuple, dict] = {}
    for r in sorted(results, key=lambda r: (r["method"], r.get("profile", ""), r["seed"])):
        chosen.setdefault((r["method"], r.get("profile")), r)
    order = {m: i for i, m in enumerate(methods or [])}
    return sorted(chosen.values(), key=lambda r: (order.get(r["method"], len(order)), r["method"], r.get("profile", "")))


# --------------------------------------------------------------------------------------------
# rebuilding models
# --------------------------------------------------------------------------------------------
def _build(catalog, kind: str, spec: dict | None):
    spec = dict(spec or {})
    name = spec.pop("type", None)
    if name is None:
        raise HarnessError(f"the result's config has no {kind[:-1]} type")
    return catalog.build(kind, name, **spec)


def stage_checkpoint(work_dir: Path, stage_names: list[str]) -> Path:
    """The checkpoint of the last stage (in the strategy's order) that has one."""
    for name in reversed(stage_names):
        path = checkpoint.latest_checkpoint(work_dir / name)
        if path is not None:
            return path
    raise HarnessError(f"work dir {work_dir}: no checkpoint of stage(s) {', '.join(stage_names)} "
                       f"(pass --run METHOD=WORK_DIR for a run trained elsewhere)")


def run_work_dir(result: dict[str, Any], given: dict[str, Path]) -> Path:
    """The recorded ``work_dir`` when it exists, else ``--run METHOD:PROFILE=DIR``, else
    ``--run METHOD=DIR``, else the CLI's default ``work_dirs/<method>[-quick]/seed<N>`` (results
    written before ``work_dir`` was recorded). The recorded folder wins: ``--run METHOD=DIR`` must
    not hand one profile's checkpoint to another profile of the same method."""
    method = result["method"]
    if result.get("work_dir") and Path(result["work_dir"]).is_dir():
        return Path(result["work_dir"])
    for key in (f"{method}:{result.get('profile')}", method):
        if key in given:
            return given[key]
    default = Path("work_dirs") / f"{method}{'-quick' if result.get('profile') == 'quick' else ''}" / f"seed{result['seed']}"
    if default.is_dir():
        return default
    raise HarnessError(f"{result.get('_path', method)}: its work dir {result.get('work_dir') or default} does not "
                       f"exist; pass --run {method}=WORK_DIR")


def load_student(result: dict[str, Any], catalog, work_dir: Path):
    """``predict(image) -> depth`` of a result's trained student (and the strategy's modules)."""
    cfg = result.get("config") or {}
    method_cfg = dict(cfg.get("method") or {})
    method = method_cfg.pop("type", result["method"])
    strategy = catalog.build("methods", method, **method_cfg)
    student = _build(catalog, "students", cfg.get("student"))
    teacher = None
    if strategy.teacher_mode in ("frozen", "online") and cfg.get("teacher"):
        teacher = _build(catalog, "teachers", cfg.get("teacher"))
    strategy.build(student, teacher)
    checkpoint.trust_directory(work_dir)
    path = stage_checkpoint(work_dir, [s.name for s in strategy.stages()])
    state = checkpoint.load_local(str(path), map_location="cpu")
    state = state.get("state_dict", state)
    for prefix, module in (("student.", student), ("strategy.", strategy)):
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing = module.load_state_dict(sub, strict=False).missing_keys
        if prefix == "student." and missing:
            raise HarnessError(f"{path}: checkpoint does not match the result's student ({len(missing)} "
                               f"missing keys, e.g. {missing[0]})")
    student.eval()
    strategy.eval()
    return lambda image: strategy.predict(student, image)


def load_cached_teacher(result: dict[str, Any], catalog, cache_dir: Path):
    """``predict(batch) -> depth`` and input keys of the result's cached teacher, or None."""
    info = result.get("teacher") or {}
    spec = (result.get("config") or {}).get("teacher")
    path = cache_dir / "teachers" / str(info.get("key")) / "teacher.pth"
    if not info.get("key") or not spec or not path.is_file():
        return None
    teacher = _build(catalog, "teachers", spec)
    if "depth" not in set(getattr(teacher, "outputs", {"depth"})):
        return None
    teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    teacher.eval()
    return (lambda batch: teacher(batch).depth[0]), frozenset(teacher.input_keys), info.get("type", spec.get("type"))


def build_test_set(result: dict[str, Any], catalog, need: frozenset[str], data_root: str | None = None):
    cfg = result.get("config") or {}
    data = cfg.get("data") or {}
    root = data_root or data.get("root") or (result.get("datasets", {}).get("test") or {}).get("root")
    if not root or not Path(root).is_dir():
        raise HarnessError(f"dataset root {root} of {result.get('_path', 'the result')} is not a directory "
                           "(pass --data-root)")
    h, w = data["input_size"]
    split_cfg = dict(data.get("test") or {})
    split_cfg.setdefault("split", "test")
    return catalog.build("datasets", data["dataset"], root=str(root), height=int(h), width=int(w), need=need,
                         seed=0, **split_cfg)


# --------------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------------
def colorize(depth: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``H x W`` depth -> ``H x W x 3`` uint8 through ``magma`` of inverse depth (near = bright),
    depth ``lo`` brightest and ``hi`` darkest (:mod:`harness.report.colormap`, as ``predict``)."""
    from harness.report.colormap import colorize as magma

    rgb = magma(np.clip(depth, 1e-6, None), vmin=lo, vmax=hi)
    rgb[~valid] = 0
    return rgb


def qualitative_grid(runs: list[dict[str, Any]], catalog, out: Path, *, frames: int = 3,
                     work_dirs: dict[str, Path] | None = None, data_root: str | None = None,
                     cache_dir: Path | None = None) -> Path:
    """Write the input | GT | teacher | students grid for ``frames`` test frames of ``runs``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cache_dir = cache_dir or cache_root(None)
    work_dirs = work_dirs or {}
    teachers = Counter((r.get("teacher") or {}).get("key") for r in runs if (r.get("teacher") or {}).get("key"))
    teacher = None
    for key, _ in teachers.most_common():
        teacher = load_cached_teacher(next(r for r in runs if (r.get("teacher") or {}).get("key") == key),
                                      catalog, cache_dir)
        if teacher is not None:
            break
    students = []
    for r in runs:
        wd = run_work_dir(r, work_dirs)
        label = r["method"] if sum(x["method"] == r["method"] for x in runs) == 1 else f"{r['method']} ({r.get('profile')})"
        students.append((label, load_student(r, catalog, Path(wd))))
    need = EVAL_KEYS | (teacher[1] if teacher else frozenset())
    ds = build_test_set(runs[0], catalog, need, data_root)
    idx = np.unique(np.linspace(0, len(ds) - 1, num=min(frames, len(ds))).round().astype(int)).tolist()
    batch = torch.utils.data.default_collate([ds[i] for i in idx])
    gt = batch["depth_gt"][:, 0].numpy()
    valid = batch["depth_gt_mask"][:, 0].numpy().astype(bool) & (gt > 0)
    columns = [("input", None), ("GT", gt)]
    with torch.no_grad():
        if teacher is not None:
            columns.append((f"teacher ({teacher[2]})", _to_gt_size(teacher[0](batch), gt, valid, False)))
        for (label, predict), r in zip(students, runs):
            median = r["protocol"].get("scale") == "median"
            columns.append((label, _to_gt_size(predict(batch["image"]), gt, valid, median)))
    images = batch["image"].permute(0, 2, 3, 1).numpy().clip(0, 1)
    n, cols = len(idx), len(columns)
    h, w = gt.shape[-2:]
    fig, axes = plt.subplots(n, cols, figsize=(cols * 2.6, n * 2.6 * h / w + 0.7), squeeze=False)
    for i in range(n):
        g = gt[i][valid[i]]
        lo, hi = (np.percentile(g, 2), np.percentile(g, 98)) if g.size else (1.0, 80.0)
        for j, (title, maps) in enumerate(columns):
            ax = axes[i][j]
            ax.imshow(images[i] if maps is None else colorize(maps[i], valid[i] if title == "GT" else np.ones_like(valid[i]),
                                                              lo, max(hi, lo * 1.01)))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle(f"{runs[0]['protocol'].get('dataset')}/{runs[0]['protocol'].get('split')} frames {idx}; "
                 "inverse depth, magma, near = bright", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _to_gt_size(depth: torch.Tensor, gt: np.ndarray, valid: np.ndarray, median: bool) -> np.ndarray:
    from harness.eval.protocol import resize_prediction

    d = resize_prediction(depth.float().cpu(), tuple(gt.shape[-2:]))[:, 0].numpy()
    if median:
        for i in range(len(d)):
            if valid[i].any():
                d[i] = d[i] * np.median(gt[i][valid[i]]) / max(np.median(d[i][valid[i]]), 1e-6)
    return d


def robustness_charts(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per (protocol, robustness spec): DEE per corruption (grouped bars, one per method,
    mean over seeds with the std as error bar) and mRR per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        rob = r.get("robustness")
        if isinstance(rob, dict) and isinstance(rob.get("per_corruption"), dict):
            groups[(r["protocol"].get("id"), rob.get("spec_id"))][r["method"]].append(rob)
    paths = []
    for (pid, sid), methods in groups.items():
        names = sorted({n for recs in methods.values() for rec in recs for n in rec["per_corruption"]})
        labels = ["clean", *names]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(labels) * max(1, len(methods)) ** 0.5 + 4), 4.2),
                                      gridspec_kw={"width_ratios": [4, 1]})
        width = 0.8 / len(methods)
        cmap = plt.get_cmap("tab10")
        for k, (method, recs) in enumerate(sorted(methods.items())):
            means, stds = [], []
            for label in labels:
                vals = [rec["clean"]["dee"] if label == "clean" else (rec["per_corruption"].get(label) or {}).get("dee")
                        for rec in recs]
                ok = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
                complete = len(ok) == len(vals)  # never average over a missing value
                means.append(float(np.mean(ok)) if complete else np.nan)
                stds.append(float(np.std(ok, ddof=1)) if complete and len(ok) > 1 else 0.0)
            x = np.arange(len(labels)) + (k - (len(methods) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, label=f"{method} (n={len(recs)})", color=cmap(k % 10), capsize=2)
            mrr = [(rec.get("summary") or {}).get("mRR") for rec in recs]
            mrr_ok = all(isinstance(v, (int, float)) for v in mrr)
            ax2.bar(k, np.mean(mrr) if mrr_ok else np.nan, 0.7,
                    yerr=np.std(mrr, ddof=1) if mrr_ok and len(mrr) > 1 else 0.0, color=cmap(k % 10), capsize=2)
        ax.set_xticks(np.arange(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("DEE (lower is better)")
        ax.set_title(f"DEE per corruption (mean over severities), protocol {pid}", fontsize=9)
        ax.legend(fontsize=8)
        ax2.set_xticks(range(len(methods)))
        ax2.set_xticklabels(sorted(methods), rotation=45, ha="right", fontsize=8)
        ax2.set_ylabel("mRR % (higher is better)")
        ax2.set_title("mRR", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"robustness_{pid}_{sid}.png"
        out_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def parse_runs(items: list[str]) -> dict[str, Path]:
    """``--run METHOD[:PROFILE]=WORK_DIR`` items."""
    out = {}
    for item in items:
        method, sep, path = item.partition("=")
        if not sep or not method or not path:
            raise HarnessError(f"option --run {item!r}: expected METHOD=WORK_DIR")
        if not Path(path).is_dir():
            raise HarnessError(f"option --run {item!r}: {path} is not a directory")
        out[method] = Path(path)
    return out
