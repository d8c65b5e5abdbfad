"""``harness`` command line: argument parsing only; each subcommand calls one function.

Errors print one line ``harness: error: ...`` on stderr (no traceback unless ``--debug``) and
exit 2 for usage errors, 1 for runtime failures (``RunFailure``, an ``OSError`` such as a full
disk); skipped files print ``harness: warning: ...``. docs/reliability.md lists the cases.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import warnings
from pathlib import Path

from harness.errors import EXIT_RUNTIME, EXIT_USAGE

LIST_KINDS = ("methods", "datasets", "teachers", "students", "metrics", "plugins", "corruptions")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other harness error
        self.exit(EXIT_USAGE, f"harness: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description="Stereo/semantic -> monocular depth distillation benchmark harness")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="list registered methods, datasets, teachers, students, metrics or plugins "
                        "(or the 18 image corruptions)")
    ls.add_argument("kind", choices=LIST_KINDS)

    run = sub.add_parser("run", help="train (teacher if needed, then student), evaluate, write a result JSON")
    run.add_argument("--method", required=True)
    run.add_argument("--dataset", help="dataset name (default: the config's, i.e. synth)")
    run.add_argument("--data-root", help="dataset root directory (default for synth: generated into the cache)")
    run.add_argument("--config", help="an mmengine config file merged over the method's config, or the name "
                     "of a bundled profile (synth_benchmark, synth_small)")
    run.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", default=[], help="config overrides")
    run.add_argument("--work-dir", help="checkpoints and logs (default: work_dirs/<method>[-quick]/seed<N>)")
    run.add_argument("--results", default="results", help="directory for the result JSON (default: results/)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int)
    seeds.add_argument("--seeds", type=_seed_list, metavar="S1,S2,...",
                       help="run each seed in turn in this process (one result file per seed), e.g. 0,1,2")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"))
    run.add_argument("--launcher", choices=("none", "pytorch"), help="pytorch: one of several processes started "
                     "by torchrun (DDP; gloo on CPU, NCCL on CUDA; batch sizes are per process)")
    run.add_argument("--quick", action="store_true", help="tiny smoke-test profile (< 1 min on 2 cores)")
    run.add_argument("--resume", action="store_true", help="continue from the work dir's last checkpoints")
    run.add_argument("--deterministic", action="store_true",
                     help="torch deterministic algorithms (config key deterministic; see docs/reliability.md)")
    # --- robustness (issue 9) ---
    run.add_argument("--eval-robustness", action="store_true",
                     help="after the clean test, evaluate the student on the corruption (and weather) conditions "
                     "(config evaluate.robustness; see docs/robustness.md)")
    run.add_argument("--corruption", metavar="NAME|all", help="robustness conditions: a corruption, 'a,b' or all "
                     "(implies --eval-robustness; `harness list corruptions`)")
    run.add_argument("--severity", metavar="1..5|all", help="robustness severities: 1..5, '1,3' or all "
                     "(implies --eval-robustness)")
    # --- end robustness ---

    lb = sub.add_parser("leaderboard", help="tabulate result files")
    lb.add_argument("--results", default="results")
    lb.add_argument("--format", default="github", help="github | latex | csv | html (one static page, sortable)")
    lb.add_argument("--metric", default="abs_rel", help="metric to rank by (default abs_rel)")
    lb.add_argument("--out", metavar="FILE", help="write the table to FILE (atomically) instead of stdout")
    lb.add_argument("--no-cost", action="store_true",
                    help="leave out the cost columns (parameters, FLOPs, latency, peak memory, teacher/student ratio)")
    lb.add_argument("--robustness", action="store_true",
                    help="the robustness table instead (DEE, mCE, mRR, CE per corruption, weather sets)")
    lb.add_argument("--robustness-reference", default="baseline", metavar="REF",
                    help="reference row of CE/mCE: 'baseline' (the baseline results of the same protocol: the "
                    "row's own profile, else the only baseline profile; default), 'baseline:PROFILE' (that "
                    "profile's) or 'robodepth_monodepth2' (RoboDepth's published MonoDepth2 table)")

    vis = sub.add_parser("visualize", help="pictures of the results: qualitative grid (input | GT | teacher | "
                         "each method's student) and robustness bar charts")
    vis.add_argument("--results", default="results", help="directory of result JSON files (default: results/)")
    vis.add_argument("--out-dir", help="where the PNGs go (default: <results>/figures)")
    vis.add_argument("--run", nargs="+", default=[], metavar="METHOD[:PROFILE]=WORK_DIR",
                     help="work dir of a run whose result records none (or whose folder moved); METHOD:PROFILE=DIR for one profile")
    vis.add_argument("--methods", help="comma-separated methods, in column order (default: all)")
    vis.add_argument("--seed", type=int, help="which seed's runs to show (default: each method's lowest)")
    vis.add_argument("--protocol", help="protocol id to show (needed when the results hold several)")
    vis.add_argument("--frames", type=int, default=3, help="test frames, evenly spaced over the split (default 3)")
    vis.add_argument("--data-root", help="dataset root when the recorded one moved")
    vis.add_argument("--only", choices=("qualitative", "robustness"), help="write only one kind of picture")

    data = sub.add_parser("data", help="data tools")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    syn = dsub.add_parser("synth", help="write the procedural stereo set in KITTI raw layout")
    syn.add_argument("--out", required=True)
    syn.add_argument("--frames", type=int, default=200)
    syn.add_argument("--height", type=int, default=96)
    syn.add_argument("--width", type=int, default=320)
    syn.add_argument("--frames-per-drive", type=int, default=20)
    syn.add_argument("--seed", type=int, default=0)

    exp = dsub.add_parser("export-gt", help="write a split's evaluation GT to a no-pickle .npz (one array per frame)")
    exp.add_argument("--dataset", required=True, help="kitti or drivingstereo")
    exp.add_argument("--data-root", required=True)
    _split_options(exp, required=True)
    exp.add_argument("--out", required=True, help="output .npz (keys 00000, 00001, ... and frames)")

    chk = dsub.add_parser("check", help="report missing or malformed files of a split (exit 1 if it cannot be evaluated)")
    chk.add_argument("--dataset", required=True, help="kitti or drivingstereo")
    chk.add_argument("--data-root", required=True)
    _split_options(chk)

    # --- robustness (issue 9) ---
    cor = dsub.add_parser("corrupt", help="KITTI-C-style corruptions: one image (--input) or a whole split "
                          "(--dataset, RoboDepth layout)")
    src = cor.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="IMG", help="one image (PNG/JPEG), corrupted at its own size")
    src.add_argument("--dataset", help="synth, kitti or drivingstereo: write a corrupted copy of a split")
    cor.add_argument("--data-root", help="dataset root (default for synth: generated into the cache)")
    cor.add_argument("--out", required=True, help="output image (--input) or directory (--dataset)")
    cor.add_argument("--corruption", metavar="NAME|all", help="a corruption, 'a,b' or all (default: all for --dataset)")
    cor.add_argument("--severity", metavar="1..5|all", help="1..5, '1,3' or all (default: all for --dataset)")
    cor.add_argument("--seed", type=int, default=0, help="corruption seed (default 0)")
    cor.add_argument("--grid", action="store_true", help="with --input: write a picture, one row per corruption "
                     "(clean + the severities), to --out")
    cor.add_argument("--height", type=int, help="--dataset: image height (default: the dataset config's input size)")
    cor.add_argument("--width", type=int, help="--dataset: image width (default: the dataset config's input size)")
    cor.add_argument("--overwrite", action="store_true", help="--dataset: rewrite existing files")
    _split_options(cor)
    # --- end robustness ---

    ev = sub.add_parser("eval", help="score saved predictions (.npz with 'depth' or 'disparity') under a dataset's protocol")
    ev.add_argument("--predictions", required=True, help="N x H x W (or N x 1 x H x W) 'depth' (m) or 'disparity' (1/depth)")
    ev.add_argument("--dataset", required=True, help="kitti or drivingstereo")
    ev.add_argument("--data-root", required=True)
    _split_options(ev)
    scaling = ev.add_mutually_exclusive_group()
    scaling.add_argument("--median-scaling", dest="median_scaling", action="store_true", default=None,
                         help="per-image median scaling (the default of both datasets' protocols)")
    scaling.add_argument("--no-median-scaling", dest="median_scaling", action="store_false",
                         help="metric predictions: no scaling")
    ev.add_argument("--stereo-factor", type=float, metavar="X",
                    help="multiply depth by X instead of median scaling (5.4 for Monodepth2 stereo models on KITTI)")
    ev.add_argument("--crop", choices=("none", "garg", "eigen"), help="override the protocol's crop")
    ev.add_argument("--gt-mask", choices=("range", "positive"), help="override the GT mask (range: min < gt < max)")
    ev.add_argument("--min-depth", type=float, help="override the protocol's minimum depth (m)")
    ev.add_argument("--max-depth", type=float, help="override the protocol's maximum depth / clamp (m)")
    ev.add_argument("--json", metavar="OUT", help="write the metrics, protocol and frame list to this JSON file")
    _predict_export_parsers(sub)
    return p


def _predict_export_parsers(sub) -> None:
    """``harness predict`` and ``harness export`` (issue 13)."""
    pr = sub.add_parser("predict", help="depth of your own images with a trained student, or disparity of a "
                        "rectified pair with a stereo teacher")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="RUN_OR_CKPT", help="a run's work dir or one of its checkpoints")
    src.add_argument("--run", metavar="DIR", help="a run's work dir (its last stage's latest checkpoint)")
    src.add_argument("--teacher", metavar="NAME|CKPT", help="sgbm, or a cached teacher (key, cache entry "
                     "folder or its teacher.pth)")
    pr.add_argument("--config", metavar="JSON", help="the run's result JSON, for work dirs without run_config.json")
    pr.add_argument("--input", metavar="PATH", help="student: an image, a folder of images or a quoted glob")
    pr.add_argument("--left", metavar="IMG", help="teacher: rectified left image")
    pr.add_argument("--right", metavar="IMG", help="teacher: rectified right image")
    pr.add_argument("--focal", type=float, help="teacher: focal length in px (with --baseline: write depth too)")
    pr.add_argument("--baseline", type=float, help="teacher: stereo baseline in metres")
    pr.add_argument("--max-disp", type=int, help="teacher sgbm: largest disparity searched in px (default 48)")
    pr.add_argument("--out", default="predictions", help="output folder (default: predictions/)")
    pr.add_argument("--npy", action="store_true", help="also write float32 .npy maps")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    ex = sub.add_parser("export", help="export a trained student alone as TorchScript or ONNX, checked "
                        "against the eager model")
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="RUN_OR_CKPT", help="a run's work dir or one of its checkpoints")
    src.add_argument("--run", metavar="DIR", help="a run's work dir")
    ex.add_argument("--config", metavar="JSON", help="the run's result JSON, for work dirs without run_config.json")
    ex.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    ex.add_argument("--out", required=True, metavar="FILE", help="output file (.pt / .onnx)")
    ex.add_argument("--runs", type=int, default=20, help="timed CPU runs for the median latency (default 20)")


def _seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2``: distinct non-negative integers, in the order given."""
    try:
        seeds = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers (e.g. 0,1,2)") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: seeds must be distinct non-negative integers")
    return seeds


def _split_options(parser, required: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--split", help="split name" + ("" if required else " (default: the dataset config's test split)"))
    group.add_argument("--split-file", help="a split file in the dataset's line format")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None) == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # before torch initialises CUDA
    from harness.errors import HarnessError

    if not getattr(warnings.showwarning, "harness_one_line", False):
        warnings.showwarning = _one_line_harness_warnings(warnings.showwarning)
    try:
        return COMMANDS[args.command](args)
    except HarnessError as exc:
        if args.debug:
            raise
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the environment failed mid-run (disk full, permissions): a runtime failure
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"harness: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("harness: interrupted (use --resume to continue a run)", file=sys.stderr)
        return 130


def _one_line_harness_warnings(show):
    """Harness warnings (a skipped file or checkpoint) print as one ``harness: warning:`` line."""
    from harness.errors import HarnessWarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, HarnessWarning):
            print(f"harness: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    showwarning.harness_one_line = True
    return showwarning


def _host():
    from harness.host.manager import PluginHost, emit_plugin_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host = PluginHost()
        host.catalog  # registration warnings are raised here
    emit_plugin_warnings(caught)
    return host


def cmd_list(args) -> int:
    if args.kind == "corruptions":  # robustness (issue 9): not a plugin registry
        from harness.data import corruptions

        for group, names in corruptions.GROUPS.items():
            for name in names:
                print(f"{name:<18} {group:<20} {corruptions.describe(name)}")
        return 0
    host = _host()
    if args.kind == "plugins":
        for name, info in sorted(host.info.items()):
            print(f"{name}\t{info.source}\tversion {info.version}\thooks: {', '.join(host.hooks_of(name))}")
        return 0
    for entry in sorted(host.catalog.entries[args.kind].values(), key=lambda e: e.name):
        print(f"{entry.name:<16} {entry.description}")
    return 0


def cmd_run(args) -> int:
    from harness.report import results
    from harness.config.loader import build_run_config
    from harness.pipeline.run import run

    host = _host()
    catalog = host.catalog
    method = catalog.get("methods", args.method)
    results_dir = results.check_writable_dir(args.results, "--results")
    dataset_config = None
    if args.dataset:
        ds = catalog.get("datasets", args.dataset)
        dataset_config = ds.extra.get("config")
    robustness_options = [o for o in args.cfg_options if o.startswith("evaluate.robustness")]
    cfg = build_run_config(
        method=args.method,
        method_config=method.extra.get("config"),
        dataset_config=dataset_config,
        config_file=resolve_profile(args.config),
        quick=args.quick,
        cfg_options=[o for o in args.cfg_options if o not in robustness_options],
    )
    _configure_robustness(cfg, args, robustness_options)
    if args.dataset:
        cfg.data["dataset"] = args.dataset
    if args.data_root:
        root = Path(args.data_root)
        if not root.is_dir():
            from harness.errors import HarnessError

            raise HarnessError(f"option --data-root {root}: no such directory")
        cfg.data["root"] = str(root)
    if args.seed is not None:
        cfg.seed = args.seed
    if args.device:
        cfg.device = args.device
    if args.deterministic:
        cfg.deterministic = True
    if args.launcher:
        cfg.launcher = args.launcher
    seeds = args.seeds or [int(cfg.seed)]
    work_dirs = {s: _work_dir(args, s, several=len(seeds) > 1) for s in seeds}
    for work_dir in work_dirs.values():  # every seed's folders are checked before the first trains
        results.check_writable_dir(work_dir, "--work-dir")
    for seed, work_dir in work_dirs.items():
        seed_cfg = copy.deepcopy(cfg)  # a run may fill in its config; each seed starts from the same one
        seed_cfg.seed = seed
        result, path = run(seed_cfg, host, work_dir=work_dir, results_dir=results_dir, resume=args.resume)
        if path is None:  # not rank 0 of a multi-process run: rank 0 reports
            continue
        m = result["metrics"]
        line = " | ".join(f"{role} abs_rel {v['abs_rel']:.4f}" for role, v in m.items() if isinstance(v, dict) and "abs_rel" in v)
        label = f"{args.method} seed {seed}" if len(seeds) > 1 else args.method
        print(f"{label}: {line} ({result['timings']['total_s']:.0f}s) -> {path}")
    return 0


def _work_dir(args, seed: int, several: bool) -> Path:
    """Default ``work_dirs/<method>[-quick]/seed<N>``; with several seeds an explicit
    ``--work-dir`` gets one ``seed<N>`` folder per seed inside it."""
    if args.work_dir:
        return Path(args.work_dir) / f"seed{seed}" if several else Path(args.work_dir)
    return Path("work_dirs") / f"{args.method}{'-quick' if args.quick else ''}" / f"seed{seed}"


def _configure_robustness(cfg, args, options: list[str]) -> None:
    """Robustness (issue 9): ``--eval-robustness``/``--corruption``/``--severity``, then the
    ``--cfg-options evaluate.robustness.KEY=VALUE`` items, over the config's ``evaluate.robustness``
    (the key is optional in configs: its defaults live in ``harness.eval.robustness.DEFAULTS``)."""
    from harness.eval import robustness
    from harness.config.loader import parse_cfg_options
    from harness.errors import HarnessError

    current = (cfg.get("evaluate") or {}).get("robustness") or {}
    current = current.to_dict() if hasattr(current, "to_dict") else dict(current)
    if args.eval_robustness or args.corruption or args.severity:
        current["enabled"] = True
    if args.corruption:
        current["corruptions"] = args.corruption
    if args.severity:
        current["severities"] = args.severity
    for key, value in parse_cfg_options(options).items():
        sub = key[len("evaluate.robustness."):] if key.startswith("evaluate.robustness.") else ""
        if not sub or "." in sub or sub not in robustness.DEFAULTS:
            raise HarnessError(f"option --cfg-options: unknown config key {key!r} "
                               f"(known: {', '.join('evaluate.robustness.' + k for k in robustness.DEFAULTS)})")
        current[sub] = value
    if current:
        cfg.evaluate["robustness"] = current
        robustness.settings(cfg)  # validate before any training


def resolve_profile(config: str | None) -> str | None:
    """``--config NAME`` may name a bundled profile in ``harness/config/configs`` instead of a file."""
    from harness.config.loader import CONFIG_DIR

    if config and not Path(config).exists() and (CONFIG_DIR / f"{config}.py").is_file():
        return str(CONFIG_DIR / f"{config}.py")
    return config


def cmd_leaderboard(args) -> int:
    from harness.report.leaderboard import render, render_robustness
    from harness.report.results import atomic_write_text, load_results

    results = load_results(args.results)  # files that are not results: one warning line each
    if args.robustness:
        text = render_robustness(results, fmt=args.format, reference=args.robustness_reference)
    else:
        from harness.report.cost import result_cost_provider
        from harness.report.paper import reported_numbers
        from harness.pipeline.teacher_cache import cache_root

        from harness.errors import HarnessWarning

        catalog = _host().catalog
        warn = lambda message: warnings.warn(message, HarnessWarning, 2)  # noqa: E731 - one-line printer in main()
        costs = None if args.no_cost else result_cost_provider(catalog, cache_root(None), warn)
        text = render(results, fmt=args.format, metric=args.metric, costs=costs, papers=reported_numbers(catalog))
    if args.out:
        out = Path(args.out)
        if not out.parent.is_dir():
            from harness.errors import HarnessError

            raise HarnessError(f"option --out {out}: directory {out.parent} does not exist")
        atomic_write_text(out, text)
        print(f"wrote {args.format} leaderboard of {len(results)} result files to {out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_visualize(args) -> int:
    from harness.report import visualize
    from harness.errors import HarnessError
    from harness.report.results import load_results

    if args.frames < 1:
        raise HarnessError(f"option --frames: must be >= 1, got {args.frames}")
    work_dirs = visualize.parse_runs(args.run)
    results = load_results(args.results)
    if not results:
        raise HarnessError(f"option --results {args.results}: no result files")
    out_dir = Path(args.out_dir or Path(args.results) / "figures")
    methods = [m for m in (args.methods or "").split(",") if m] or None
    written = []
    if args.only != "robustness":
        runs = visualize.select_runs(results, seed=args.seed, protocol=args.protocol, methods=methods)
        written.append(visualize.qualitative_grid(runs, _host().catalog, out_dir / "qualitative.png",
                                                  frames=args.frames, work_dirs=work_dirs, data_root=args.data_root))
    if args.only != "qualitative":
        charts = visualize.robustness_charts([r for r in results if not methods or r["method"] in methods], out_dir)
        if not charts and args.only == "robustness":
            raise HarnessError("no result has robustness metrics: run `harness run --method NAME --eval-robustness`")
        written += charts
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_data(args) -> int:
    return {"synth": cmd_data_synth, "export-gt": cmd_data_export_gt, "check": cmd_data_check,
            "corrupt": cmd_data_corrupt}[args.data_command](args)


def cmd_data_synth(args) -> int:
    from harness.data import synth
    from harness.errors import HarnessError
    from harness.pipeline.train import progress_callback

    if args.frames < 1:
        raise HarnessError(f"option --frames: must be >= 1, got {args.frames}")
    if args.height % 32 or args.width % 32 or args.height <= 0 or args.width <= 0:
        raise HarnessError(f"options --height/--width: {args.height}x{args.width} must be positive multiples of 32")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"option --out {out}: directory exists and is not empty")
    stats = synth.generate(out, frames=args.frames, seed=args.seed, height=args.height, width=args.width,
                           frames_per_drive=args.frames_per_drive, progress=progress_callback("synth"))
    print(f"wrote {stats['frames']} frames to {out} in {stats['seconds']:.1f}s "
          f"({stats['frames_per_second']:.1f} frames/s)")
    return 0


def cmd_data_export_gt(args) -> int:
    from harness.data.export_gt import export_gt

    stats = export_gt(dataset=args.dataset, data_root=args.data_root, out=args.out, split=args.split,
                      split_file=args.split_file, host=_host())
    print(f"wrote GT of {stats['frames']} frames ({args.dataset} {stats['split']}, {stats['gt_source']}, "
          f"{stats['valid_pixels']} valid pixels) to {stats['path']} in {stats['seconds']:.1f}s "
          f"({stats['frames_per_second']:.1f} frames/s)")
    return 0


def cmd_data_check(args) -> int:
    from harness.data.check import check_split

    report = check_split(args.dataset, args.data_root, split=args.split, split_file=args.split_file, host=_host())
    sys.stdout.write(report.format())
    return 0 if report.evaluable else 1


def cmd_data_corrupt(args) -> int:
    """Robustness (issue 9): ``harness data corrupt`` (one image, its picture, or a split)."""
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
    from harness.config.loader import CONFIG_DIR, load_file
    from harness.data.corrupted_views import BASE_OF, export_corrupted
    from harness.errors import HarnessError
    from harness.pipeline.teacher_cache import cache_root
    from harness.pipeline.train import progress_callback

    name = BASE_OF.get(args.dataset, args.dataset)
    host = _host()
    entry = host.catalog.get("datasets", name)
    cfg_file = entry.extra.get("config") or str(CONFIG_DIR / "_base_" / "datasets" / "synth.py")
    data = load_file(cfg_file, "dataset config").to_dict()["data"]
    if args.data_root:
        root = Path(args.data_root)
        if not root.is_dir():
            raise HarnessError(f"option --data-root {root}: no such directory")
    elif entry.extra.get("prepare") is not None:
        root = entry.extra["prepare"](data, cache_root(None), progress_callback("data"))
    else:
        raise HarnessError(f"dataset {name!r} needs --data-root")
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


def cmd_eval(args) -> int:
    from harness.eval.predictions import evaluate_predictions, format_table, write_report

    overrides = {"crop": args.crop, "gt_mask": args.gt_mask, "min_depth": args.min_depth, "max_depth": args.max_depth}
    report = evaluate_predictions(
        predictions=args.predictions, dataset=args.dataset, data_root=args.data_root, split=args.split,
        split_file=args.split_file, median_scaling=args.median_scaling, stereo_factor=args.stereo_factor,
        protocol_overrides=overrides, host=_host(),
    )
    sys.stdout.write(format_table(report))
    if args.json:
        write_report(report, args.json)
        print(f"metrics -> {args.json}")
    return 0


def cmd_predict(args) -> int:
    """Issue 13: a student on images, or a stereo teacher on a pair."""
    from harness.deploy import predict
    from harness.errors import HarnessError
    from harness.pipeline.teacher_cache import cache_root
    from harness.pipeline.train import progress_callback

    if args.teacher:
        if args.input or args.config:
            raise HarnessError("options --input/--config: for a student (--checkpoint/--run); a teacher takes "
                               "--left and --right")
        if not (args.left and args.right):
            raise HarnessError("options --left/--right: --teacher needs both images of a rectified pair")
        if (args.focal is None) != (args.baseline is None):
            raise HarnessError("options --focal/--baseline: give both to write depth, or neither")
        for name in ("focal", "baseline", "max_disp"):
            value = getattr(args, name)
            if value is not None and value <= 0:
                raise HarnessError(f"option --{name.replace('_', '-')}: must be positive, got {value}")
        left = predict.read_rgb(Path(args.left), "option --left")
        right = predict.read_rgb(Path(args.right), "option --right")
        teacher = predict.load_teacher(_host(), args.teacher, cache_root(None), args.max_disp)
        disp = predict.predict_pair(teacher, left, right)
        out = predict.check_out_dir(args.out)
        stem = Path(args.left).stem
        written = predict.write_map(out, stem, "disp", disp, npy=args.npy)
        if args.focal is not None:
            depth = predict.disparity_to_depth(disp, args.focal, args.baseline)
            written += predict.write_map(out, stem, "depth", depth, npy=args.npy)
        print(f"teacher {teacher.name}: disparity {disp.min():.1f}..{disp.max():.1f} px -> "
              f"{len(written)} files in {out}")
        return 0
    if not args.input:
        raise HarnessError("option --input: required with --checkpoint/--run (an image, folder or glob)")
    if args.left or args.right or args.focal or args.baseline or args.max_disp:
        raise HarnessError("options --left/--right/--focal/--baseline/--max-disp: only with --teacher")
    inputs = predict.find_images(args.input)
    student = predict.load_student(_host(), args.checkpoint or args.run, args.config)
    out = predict.check_out_dir(args.out)
    quiet = args.quiet or len(inputs) == 1
    written = predict.predict_images(student, inputs, out, npy=args.npy,
                                     progress=None if quiet else progress_callback("predict"))
    print(f"{student.method} student ({student.student_type}, {student.checkpoint.name}): "
          f"{len(inputs)} image(s) at {student.input_size[0]}x{student.input_size[1]} -> {len(written)} files in {out}")
    return 0


def cmd_export(args) -> int:
    """Issue 13: the student alone as TorchScript/ONNX, checked and timed."""
    from harness.deploy import export, predict
    from harness.errors import HarnessError

    if args.runs < 1:
        raise HarnessError(f"option --runs: must be >= 1, got {args.runs}")
    student = predict.load_student(_host(), args.checkpoint or args.run, args.config)
    report = export.export_student(student.model, args.format, args.out, student.input_size, runs=args.runs)
    print(f"exported {student.method} student ({student.student_type}, {report['parameters']:,} parameters) "
          f"to {report['path']} ({args.format}, {report['bytes'] / 1e6:.1f} MB); "
          f"max |diff| {report['max_abs_diff']:.2e} m, max rel {report['max_rel_diff']:.2e}; "
          f"median CPU latency at {student.input_size[0]}x{student.input_size[1]}: eager "
          f"{report['eager_ms']:.1f} ms, exported {report['exported_ms']:.1f} ms ({report['runs']} runs)")
    return 0


COMMANDS = {"list": cmd_list, "run": cmd_run, "leaderboard": cmd_leaderboard, "visualize": cmd_visualize,
            "data": cmd_data, "eval": cmd_eval, "predict": cmd_predict, "export": cmd_export}


if __name__ == "__main__":
    sys.exit(main())
