"""Errors the harness reports to users as one line (no traceback unless ``--debug``).

Exit codes: 2 for usage errors (a bad option, config, name or input path: fix the command),
1 for runtime failures (the run started and could not finish: a diverged loss, a full disk,
a corrupt file met mid-run). docs/reliability.md lists every case.
"""

EXIT_USAGE = 2
EXIT_RUNTIME = 1


class HarnessError(Exception):
    """A problem with the user's input, configuration or a plugin, worth one clear line.

    The CLI prints ``harness: error: <message>`` on stderr and exits with ``exit_code``.
    Messages name the file or option at fault and say what is wrong.
    """

    exit_code = EXIT_USAGE


class PluginError(HarnessError):
    """A plugin broke the hook contract (name collision, bad registration, unknown hook)."""


class RunFailure(HarnessError):
    """A run started with valid input and could not finish (exit code 1)."""

    exit_code = EXIT_RUNTIME


class HarnessWarning(UserWarning):
    """Something was skipped and the harness went on; the CLI prints ``harness: warning: ...``."""

class EnvironmentFailure(RunFailure):
    """The machine lacks what the run asks for (e.g. ``--device cuda`` without a GPU): exit 1."""

    exit_code = 1
