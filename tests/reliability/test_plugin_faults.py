"""A plugin that fails on import or raises in a hook is reported by name; the others keep working."""
from __future__ import annotations

import pytest

from harness import HarnessError, hookimpl
from harness.config.loader import build_run_config
from harness.host.manager import PluginHost, PluginWarning
from tests.reliability import faulty_hooks
from tests.reliability.conftest import run_cli


class _Witness:
    """A well-behaved plugin recording that its run hooks were called."""

    def __init__(self):
        self.configured = self.written = False

    @hookimpl
    def harness_configure_run(self, cfg):
        self.configured = True

    @hookimpl
    def harness_result_written(self, result, path):
        self.written = True


def test_plugin_failing_on_import_is_one_warning_and_the_rest_works(capsys, monkeypatch):
    monkeypatch.setenv("STEREODISTILL_PLUGINS", "tests.reliability.broken_import,tests.reliability.sample_plugins")
    code, out, err = run_cli(capsys, "list", "methods")
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: warning: plugin 'tests.reliability.broken_import'")
    assert "RuntimeError: this plugin is broken on purpose" in lines[0] and "Traceback" not in err
    names = {ln.split()[0] for ln in out.splitlines()}
    assert {"baseline", "noisy", "nan_at"} <= names


@pytest.mark.parametrize("witness_first", [True, False])
def test_plugin_raising_in_configure_run_is_named_and_others_run(witness_first):
    witness = _Witness()
    plugins = [witness, faulty_hooks] if witness_first else [faulty_hooks, witness]
    host = PluginHost(autoload=False, extra_plugins=plugins)
    cfg = build_run_config(method="baseline", method_config=None, quick=True)
    with pytest.warns(PluginWarning, match=r"plugin 'tests\.reliability\.faulty_hooks' failed in "
                                           r"harness_configure_run and is skipped: KeyError"):
        host.configure_run(cfg)
    assert witness.configured


def test_plugin_raising_in_result_written_is_named_and_others_run():
    witness = _Witness()
    host = PluginHost(autoload=False, extra_plugins=[faulty_hooks, witness])
    with pytest.warns(PluginWarning, match=r"'tests\.reliability\.faulty_hooks' failed in harness_result_written: "
                                           r"OSError: export target unreachable"):
        host.result_written({}, "r.json")
    assert witness.written


def test_a_plugin_refusing_a_config_is_still_an_error():
    class Refuses:
        @hookimpl
        def harness_configure_run(self, cfg):
            raise HarnessError("config schedule.epochs: this plugin needs at least 2")

    host = PluginHost(autoload=False, extra_plugins=[Refuses()])
    with pytest.raises(HarnessError, match="needs at least 2"):
        host.configure_run(build_run_config(method="baseline", method_config=None, quick=True))
