"""Like-for-like controls: declared at registration, recorded in results, listed for the matrix."""
import pytest

from harness.config.controls import ControlRun, control_runs, declared_control
from harness.config.loader import build_run_config
from harness.errors import HarnessError, PluginError
from harness.host.manager import PluginHost
from tests.plugins import controlled_method


@pytest.fixture(scope="module")
def catalog():
    return PluginHost(extra_plugins=[controlled_method]).catalog


def test_builtin_methods_declare_their_controls(catalog):
    assert declared_control(catalog, "baseline", "synth_small") is None
    assert declared_control(catalog, "adu", "synth_small") == {"method": "baseline", "profile": "synth_small"}
    assert declared_control(catalog, "selective", "synth_small") == {"method": "baseline", "profile": "synth_small_stereo"}
    assert control_runs(catalog, "ssmde", "synth_small")[0].config == "plugins/baseline/configs/synth_small_video.py"
    for m in ("recursive", "structure"):
        assert declared_control(catalog, m, "synth_small") == {"method": m, "profile": "synth_small_control"}
        assert declared_control(catalog, m, "synth_small_control") is None  # a control run has no control
    assert control_runs(catalog, "adu", "synth_small") == [ControlRun("baseline", "synth_small", "synth_small")]
    (sel,) = control_runs(catalog, "selective", "plugins/selective/configs/synth_small.py")  # a --config file
    assert sel.argv() == ["--method", "baseline", "--config", "plugins/baseline/configs/synth_small_stereo.py"]
    assert sel.matrix_run() == {"name": "baseline-synth_small_stereo", "method": "baseline",
                                "config": "plugins/baseline/configs/synth_small_stereo.py"}
    assert control_runs(catalog, "baseline", "synth_small") == []


def _cfg(method, catalog, config):
    return build_run_config(method=method, method_config=catalog.get("methods", method).extra["config"],
                            config_file=config).to_dict()


def _diff(a, b, prefix=""):
    keys = set(a) | set(b)
    out = set()
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= _diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.add(f"{prefix}{k}")
    return out


@pytest.mark.parametrize("method, changed", [
    ("recursive", {"method.loss_weights.stereo_ap", "method.loss_weights.stereo_lr", "method.loss_weights.stereo_sm",
                   "method.loss_weights.out", "method.loss_weights.feat", "method.loss_weights.nl",
                   "method.joint_loss_weights.stereo_ap", "method.joint_loss_weights.stereo_lr",
                   "method.joint_loss_weights.stereo_sm", "method.distill_train_teacher"}),
    # structure: also no graph-fusion pass (ssc_fuse: the teacher's graph features enter the decoder)
    ("structure", {"method.loss_weights.dsc", "method.loss_weights.ltd", "method.loss_weights.graph",
                   "method.ssc_fuse"}),
])
def test_self_controls_differ_from_the_method_only_in_distillation_terms(catalog, method, changed):
    from harness.config.loader import CONFIG_DIR

    (ctrl,) = control_runs(catalog, method, "synth_small")
    ours = _cfg(method, catalog, str(CONFIG_DIR / "synth_small.py"))
    theirs = _cfg(method, catalog, ctrl.config)
    assert _diff(ours, theirs) == changed | {"profile"}
    for key in changed - {"method.distill_train_teacher", "method.ssc_fuse"}:
        _, weights, term = key.split(".")
        assert theirs["method"][weights][term] == 0
    assert theirs["method"].get("distill_train_teacher", False) is False
    assert theirs["method"].get("ssc_fuse", False) is False


def test_quick_and_cfg_option_controls(catalog):
    assert control_runs(catalog, "controlled", "quick") == [ControlRun("baseline", "quick", quick=True)]
    assert declared_control(catalog, "self_controlled", "synth_small") == {"method": "self_controlled",
                                                                           "profile": "synth_small_control"}
    (run,) = control_runs(catalog, "self_controlled", "synth_small")
    assert run.argv() == ["--method", "self_controlled", "--config", "synth_small", "--cfg-options",
                          "method.loss_weights.l1=0.5", "profile=synth_small_control"]
    assert declared_control(catalog, "self_controlled", "synth_small_control") is None


def test_a_missing_control_profile_is_one_clear_error(catalog):
    with pytest.raises(HarnessError, match="control of method 'baseline': no profile 'synth_benchmark_stereo'"):
        control_runs(catalog, "selective", None)


def test_a_malformed_control_is_refused_at_registration():
    from harness import hookimpl

    class Bad:
        @hookimpl
        def harness_register_methods(self, register):
            register("badctl", "tests.plugins.sample_method:SampleStrategy", description="x", control="baseline")

    with pytest.raises(PluginError, match="plugin 'bad' method 'badctl': control 'baseline' is not"):
        host = PluginHost(autoload=False)
        host.register(Bad(), "bad")
        host.catalog
