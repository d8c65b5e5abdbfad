"""What several command groups share: the one-line-error parser, the plugin host, the split options."""
from __future__ import annotations

import argparse
import warnings

from harness.errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other harness error
        self.exit(EXIT_USAGE, f"harness: error: {message}\n")


SEED_LIMIT = 2**32  # numpy's and mmengine's seeds are 32-bit


def seed_value(text: str) -> int:
    """An argparse type: a seed in [0, 2**32)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= seed < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{seed} is not a seed in [0, 2**32)")
    return seed


def plugin_host():
    """The plugin host, its registration warnings printed (one ``harness: warning:`` line each)."""
    from harness.host.manager import PluginHost, emit_plugin_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host = PluginHost()
        host.catalog  # registration warnings are raised here
    emit_plugin_warnings(caught)
    return host


def split_options(parser, required: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--split", help="split name" + ("" if required else " (default: the dataset config's test split)"))
    group.add_argument("--split-file", help="a split file in the dataset's line format")
