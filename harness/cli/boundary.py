"""One error policy at the CLI boundary: every exception that reaches ``main`` is classified.

* :class:`~harness.errors.HarnessError`: bad input (exit 2) or a runtime failure (its own exit code);
  its message names the file or option.
* an environment failure (``OSError`` such as a full disk, ``MemoryError``, a missing package): exit 1,
  one line with the file the OS names.
* an error raised inside data loading, mmengine's builders, the optimiser or an LR scheduler (a
  ``ValueError`` naming a truncated file, an option the optimiser refuses): translated to a usage error
  (exit 2) that keeps the original message.
* anything else is a bug: one line naming the plugin or module it came from, the log file that holds
  the traceback and ``--debug`` (which shows it instead); exit 1.

:func:`report` prints the line and returns the exit code; docs/reliability.md lists the catalogue.
"""
from __future__ import annotations

import errno
import os
import sys
import time
import traceback
from pathlib import Path

from harness.errors import EXIT_RUNTIME, EXIT_USAGE, HarnessError

#: (path fragment of a frame, what the harness was doing there); the innermost match wins
TRANSLATED = (
    ("/torch/utils/data/", "while loading data"),
    ("/harness/data/", "while loading data"),
    ("/mmengine/registry/", "while building from the config"),
    ("/mmengine/optim/scheduler/", "config schedule.param_scheduler"),
    ("/mmengine/optim/optimizer/", "config schedule.optimizer"),
    ("/torch/optim/", "config schedule.optimizer"),
)
TRANSLATED_TYPES = (ValueError, KeyError, TypeError, AssertionError, IndexError, EOFError)
#: top-level packages that are libraries, never the culprit of a bug
LIBRARIES = ("torch", "mmengine", "numpy", "pluggy", "cv2", "PIL", "filelock", "importlib", "runpy")


def report(exc: BaseException) -> int:
    """Print one ``harness: error:`` line for ``exc`` on stderr and return the exit code."""
    line, code = classify(exc)
    print(f"harness: error: {line}", file=sys.stderr)
    return code


def classify(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, HarnessError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno == errno.ENOSPC:
            reason = "No space left on device (nothing was half-written; free space and rerun)"
        return f"{where}{reason}", EXIT_RUNTIME
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (f"the package providing {exc.name!r} is not installed (pip install the project's dependencies: "
                f"pip install -e .)"), EXIT_RUNTIME
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller schedule.batch_size or data.input_size)", EXIT_RUNTIME
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, TRANSLATED_TYPES):
        for frame in reversed(frames):
            context = next((what for part, what in TRANSLATED if part in frame.filename.replace(os.sep, "/")), None)
            if context:
                return f"{context}: {one_line(exc)}", EXIT_USAGE
    log = write_log(exc)
    return (f"internal error in {culprit(frames)}: {one_line(exc)} (the traceback is in {log}; "
            f"rerun with --debug to see it)"), EXIT_RUNTIME


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def module_of(filename: str) -> str | None:
    """The imported module a source file belongs to (None for files of no loaded module)."""
    target = os.path.realpath(filename)
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if path and os.path.realpath(path) == target:
            return name
    return None


def culprit(frames) -> str:
    """``plugin module X (file:line)`` or ``module harness.x`` of the innermost own frame."""
    for frame in reversed(frames):
        name = module_of(frame.filename)
        if name is None or name.split(".")[0] in LIBRARIES or name.split(".")[0] in sys.stdlib_module_names:
            continue
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        kind = "module" if name.split(".")[0] == "harness" else "plugin module"
        return f"{kind} {name} ({where})"
    last = frames[-1] if frames else None
    return f"{Path(last.filename).name}:{last.lineno}" if last else "the harness"


def write_log(exc: BaseException) -> str:
    """Write the traceback to ``<cache>/logs/error-<time>-<pid>.log`` (or the temp folder)."""
    from harness.pipeline.teacher_cache import cache_root

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    name = f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (cache_root(None) / "logs", Path(os.environ.get("TMPDIR", "/tmp"))):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"harness {' '.join(sys.argv[1:])}\n{text}")
            return str(folder / name)
        except OSError:
            continue
    return "nowhere (no writable log folder)"
