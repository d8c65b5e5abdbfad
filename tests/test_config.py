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


# -- layering: datasets replace `data`, profiles set knobs only, width_mult -------------------
def _dataset_config(name):
    return PluginHost().catalog.get("datasets", name).extra["config"]


def test_a_dataset_config_replaces_data_and_the_method_config_applies_over_it():
    recursive = PluginHost().catalog.get("methods", "recursive").extra["config"]
    cfg = build_run_config(method="recursive", method_config=recursive, dataset_config=_dataset_config("kitti"))
    assert cfg.data.dataset == "kitti" and "generate" not in cfg.data  # no synth key leaks in
    assert cfg.data.train.split == "eigen_zhou_train" and cfg.data.train.vel_depth is False
    assert cfg.data.train.flip_mode == "swap" and cfg.data.train.flip_prob == 0.5  # the method's choice
    quick = build_run_config(method="baseline", method_config=None, dataset_config=_dataset_config("kitti"), quick=True)
    assert "generate" not in quick.data and list(quick.data.input_size) == [64, 192]
    synth_c = build_run_config(method="baseline", method_config=None, dataset_config=_dataset_config("synth-c"))
    assert synth_c.data.dataset == "synth-c" and synth_c.data.generate.frames == 1680
    assert synth_c.evaluate.robustness.enabled is True and synth_c.evaluate.teacher is True  # merged


def test_a_dataset_config_without_data_is_one_line(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("evaluate = dict(teacher=False)\n")
    with pytest.raises(HarnessError, match=f"dataset config {path}: has no `data` section"):
        build_run_config(method="baseline", method_config=None, dataset_config=str(path))


@pytest.mark.parametrize("method", ["baseline", "recursive", "structure"])
def test_quick_changes_knobs_never_the_methods_models(method):
    path = PluginHost().catalog.get("methods", method).extra["config"]
    full = build_run_config(method=method, method_config=path)
    quick = build_run_config(method=method, method_config=path, quick=True)
    for key in ("student", "teacher"):
        a, b = full[key].to_dict(), quick[key].to_dict()
        assert b.pop("base_width") == max(1, round(a.pop("base_width") * 0.5))
        assert a == b  # every other model key is the method's
    assert quick.method.to_dict() == full.method.to_dict()
    assert "width_mult" not in quick and quick.schedule.epochs == 1


def test_a_harness_profile_may_not_set_the_models(tmp_path, monkeypatch):
    from harness.config import loader

    (tmp_path / "bad.py").write_text("teacher = dict(max_disp=32)\nschedule = dict(epochs=1)\n")
    monkeypatch.setattr(loader, "CONFIG_DIR", tmp_path)
    with pytest.raises(HarnessError, match="profile 'bad' sets teacher: profiles set knobs only"):
        build_run_config(method="baseline", method_config=None, config_file=str(tmp_path / "bad.py"))


@pytest.mark.parametrize("value, widths", [("0.25", (4, 4)), ("2", (32, 32))])
def test_width_mult_scales_the_models(value, widths):
    cfg = build_run_config(method="baseline", method_config=None, cfg_options=[f"width_mult={value}"])
    assert (cfg.student.base_width, cfg.teacher.base_width) == widths and "width_mult" not in cfg
    with pytest.raises(HarnessError, match=r"config width_mult=-1: must be a positive number"):
        build_run_config(method="baseline", method_config=None, cfg_options=["width_mult=-1"])
