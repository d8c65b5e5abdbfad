"""Errors the harness reports to users as one line (no traceback unless ``--debug``)."""


class HarnessError(Exception):
    """A problem with the user's input, configuration or a plugin, worth one clear line.

    The CLI prints ``harness: error: <message>`` on stderr and exits with ``exit_code``.
    Messages name the file or option at fault and say what is wrong.
    """

    exit_code = 2


class PluginError(HarnessError):
    """A plugin broke the hook contract (name collision, bad registration, unknown hook)."""


class EnvironmentFailure(HarnessError):
    """The machine lacks what the run asks for (e.g. ``--device cuda`` without a GPU): exit 1."""

    exit_code = 1
