"""``harness`` command line: the entry point. Each command group (``harness.cli.<group>``) registers its
sub-parser and handler; this module assembles them and prints errors.

Errors print one line ``harness: error: ...`` on stderr (no traceback unless ``--debug``), classified
by :mod:`harness.cli.boundary`: exit 2 for usage errors, 1 for runtime failures (``RunFailure``, an
``OSError`` such as a full disk) and bugs; skipped files print ``harness: warning: ...``.
docs/reliability.md lists the cases.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from harness.cli import boundary, data, deploy, evaluate, leaderboard, listing, matrix, run
from harness.cli.common import Parser

GROUPS = (listing, run, matrix, leaderboard, data, evaluate, deploy)  # the order of `harness --help`


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="harness", description="Stereo/semantic -> monocular depth distillation benchmark harness")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None) == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # before torch initialises CUDA
    if not getattr(warnings.showwarning, "harness_one_line", False):
        warnings.showwarning = _one_line_harness_warnings(warnings.showwarning)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("harness: interrupted (use --resume to continue a run)", file=sys.stderr)
        return 130
    except Exception as exc:  # classified in one place: bad input, environment, translated, bug
        if args.debug:
            raise
        return boundary.report(exc)


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

