"""``harness predict`` (a student on images, a stereo teacher on a pair) and ``harness export``
(the student alone as TorchScript/ONNX, checked against the eager model and timed)."""
from __future__ import annotations

from pathlib import Path

from harness.cli.common import plugin_host


def register(sub) -> None:
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
    pr.add_argument("--max-disp", type=int, help="teacher sgbm: largest disparity searched in px (default: "
                    "an eighth of the image width, rounded up to 16)")
    pr.add_argument("--out", default="predictions", help="output folder (default: predictions/)")
    pr.add_argument("--npy", action="store_true", help="also write float32 .npy maps")
    pr.add_argument("--post_process", "--post-process", dest="post_process", action="store_true",
                    help="student: Monodepth2 flip post-processing (also predict the mirrored image, fuse the disparities)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    ex = sub.add_parser("export", help="export a trained student alone as TorchScript or ONNX, checked "
                        "against the eager model")
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="RUN_OR_CKPT", help="a run's work dir or one of its checkpoints")
    src.add_argument("--run", metavar="DIR", help="a run's work dir")
    ex.add_argument("--config", metavar="JSON", help="the run's result JSON, for work dirs without run_config.json")
    ex.add_argument("--format", required=True, choices=("export", "torchscript", "onnx"),
                    help="export: torch.export program (.pt2, torch.export.load; not deprecated); torchscript: "
                    "torch.jit.trace (deprecated in current torch); onnx")
    ex.add_argument("--out", required=True, metavar="FILE", help="output file (.pt2 / .pt / .onnx)")
    ex.add_argument("--runs", type=int, default=20, help="timed CPU runs for the median latency (default 20)")
    pr.set_defaults(handler=cmd_predict)
    ex.set_defaults(handler=cmd_export)


def cmd_predict(args) -> int:
    """A student on images, or a stereo teacher on a pair."""
    from harness.deploy import predict
    from harness.errors import HarnessError
    from harness.pipeline.teacher_cache import cache_root
    from harness.pipeline.train import progress_callback

    if args.teacher:
        if args.input or args.config or args.post_process:
            raise HarnessError("options --input/--config/--post_process: for a student (--checkpoint/--run); a "
                               "teacher takes --left and --right")
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
        teacher = predict.load_teacher(plugin_host(), args.teacher, cache_root(None), args.max_disp)
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
    student = predict.load_student(plugin_host(), args.checkpoint or args.run, args.config)
    out = predict.check_out_dir(args.out)
    quiet = args.quiet or len(inputs) == 1
    written = predict.predict_images(student, inputs, out, npy=args.npy, post_process=args.post_process,
                                     progress=None if quiet else progress_callback("predict"))
    print(f"{student.method} student ({student.student_type}, {student.checkpoint.name}): "
          f"{len(inputs)} image(s) at {student.input_size[0]}x{student.input_size[1]} -> {len(written)} files in {out}")
    return 0


def cmd_export(args) -> int:
    """The student alone as TorchScript/ONNX, checked and timed."""
    from harness.deploy import export, predict
    from harness.errors import HarnessError

    if args.runs < 1:
        raise HarnessError(f"option --runs: must be >= 1, got {args.runs}")
    student = predict.load_student(plugin_host(), args.checkpoint or args.run, args.config)
    report = export.export_student(student.model, args.format, args.out, student.input_size, runs=args.runs)
    print(f"exported {student.method} student ({student.student_type}, {report['parameters']:,} parameters) "
          f"to {report['path']} ({args.format}, {report['bytes'] / 1e6:.1f} MB); "
          f"max |diff| {report['max_abs_diff']:.2e} m, max rel {report['max_rel_diff']:.2e}; "
          f"median CPU latency at {student.input_size[0]}x{student.input_size[1]}: eager "
          f"{report['eager_ms']:.1f} ms, exported {report['exported_ms']:.1f} ms ({report['runs']} runs)")
    return 0

