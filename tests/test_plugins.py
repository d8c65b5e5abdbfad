"""Hook registration, collisions, fault isolation and entry-point discovery."""
import subprocess
import sys
import textwrap
import warnings

import pytest

from harness import hookspecs
from harness.errors import PluginError
from harness.host.manager import PluginHost, PluginWarning
from tests.plugins import broken_registration, colliding, sample_method, unknown_hook


def test_builtin_plugins_come_from_entry_points():
    host = PluginHost()
    assert "core" in host.info and "baseline" in host.info
    assert host.info["baseline"].source.startswith("entry point stereodistill:baseline")
    cat = host.catalog
    assert "baseline" in cat.names("methods")
    assert {"synth"} <= set(cat.names("datasets"))
    assert {"stereo", "sgbm"} <= set(cat.names("teachers"))
    assert "resnet" in cat.names("students")
    assert "abs_rel" in cat.names("metrics")
    assert cat.get("methods", "baseline").plugin == "baseline"


def test_in_process_plugin_registers_and_unregisters():
    host = PluginHost(extra_plugins=[sample_method])
    assert "sample" in host.catalog.names("methods")
    strategy = host.catalog.build("methods", "sample", loss_weights={"l1": 1.0})
    assert type(strategy).__name__ == "SampleStrategy"
    host.unregister(host.pm.get_name(sample_method))
    assert "sample" not in host.catalog.names("methods")


def test_name_collision_is_one_clear_error():
    host = PluginHost(extra_plugins=[colliding])
    with pytest.raises(PluginError, match=r"method 'baseline' is registered by both plugin 'baseline' and plugin"):
        host.catalog


def test_failing_registration_warns_and_others_still_work():
    host = PluginHost(extra_plugins=[broken_registration])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = host.catalog.names("methods")
    assert "baseline" in names
    msgs = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert len(msgs) == 1 and "failed in harness_register_methods" in msgs[0] and "boom" in msgs[0]


def test_unknown_hook_is_rejected():
    with pytest.raises(PluginError, match="harness_register_methodz"):
        PluginHost(autoload=False, extra_plugins=[unknown_hook])


def test_bad_registration_names_rejected():
    from harness import hookimpl

    class BadName:
        @hookimpl
        def harness_register_methods(self, register):
            register("Bad Name", object, description="x")

    with pytest.raises(PluginError, match="lower-case identifiers"):
        PluginHost(autoload=False, extra_plugins=[BadName()]).catalog

    class NoDescription:
        @hookimpl
        def harness_register_methods(self, register):
            register("nodesc", object)

    with pytest.raises(PluginError, match="without a description"):
        PluginHost(autoload=False, extra_plugins=[NoDescription()]).catalog


def test_every_hookspec_is_prefixed_documented_and_in_the_author_docs():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    names = [n for n in dir(hookspecs) if n.startswith("harness_")]
    assert len(names) >= 6
    for n in names:
        fn = getattr(hookspecs, n)
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40, n
        assert f"`{n}" in doc, f"{n} has no section in docs/plugins.md"


def _write_external_package(tmp_path, body):
    src = tmp_path / "src"
    (src / "extplug").mkdir(parents=True)
    (src / "extplug" / "__init__.py").write_text(textwrap.dedent(body))
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "extplug"
        version = "1.2.3"
        [project.entry-points.stereodistill]
        extplug = "extplug"
        [tool.setuptools]
        packages = ["extplug"]
    """))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True, capture_output=True)
    return site


@pytest.mark.slow
def test_external_plugin_package_appears_without_core_edit(tmp_path):
    site = _write_external_package(tmp_path, '''
        from harness import LossDict, Strategy, hookimpl

        class ExtStrategy(Strategy):
            def compute_loss(self, batch, s_out, t_out, ctx):
                raise NotImplementedError

        @hookimpl
        def harness_register_methods(register):
            register("extmethod", ExtStrategy, description="A method from an external package")
    ''')
    env = {"PYTHONPATH": str(site), "PATH": "", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "harness.cli", "list", "methods"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "extmethod" in out.stdout and "A method from an external package" in out.stdout
    assert "baseline" in out.stdout
    plugins = subprocess.run([sys.executable, "-m", "harness.cli", "list", "plugins"], capture_output=True, text=True, env=env)
    line = next(ln for ln in plugins.stdout.splitlines() if ln.startswith("extplug"))
    assert "entry point stereodistill:extplug (extplug)" in line and "1.2.3" in line and "harness_register_methods" in line
    env["STEREODISTILL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    off = subprocess.run([sys.executable, "-m", "harness.cli", "list", "methods"], capture_output=True, text=True, env=env)
    assert "extmethod" not in off.stdout and "baseline" in off.stdout


@pytest.mark.slow
def test_external_plugin_that_fails_to_import_is_one_warning(tmp_path):
    site = _write_external_package(tmp_path, "raise ImportError('missing dependency foo')\n")
    env = {"PYTHONPATH": str(site), "PATH": "", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "harness.cli", "list", "methods"], capture_output=True, text=True, env=env)
    assert out.returncode == 0
    assert "baseline" in out.stdout
    warn = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(warn) == 1, out.stderr
    assert warn[0].startswith("harness: warning: plugin 'extplug'") and "missing dependency foo" in warn[0]


def test_env_var_plugins_are_loaded_once(monkeypatch):
    monkeypatch.setenv("STEREODISTILL_PLUGINS", "tests.plugins.sample_method, tests.plugins.sample_method")
    host = PluginHost()
    assert "sample" in host.catalog.names("methods")
    assert host.info["tests.plugins.sample_method"].source == "$STEREODISTILL_PLUGINS"
    monkeypatch.setenv("STEREODISTILL_PLUGINS", "no.such.module")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PluginHost()
    assert any("no.such.module" in str(w.message) for w in caught)
