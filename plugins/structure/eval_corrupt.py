"""Corrupted-input evaluation of saved students (a stop-gap until the harness's KITTI-C-style
corruption suite exists).

For every run given (a result JSON of ``harness run`` plus the work dir holding its student
checkpoint) the student is rebuilt from the result's config, loaded from the last checkpoint of
its last stage, and scored on the run's TEST split, clean and under fixed corruptions, with the
run's own protocol (its ``scale`` policy) and, with ``--also-median``, with per-image median
scaling as well (the like-for-like comparison between a metric and a scale-less student).

Corruptions: the structure method's own operators (``stereodistill_plugins.structure.perturb``;
they are also its TRAINING perturbations, so for it these are in-distribution) at one fixed
severity, plus two operators it never trains on (``pixelate``, ``impulse_noise``: held out).
Every image gets its own generator seeded by ``(seed, corruption index, image index)``, so the
corrupted test set does not depend on the batch size or on the order of evaluation.

Usage::

    python -m stereodistill_plugins.structure.eval_corrupt \\
        --run /tmp/bench-results/structure__synth__synth_small__seed0.json /tmp/work-structure-0 \\
        --run /tmp/bench-results/baseline__synth__synth_small__seed0.json /tmp/work-baseline-0 \\
        --severity 0.6 --seed 0 --also-median --out corrupt.json
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.eval.protocol import Protocol, evaluate_depth_fn
from harness.host.manager import PluginHost

from .perturb import OPERATORS

#: the method's own operators used here (trained on) and the held-out ones
TRAINED_OPS = ("fog", "night", "rain", "motion_blur", "defocus_blur", "sensor_noise", "jpeg")
HELD_OUT_OPS = ("pixelate", "impulse_noise")


def pixelate(x: torch.Tensor, sev: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Held out: area-downsample by ``2 + 6 s`` (rounded) and upsample with nearest."""
    f = max(2, int(round(2 + 6 * float(sev.max()))))
    h, w = x.shape[-2:]
    small = F.adaptive_avg_pool2d(x, (max(1, h // f), max(1, w // f)))
    return F.interpolate(small, size=(h, w), mode="nearest")


def impulse_noise(x: torch.Tensor, sev: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Held out: salt-and-pepper noise on a fraction ``0.01 + 0.09 s`` of the values."""
    p = (0.01 + 0.09 * sev).view(-1, 1, 1, 1).to(x)
    u = torch.rand(x.shape, generator=gen).to(x)
    salt = torch.rand(x.shape, generator=gen).to(x) < 0.5
    return torch.where(u < p, salt.to(x.dtype), x)


HELD_OUT = {"pixelate": pixelate, "impulse_noise": impulse_noise}


def corrupt_fn(name: str):
    if name == "clean":
        return None
    if name in HELD_OUT:
        return HELD_OUT[name]
    return OPERATORS[name]


def load_student(result: dict, work_dir: Path, host: PluginHost) -> torch.nn.Module:
    """Rebuild the run's student from its config and load the last checkpoint of its last stage."""
    scfg = dict(result["config"]["student"])
    name = scfg.pop("type")
    student = host.catalog.build("students", name, **scfg)
    stages = [d for d in work_dir.iterdir() if d.is_dir() and (d / "last_checkpoint").is_file()]
    if not stages:
        raise FileNotFoundError(f"{work_dir}: no stage folder with a last_checkpoint")
    stage = max(stages, key=lambda d: (d / "last_checkpoint").stat().st_mtime)
    ckpt_path = Path((stage / "last_checkpoint").read_text().strip())
    # the harness's own mmengine checkpoint (it pickles optimiser/message-hub state)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state = {k[len("student."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("student.")}
    student.load_state_dict(state, strict=True)
    return student.eval()


def test_samples(result: dict, host: PluginHost):
    data = result["config"]["data"]
    h, w = data["input_size"]
    split = dict(data.get("test") or {})
    split.setdefault("split", "test")
    ds = host.catalog.build("datasets", data["dataset"], root=result["datasets"]["test"]["root"], height=h,
                            width=w, need=frozenset({"image", "meta"}), seed=0, **split)
    return ds


def evaluate_run(result: dict, work_dir: Path, host: PluginHost, corruptions, severity: float, seed: int,
                 scales, device: str = "cpu") -> dict:
    student = load_student(result, work_dir, host).to(device)
    ds = test_samples(result, host)
    base = Protocol.from_dict({k: v for k, v in result["protocol"].items() if k != "id"})
    images = [ds[i]["image"] for i in range(len(ds))]
    gts = [torch.from_numpy(ds.eval_gt(i)).float()[None, None] for i in range(len(ds))]
    out: dict = {}
    for ci, name in enumerate(corruptions):
        fn = corrupt_fn(name)
        corrupted = []
        for i, img in enumerate(images):
            x = img[None]
            if fn is not None:
                gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + ci * 10_007 + i)
                x = fn(x, torch.tensor([float(severity)]), gen).clamp(0, 1)
            corrupted.append(x)
        for scale in scales:
            protocol = base if scale is None else replace(base, scale=scale)
            summary = evaluate_depth_fn(lambda im: student.predict(im), zip(corrupted, gts), protocol, device=device)
            key = protocol.scale
            out.setdefault(key, {})[name] = {k: summary[k] for k in ("abs_rel", "sq_rel", "rmse", "a1")}
    return out


def dee(m: dict) -> float:
    """KITTI-C depth estimation error ``(abs_rel - a1 + 1) / 2``."""
    return (m["abs_rel"] - m["a1"] + 1.0) / 2.0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs=2, action="append", metavar=("RESULT_JSON", "WORK_DIR"), required=True)
    ap.add_argument("--severity", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corruptions", default=",".join(("clean",) + TRAINED_OPS + HELD_OUT_OPS))
    ap.add_argument("--also-median", action="store_true", help="also score with per-image median scaling")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    host = PluginHost()
    corruptions = [c for c in args.corruptions.split(",") if c]
    for c in corruptions:
        if c != "clean" and c not in OPERATORS and c not in HELD_OUT:
            raise SystemExit(f"unknown corruption {c!r}")
    rows = []
    for res_path, work in args.run:
        result = json.loads(Path(res_path).read_text())
        scales = [None] + (["median"] if args.also_median and result["protocol"]["scale"] != "median" else [])
        metrics = evaluate_run(result, Path(work), host, corruptions, args.severity, args.seed, scales)
        rows.append({"result": res_path, "work_dir": work, "method": result["method"], "seed": result["seed"],
                     "metrics": metrics})
        for scale, per in metrics.items():
            corr = [per[c] for c in corruptions if c != "clean"]
            mean_abs = sum(m["abs_rel"] for m in corr) / max(len(corr), 1)
            mdee = sum(dee(m) for m in corr) / max(len(corr), 1)
            print(f"{result['method']:>10} seed {result['seed']} scale={scale:<7} clean abs_rel "
                  f"{per.get('clean', {}).get('abs_rel', math.nan):.4f}  corrupted mean abs_rel {mean_abs:.4f}  mDEE {mdee:.4f}")
    report = {"severity": args.severity, "seed": args.seed, "corruptions": corruptions,
              "trained_ops": list(TRAINED_OPS), "held_out_ops": list(HELD_OUT_OPS), "runs": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
