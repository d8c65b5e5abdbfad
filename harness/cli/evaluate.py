"""``harness eval``: score saved predictions under a dataset's protocol."""
from __future__ import annotations

import sys

from harness.cli.common import plugin_host, split_options


def register(sub) -> None:
    ev = sub.add_parser("eval", help="score saved predictions (.npz with 'depth' or 'disparity') under a dataset's protocol")
    ev.add_argument("--predictions", required=True, help=".npz with N x H x W (or N x 1 x H x W) 'depth' (m) or "
                    "'disparity' (1/depth), or a Monodepth2 .npy of disparities")
    ev.add_argument("--post_process", "--post-process", dest="post_process", action="store_true",
                    help="Monodepth2 flip post-processing: fuse the predictions of the mirrored images "
                    "(.npz '*_flipped', or a .npy of 2N maps: the N frames, then their mirrored images)")
    ev.add_argument("--dataset", required=True, help="kitti or drivingstereo")
    ev.add_argument("--data-root", required=True)
    split_options(ev)
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
    ev.set_defaults(handler=cmd_eval)


def cmd_eval(args) -> int:
    from harness.eval.predictions import evaluate_predictions, format_table, write_report

    overrides = {"crop": args.crop, "gt_mask": args.gt_mask, "min_depth": args.min_depth, "max_depth": args.max_depth}
    report = evaluate_predictions(
        predictions=args.predictions, dataset=args.dataset, data_root=args.data_root, split=args.split,
        split_file=args.split_file, median_scaling=args.median_scaling, stereo_factor=args.stereo_factor,
        protocol_overrides=overrides, host=plugin_host(), post_process=args.post_process,
    )
    sys.stdout.write(format_table(report))
    if args.json:
        write_report(report, args.json)
        print(f"metrics -> {args.json}")
    return 0

