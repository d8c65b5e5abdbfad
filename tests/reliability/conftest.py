"""Helpers for the reliability suite: the harness CLI in a subprocess or in-process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE_PLUGINS = "tests.reliability.sample_plugins"


def subprocess_env(cache, plugins: str = SAMPLE_PLUGINS) -> dict[str, str]:
    return dict(os.environ, STEREODISTILL_CACHE=str(cache), STEREODISTILL_PLUGINS=plugins,
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def harness_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *map(str, args)]


def run_harness(*args, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(harness_cmd(*args), capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``harness ARGS`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(result, code: int, *fragments: str) -> str:
    """Assert the bad-input contract: exactly one ``harness: error:`` line, the exit code, no traceback."""
    got, _, err = result
    assert got == code, result
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("harness: warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("harness: error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def sample_plugins(monkeypatch):
    """Load the reliability sample plugins in in-process CLI calls."""
    monkeypatch.setenv("STEREODISTILL_PLUGINS", SAMPLE_PLUGINS)
