"""``harness leaderboard`` (tables of the result files) and ``harness visualize`` (their pictures)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from harness.cli.common import plugin_host, seed_value


def register(sub) -> None:
    lb = sub.add_parser("leaderboard", help="tabulate result files")
    lb.add_argument("--results", default="results")
    lb.add_argument("--format", default="github", help="github | latex | csv | html (one static page, sortable)")
    lb.add_argument("--metric", default="abs_rel", help="metric to rank by (default abs_rel)")
    lb.add_argument("--metrics", metavar="A,B,...", help="metric columns in this order, extra (plugin) metrics "
                    "included (default: abs_rel sq_rel rmse rmse_log a1 a2 a3)")
    lb.add_argument("--per-drive", action="store_true", help="after each table, the ranking metric per test "
                    "drive (seeds pooled), outliers marked * (the html page always has them)")
    lb.add_argument("--out", metavar="FILE", help="write the table to FILE (atomically) instead of stdout")
    lb.add_argument("--no-cost", action="store_true",
                    help="leave out the cost columns (parameters, FLOPs, latency, peak memory, teacher/student ratio)")
    lb.add_argument("--robustness", action="store_true",
                    help="the robustness table instead (DEE, mCE, mRR, CE per corruption, weather sets)")
    lb.add_argument("--robustness-reference", default="baseline", metavar="REF",
                    help="reference row of CE/mCE: 'baseline' (the baseline results of the same protocol: the "
                    "row's own profile, else the only baseline profile; default), 'baseline:PROFILE' (that "
                    "profile's) or 'robodepth_monodepth2' (RoboDepth's published MonoDepth2 table)")
    lb.set_defaults(handler=cmd_leaderboard)

    vis = sub.add_parser("visualize", help="pictures of the results: qualitative grid (input | GT | teacher | "
                         "each method's student) and robustness bar charts")
    vis.add_argument("--results", default="results", help="directory of result JSON files (default: results/)")
    vis.add_argument("--out-dir", help="where the PNGs go (default: <results>/figures)")
    vis.add_argument("--run", nargs="+", default=[], metavar="METHOD[:PROFILE]=WORK_DIR",
                     help="work dir of a run whose result records none (or whose folder moved); METHOD:PROFILE=DIR for one profile")
    vis.add_argument("--methods", help="comma-separated methods, in column order (default: all)")
    vis.add_argument("--seed", type=seed_value, help="which seed's runs to show (default: each method's lowest)")
    vis.add_argument("--protocol", help="protocol id to show (needed when the results hold several)")
    vis.add_argument("--frames", type=int, default=3, help="test frames, evenly spaced over the split (default 3)")
    vis.add_argument("--data-root", help="dataset root when the recorded one moved")
    vis.add_argument("--only", choices=("qualitative", "robustness"), help="write only one kind of picture")
    vis.set_defaults(handler=cmd_visualize)


def cmd_leaderboard(args) -> int:
    from harness.report.leaderboard import parse_metrics, render, render_robustness
    from harness.report.results import atomic_write_text, load_results

    metrics = parse_metrics(args.metrics)  # a usage error before any file is read
    results = load_results(args.results)  # files that are not results: one warning line each
    if args.robustness:
        text = render_robustness(results, fmt=args.format, reference=args.robustness_reference)
    else:
        from harness.report.cost import result_cost_provider
        from harness.report.paper import reported_numbers
        from harness.pipeline.teacher_cache import cache_root

        from harness.errors import HarnessWarning

        catalog = plugin_host().catalog
        warn = lambda message: warnings.warn(message, HarnessWarning, 2)  # noqa: E731 - one-line printer in main()
        costs = None if args.no_cost else result_cost_provider(catalog, cache_root(None), warn)
        text = render(results, fmt=args.format, metric=args.metric, costs=costs, papers=reported_numbers(catalog),
                      metrics=metrics, per_drive=args.per_drive)
    if args.out:
        out = Path(args.out)
        from harness.errors import HarnessError

        if not out.parent.is_dir():
            raise HarnessError(f"option --out {out}: directory {out.parent} does not exist")
        if out.is_dir():
            raise HarnessError(f"option --out {out}: is a directory; give a file name")
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
        written.append(visualize.qualitative_grid(runs, plugin_host().catalog, out_dir / "qualitative.png",
                                                  frames=args.frames, work_dirs=work_dirs, data_root=args.data_root))
    if args.only != "qualitative":
        charts = visualize.robustness_charts([r for r in results if not methods or r["method"] in methods], out_dir)
        if not charts and args.only == "robustness":
            raise HarnessError("no result has robustness metrics: run `harness run --method NAME --eval-robustness`")
        written += charts
    for path in written:
        print(f"wrote {path}")
    return 0

