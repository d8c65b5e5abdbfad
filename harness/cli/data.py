"""``harness data``: synth, export-gt, check, stats, corrupt."""
from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

from harness.cli.common import Parser, plugin_host, seed_value, split_options


def register(sub) -> None:
    data = sub.add_parser("data", help="data tools")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    syn = dsub.add_parser("synth", help="write the procedural stereo set in KITTI raw layout")
    syn.add_argument("--out", required=True)
    syn.add_argument("--frames", type=int, default=200)
    syn.add_argument("--height", type=int, default=96)
    syn.add_argument("--width", type=int, default=320)
    syn.add_argument("--frames-per-drive", type=int, default=20)
    syn.add_argument("--seed", type=seed_value, default=0)
    syn.add_argument("--split-fractions", default="3,2,2", metavar="TRAIN,VAL,TEST",
                     help="shares of the drives per split (default 3,2,2: the benchmark's 36/24/24 of 84)")
    syn.add_argument("--eval-frames-per-drive", type=int, default=4,
                     help="evenly spaced frames listed per val/test drive (default 4; 0: every inner frame)")
    syn.add_argument("--workers", type=int, default=1, help="processes rendering drives (same bytes; default 1)")

    exp = dsub.add_parser("export-gt", help="write a split's evaluation GT to a no-pickle .npz (one array per frame)")
    exp.add_argument("--dataset", required=True, help="kitti or drivingstereo")
    exp.add_argument("--data-root", required=True)
    split_options(exp, required=True)
    exp.add_argument("--out", required=True, help="output .npz (keys 00000, 00001, ... and frames)")

    chk = dsub.add_parser("check", help="report missing or malformed files of a split (exit 1 if it cannot be evaluated)")
    chk.add_argument("--dataset", required=True, help="kitti or drivingstereo")
    chk.add_argument("--data-root", required=True)
    split_options(chk)

    sta = dsub.add_parser("stats", help="per-split scene statistics: frames, drives, near-pixel share, class shares, "
                          "depth quantiles, and whether the splits agree within the stated tolerance")
    sta.add_argument("--dataset", default="synth", help="dataset name (default synth)")
    sta.add_argument("--data-root", help="dataset root (default for synth: the benchmark set, generated into the cache)")
    sta.add_argument("--splits", default="train,val,test", help="config split keys, comma-separated (default all three)")
    sta.add_argument("--json", metavar="OUT", help="also write the statistics to this JSON file ('-': stdout only)")

    cor = dsub.add_parser("corrupt", help="KITTI-C-style corruptions: one image (--input) or a whole split "
                          "(--dataset, RoboDepth layout)")
    src = cor.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="IMG", help="one image (PNG/JPEG), corrupted at its own size")
    src.add_argument("--dataset", help="synth, kitti or drivingstereo: write a corrupted copy of a split")
    cor.add_argument("--data-root", help="dataset root (default for synth: generated into the cache)")
    cor.add_argument("--out", required=True, help="output image (--input) or directory (--dataset)")
    cor.add_argument("--corruption", metavar="NAME|all", help="a corruption, 'a,b' or all (default: all for --dataset)")
    cor.add_argument("--severity", metavar="1..5|all", help="1..5, '1,3' or all (default: all for --dataset)")
    cor.add_argument("--seed", type=seed_value, default=0, help="corruption seed (default 0)")
    cor.add_argument("--grid", action="store_true", help="with --input: write a picture, one row per corruption "
                     "(clean + the severities), to --out")
    cor.add_argument("--height", type=int, help="--dataset: image height (default: the dataset config's input size)")
    cor.add_argument("--width", type=int, help="--dataset: image width (default: the dataset config's input size)")
    cor.add_argument("--overwrite", action="store_true", help="--dataset: rewrite existing files")
    split_options(cor)
    for parser, handler in ((syn, cmd_data_synth), (exp, cmd_data_export_gt), (chk, cmd_data_check),
                            (sta, cmd_data_stats), (cor, cmd_data_corrupt)):
        parser.set_defaults(handler=handler)


def cmd_data_synth(args) -> int:
    from harness.data import synth
    from harness.errors import HarnessError, HarnessWarning
    from harness.pipeline.train import progress_callback

    if args.frames < 1:
        raise HarnessError(f"option --frames: must be >= 1, got {args.frames}")
    if args.height % 32 or args.width % 32 or args.height <= 0 or args.width <= 0:
        raise HarnessError(f"options --height/--width: {args.height}x{args.width} must be positive multiples of 32")
    try:
        fractions = tuple(float(x) for x in args.split_fractions.split(","))
    except ValueError:
        fractions = ()
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise HarnessError(f"option --split-fractions {args.split_fractions}: give three non-negative numbers "
                           "TRAIN,VAL,TEST, not all zero")
    if args.eval_frames_per_drive < 0:
        raise HarnessError(f"option --eval-frames-per-drive: must be >= 0, got {args.eval_frames_per_drive}")
    if args.workers < 1:
        raise HarnessError(f"option --workers: must be >= 1, got {args.workers}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise HarnessError(f"option --out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"option --out {out}: directory exists and is not empty")
    try:
        stats = synth.generate(out, frames=args.frames, seed=args.seed, height=args.height, width=args.width,
                               frames_per_drive=args.frames_per_drive, split_fractions=fractions,
                               eval_frames_per_drive=args.eval_frames_per_drive, workers=args.workers,
                               progress=progress_callback("synth"))
    except BaseException:  # an interrupted generation (a full disk, Ctrl-C) leaves nothing behind
        shutil.rmtree(out, ignore_errors=True)
        raise
    c = stats["counts"]
    empty = [s for s in ("train", "val", "test") if not c[s]["samples"]]
    if empty:
        warnings.warn(f"options --frames/--frames-per-drive: {args.frames} frames in drives of {args.frames_per_drive} "
                      f"leave split(s) {', '.join(empty)} without frames (each split needs a drive of its own); "
                      f"`harness run` refuses a set with an empty split", HarnessWarning, 2)
    print(f"wrote {stats['frames']} frames to {out} in {stats['seconds']:.1f}s "
          f"({stats['frames_per_second']:.1f} frames/s): "
          + ", ".join(f"{s} {c[s]['samples']} frames of {c[s]['drives']} drives" for s in ("train", "val", "test")))
    return 0


def cmd_data_export_gt(args) -> int:
    from harness.data.export_gt import export_gt

    stats = export_gt(dataset=args.dataset, data_root=args.data_root, out=args.out, split=args.split,
                      split_file=args.split_file, host=plugin_host())
    print(f"wrote GT of {stats['frames']} frames ({args.dataset} {stats['split']}, {stats['gt_source']}, "
          f"{stats['valid_pixels']} valid pixels) to {stats['path']} in {stats['seconds']:.1f}s "
          f"({stats['frames_per_second']:.1f} frames/s)")
    return 0


def cmd_data_check(args) -> int:
    from harness.data.check import check_split

    report = check_split(args.dataset, args.data_root, split=args.split, split_file=args.split_file, host=plugin_host())
    sys.stdout.write(report.format())
    return 0 if report.evaluable else 1


def cmd_data_stats(args) -> int:
    import json

    from harness.data import formats
    from harness.data.access import open_split
    from harness.data.stats import TOLERANCE, balance_report, format_stats, split_stats
    from harness.errors import HarnessError
    from harness.pipeline.train import progress_callback

    host = plugin_host()
    root, _ = _dataset_root(host, args.dataset, args.data_root)
    roles = [r.strip() for r in args.splits.split(",") if r.strip()]
    bad = [r for r in roles if r not in ("train", "val", "test")]
    if bad or not roles:
        raise HarnessError(f"option --splits {args.splits}: give train, val and/or test, comma-separated")
    cls = host.catalog.get("datasets", args.dataset).obj
    semantic = "semantic" in getattr(cls, "provides", ())
    need = frozenset({"meta", "semantic"} if semantic else {"meta"})
    stats = {}
    for role in roles:
        ds = open_split(args.dataset, root, role=role, need=need, host=host).dataset
        labels = getattr(ds, "labels", None) if semantic else None
        stats[role] = split_stats(ds, labels=labels, progress=progress_callback(f"stats {role}"))
    problems = balance_report(stats)
    record = {"dataset": args.dataset, "root": str(root), "splits": stats, "tolerance": TOLERANCE,
              "balance_problems": problems}
    if args.json == "-":
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
        return 0
    sys.stdout.write(f"{args.dataset} under {root}\n" + format_stats(stats))
    if len(stats) > 1:
        if problems:
            print("splits differ beyond the tolerance:")
            for line in problems:
                print(f"  {line}")
        else:
            print(f"splits agree within the tolerance (near share +-{TOLERANCE['near_share_rel']:.0%} of the mean, "
                  f"class shares +-{TOLERANCE['class_share_abs']:.2f})")
    if args.json:
        formats.atomic_write_bytes(Path(args.json), (json.dumps(record, indent=2) + "\n").encode())
        print(f"statistics -> {args.json}")
    return 0


def _dataset_root(host, name: str, data_root):
    """``--data-root`` (checked) or, for a dataset that generates itself (synth), its cached
    set for the dataset config; returns ``(root, data config)``."""
    from harness.config.loader import CONFIG_DIR, load_file
    from harness.errors import HarnessError
    from harness.pipeline.teacher_cache import cache_root
    from harness.pipeline.train import progress_callback

    entry = host.catalog.get("datasets", name)
    cfg_file = entry.extra.get("config") or str(CONFIG_DIR / "_base_" / "datasets" / "synth.py")
    data = load_file(cfg_file, "dataset config").to_dict()["data"]
    if data_root:
        root = Path(data_root)
        if not root.is_dir():
            raise HarnessError(f"option --data-root {root}: no such directory")
    elif entry.extra.get("prepare") is not None:
        root = entry.extra["prepare"](data, cache_root(None), progress_callback("data"))
    else:
        raise HarnessError(f"dataset {name!r} needs --data-root")
    return root, data


def cmd_data_corrupt(args) -> int:
    """``harness data corrupt``: one image, its picture, or a split."""
    from harness.data import corruptions, formats
    from harness.errors import HarnessError

    if args.input and not args.grid and not (args.corruption and args.severity):
        raise HarnessError("options --corruption/--severity: --input needs both (or --grid for a picture)")
    try:
        conds = corruptions.resolve_conditions(args.corruption or "all", args.severity or "all")
    except ValueError as exc:
        raise HarnessError(f"options --corruption/--severity: {exc}") from None
    if args.seed < 0:
        raise HarnessError(f"option --seed: must be non-negative, got {args.seed}")
    if args.input:
        src = Path(args.input)
        if not src.is_file():
            raise HarnessError(f"option --input {src}: no such file")
        try:
            img = formats.read_image(src)
        except (OSError, ValueError) as exc:
            raise HarnessError(f"option --input {src}: cannot read the image ({exc})") from None
        out = Path(args.out)
        if args.grid:
            names = list(dict.fromkeys(c for c, _ in conds))
            sevs = sorted({s for _, s in conds})
            formats.write_image(out, corruptions.grid_image(img, seed=args.seed, corruptions=names, severities=sevs))
            print(f"wrote {len(names)} x {len(sevs)} corruption grid of {src.name} to {out}")
            return 0
        if len(conds) != 1:
            raise HarnessError("options --corruption/--severity: --input takes one corruption and one severity "
                               "(or add --grid for a picture of several)")
        (name, sev), = conds
        formats.write_image(out, corruptions.corrupt(img, name, sev, seed=args.seed))
        print(f"wrote {name} severity {sev} (seed {args.seed}) of {src.name} to {out}")
        return 0
    return _data_corrupt_dataset(args, conds)


def _data_corrupt_dataset(args, conds) -> int:
    from harness.data.corrupted_views import BASE_OF, export_corrupted
    from harness.errors import HarnessError
    from harness.pipeline.train import progress_callback

    name = BASE_OF.get(args.dataset, args.dataset)
    host = plugin_host()
    root, data = _dataset_root(host, name, args.data_root)
    h, w = data["input_size"]
    h, w = args.height or h, args.width or w
    if h <= 0 or w <= 0:
        raise HarnessError(f"options --height/--width: {h}x{w} must be positive")
    split_cfg = dict(data.get("test") or {})
    if args.split or args.split_file:
        split_cfg["split"] = args.split or args.split_file
    base = host.catalog.build("datasets", name, root=str(root), height=h, width=w,
                              need=frozenset({"image", "meta"}), seed=0, **split_cfg)
    stats = export_corrupted(base, args.out, conds, seed=args.seed, overwrite=args.overwrite,
                             progress=progress_callback("corrupt"))
    print(f"wrote {stats['written']} images ({stats['frames']} frames x {stats['conditions']} conditions + clean, "
          f"{stats['skipped']} kept) to {args.out} in {stats['seconds']:.1f}s "
          f"({stats['images_per_second']:.1f} images/s)")
    return 0

