"""Config assembly: _base_ inheritance, method merge, --quick, --cfg-options validation."""
import pytest

from harness.config.loader import build_run_config, parse_cfg_options
from harness.errors import HarnessError
from harness.host.manager import PluginHost


@pytest.fixture(scope="module")
def baseline_cfg_path():
    return PluginHost().catalog.get("methods", "baseline").extra["config"]


def test_defaults_inherit_all_bases(baseline_cfg_path):
    cfg = build_run_config(method="baseline", method_config=baseline_cfg_path)
    assert cfg.data.dataset == "synth"
    assert cfg.student.type == "resnet" and cfg.teacher.type == "stereo"
    assert cfg.schedule.epochs > 1 and cfg.method.type == "baseline"
    assert cfg.method.supervision == "gt"
    assert cfg.profile == "synth_benchmark"


def test_quick_profile_and_overrides(baseline_cfg_path):
    cfg = build_run_config(method="baseline", method_config=baseline_cfg_path, quick=True,
                           cfg_options=["schedule.epochs=3", "method.loss_weights.gt=0.5", "data.input_size=[64,224]"])
    assert cfg.profile == "quick"
    assert cfg.schedule.epochs == 3
    assert cfg.method.loss_weights.gt == 0.5
    assert list(cfg.data.input_size) == [64, 224]
    assert cfg.student.base_width == 8  # from the quick profile


@pytest.mark.parametrize("item, message", [
    ("schedule.epochs", "is not of the form key=value"),
    ("=3", "is not of the form key=value"),
    ("schedule..epochs=3", "is not a dotted config key"),
])
def test_bad_option_syntax(item, message):
    with pytest.raises(HarnessError, match=message):
        parse_cfg_options([item])


@pytest.mark.parametrize("item, message", [
    ("schedul.epochs=3", "unknown config key 'schedul'"),
    ("nonsense=1", "unknown top-level config key 'nonsense'"),
    ("seed.x=1", "'seed' is not a config section"),
    ("method.type=other", "method.type cannot be changed"),
])
def test_unknown_keys_are_rejected(baseline_cfg_path, item, message):
    with pytest.raises(HarnessError, match=message):
        build_run_config(method="baseline", method_config=baseline_cfg_path, cfg_options=[item])


def test_user_config_file_errors_name_the_file(tmp_path, baseline_cfg_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(HarnessError, match=f"option --config {missing}: no such file"):
        build_run_config(method="baseline", method_config=baseline_cfg_path, config_file=str(missing))
    broken = tmp_path / "broken.py"
    broken.write_text("schedule = dict(epochs=\n")
    with pytest.raises(HarnessError, match=f"option --config {broken}: cannot be read"):
        build_run_config(method="baseline", method_config=baseline_cfg_path, config_file=str(broken))


def test_user_config_with_its_own_base(tmp_path, baseline_cfg_path):
    (tmp_path / "base.py").write_text("schedule = dict(epochs=7)\n")
    (tmp_path / "mine.py").write_text("_base_ = ['base.py']\nschedule = dict(batch_size=2)\n")
    cfg = build_run_config(method="baseline", method_config=baseline_cfg_path, config_file=str(tmp_path / "mine.py"))
    assert cfg.schedule.epochs == 7 and cfg.schedule.batch_size == 2
    assert cfg.profile == "mine"
