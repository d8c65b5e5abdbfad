"""The example plugin package of docs/examples/response_kd: loaded through $STEREODISTILL_PLUGINS,
its own tests, and (slow) pip-installed into a fresh virtual environment and run end to end."""
from __future__ import annotations

import ast
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from harness.host.manager import PluginHost

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "response_kd"
#: the public harness packages (docs/plugins.md, "The public API"); `harness` itself: its exports
PUBLIC = ("harness.distill", "harness.eval", "harness.data", "harness.models", "harness.testing",
          "harness.types", "harness.errors")
SMALL = ["data.train.frames=16", "data.val.frames=4", "data.test.frames=4"]


def test_the_example_loads_through_the_env_var(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("STEREODISTILL_PLUGINS", "response_kd")
    host = PluginHost()
    assert host.info["response_kd"].source.startswith("$STEREODISTILL_PLUGINS")
    catalog = host.catalog
    assert catalog.get("methods", "response_kd").plugin == "response_kd"
    assert {"planes"} <= set(catalog.names("datasets")) and "abs_log" in catalog.names("metrics")
    assert Path(catalog.get("datasets", "planes").extra["config"]).is_file()


def test_the_examples_own_tests_pass(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
                           str(EXAMPLE / "tests")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 passed" in proc.stdout


def _private_imports(path: Path) -> list[str]:
    """Imports of ``path`` outside the public harness API, or of an underscore name."""
    import harness

    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules, names = [node.module], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [a.name for a in node.names], []
        else:
            continue
        for module in modules:
            if module == "harness":
                bad += [f"harness.{n}" for n in names if n not in harness.__all__]
            elif module.startswith("harness."):
                public = any(module == p or module.startswith(p + ".") for p in PUBLIC)
                if not public or any(part.startswith("_") for part in module.split(".") + names):
                    bad.append(f"{module} ({', '.join(names)})" if names else module)
    return bad


@pytest.mark.parametrize("root", ["plugins", "docs/examples"])
def test_plugins_import_only_the_public_harness_api(root):
    """A method plugin needs no private import: what ``harness`` exports and the public packages
    (no ``harness.pipeline``, ``harness.host``, ``harness.config``, ... and no underscore name)."""
    bad = [f"{path.relative_to(REPO)}: {name}" for path in sorted((REPO / root).rglob("*.py"))
           for name in _private_imports(path)]
    assert not bad, "private harness imports:\n" + "\n".join(bad)


@pytest.mark.slow
def test_the_example_installs_into_a_fresh_venv_and_runs(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the harness as this test sees it (an editable install in the outer environment, say)
    outer = [p for p in sys.path if p.endswith("site-packages")] + site.getsitepackages()
    Path(purelib, "outer_env.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    src = shutil.copytree(EXAMPLE, tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))  # builds write here
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    str(src)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("STEREODISTILL_PLUGINS", "PYTHONPATH")}
    env["STEREODISTILL_CACHE"] = str(tmp_path / "cache")
    listed = subprocess.run([str(py), "-m", "harness.cli", "list", "methods"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert "response_kd" in listed
    proc = subprocess.run(
        [str(py), "-m", "harness.cli", "run", "--method", "response_kd", "--dataset", "planes", "--quick",
         "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
         "--cfg-options", "progress=False", *SMALL],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "results").glob("response_kd__planes__quick__seed0.json")
    result = json.loads(path.read_text())
    assert result["method_plugin"] == "response_kd" and result["protocol"]["dataset"] == "planes"
    assert {"gt", "resp"} <= set(result["losses"]["student"])
    assert result["metrics"]["student"]["abs_log"] > 0  # the example's metric, on every row
    assert result["teacher"]["type"] == "stereo" and result["teacher"]["mode"] == "frozen"
