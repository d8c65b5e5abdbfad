"""The ``harness`` command line (``app``: the parser and the command handlers)."""
