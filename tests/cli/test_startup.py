"""Start-up: ``harness --help`` and ``harness list ...`` read the plugins' names and descriptions
without importing torch or mmengine (lazy exports, ``"module:Class"`` registration)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, json, sys
from harness.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in ("torch", "mmengine", "numba", "scipy") if m in sys.modules)
print(json.dumps({"code": code, "lines": len(out.getvalue().splitlines()), "heavy": heavy}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["list", "methods"], ["list", "datasets"], ["list", "teachers"],
                                  ["list", "students"], ["list", "metrics"], ["list", "plugins"]])
def test_help_and_list_do_not_import_torch(argv):
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and report["lines"] > 1
    assert report["heavy"] == [], report


def test_lazy_registration_resolves_on_use():
    from harness.host.manager import PluginHost

    host = PluginHost()
    entry = host.catalog.get("methods", "adu")
    assert isinstance(entry.target, str)  # registered as a reference, not imported
    from stereodistill_plugins.adu import ADUStrategy

    assert entry.obj is ADUStrategy and entry.target is ADUStrategy
    teacher = host.catalog.build("teachers", "sgbm", max_disp=16)
    assert type(teacher).__name__ == "SGBMTeacher"


def test_bad_reference_is_one_plugin_error():
    from harness.errors import PluginError
    from harness.host.manager import Catalog

    cat = Catalog()
    with pytest.raises(PluginError, match="'package.module:Attribute' reference"):
        cat.add("students", "p", "x", "not a reference", description="d")
    cat.add("students", "p", "y", "harness.models.student:NoSuchClass", description="d")
    with pytest.raises(PluginError, match="student 'y' of plugin 'p': cannot import .*NoSuchClass"):
        cat.build("students", "y")
