"""Assemble a run's mmengine ``Config``: defaults, dataset, method, user file, profile, overrides.

Layers, later wins: ``harness/config/configs/synth_benchmark.py`` (its ``_base_`` holds the
dataset, model, schedule and runtime defaults) -> the dataset's config when ``--dataset`` names
another dataset (its ``data`` section *replaces* the default one, its other sections are merged)
-> the method plugin's config (so a method's choices, e.g. its flips, hold on every dataset) ->
``--config FILE`` -> the ``--quick`` profile -> ``--cfg-options key=value``. Every file is a plain
mmengine Python config and may use ``_base_`` itself.

A harness profile (``--quick``, or a bundled profile named by ``--config NAME``) sets only
*knobs*: the schedule, the size of generated data and of the network input, the supervision
regime (``data.supervision``), logging, and ``width_mult``, a width multiplier applied to
``base_width`` of the student and the teacher when the layers are merged (it is consumed: the
resolved config holds the scaled widths). It never
sets ``method``, ``student`` or ``teacher``: the models are the method's. A profile's
``data.generate`` is dropped for a dataset that is not generated (no ``data.generate``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mmengine.config import Config, DictAction

from harness.errors import HarnessError

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "synth_benchmark.py"
QUICK_PROFILE = CONFIG_DIR / "_base_" / "profiles" / "quick.py"
#: sections that belong to the method and that a harness profile must not set
METHOD_SECTIONS = ("method", "student", "teacher")
#: model sections whose ``base_width`` ``width_mult`` scales
SCALED_MODELS = ("student", "teacher")


def load_file(path: str | Path, what: str) -> Config:
    """Read one mmengine config file, turning any failure into one line naming the file."""
    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"{what} {p}: no such file")
    try:
        cfg = Config.fromfile(str(p))
        for key in cfg.keys():  # an import in the file is lazy: a missing module fails only here
            cfg[key]
        return cfg
    except Exception as exc:  # syntax errors, bad _base_ paths, missing imports, ...
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"{what} {p}: cannot be read as an mmengine config: {msg}") from exc


def parse_cfg_options(items: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` items (mmengine ``DictAction`` value syntax: ``a=1``, ``b=[1,2]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise HarnessError(f"option --cfg-options: {item!r} is not of the form key=value")
        if not all(part.isidentifier() or part.isdigit() for part in key.split(".")):
            raise HarnessError(f"option --cfg-options: {key!r} is not a dotted config key")
        try:
            out[key] = DictAction._parse_iterable(raw)
        except (AssertionError, RecursionError, ValueError, IndexError):  # unbalanced brackets, quotes
            raise HarnessError(f"option --cfg-options: {item!r}: the value cannot be parsed (brackets or quotes "
                               f"unbalanced? values look like 1, 1.5, abc, [1,2], (1,2))") from None
    return out


def apply_cfg_options(cfg: Config, options: dict[str, Any]) -> None:
    """Merge overrides; every parent of a key must already exist in the config."""
    tree = cfg.to_dict()
    for key in options:
        parts = key.split(".")
        node: Any = tree
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(sorted(node.keys())) if isinstance(node, dict) else "-"
                where = ".".join(parts[: i + 1])
                raise HarnessError(f"option --cfg-options: unknown config key {where!r} (known here: {known})")
            node = node[part]
        if not isinstance(node, dict):
            raise HarnessError(f"option --cfg-options: {'.'.join(parts[:-1])!r} is not a config section")
        if len(parts) == 1 and parts[0] not in node:
            raise HarnessError(f"option --cfg-options: unknown top-level config key {parts[0]!r}")
    cfg.merge_from_dict(options)


def build_run_config(
    *,
    method: str,
    method_config: str | None,
    dataset_config: str | None = None,
    config_file: str | None = None,
    quick: bool = False,
    cfg_options: list[str] | None = None,
) -> Config:
    """Merge the configuration layers of one run (see the module docstring)."""
    options = parse_cfg_options(cfg_options)  # validate syntax before reading any file
    cfg = load_file(DEFAULT_CONFIG, "config")
    if dataset_config:
        layer = load_file(dataset_config, "dataset config").to_dict()
        data = layer.pop("data", None)
        if not isinstance(data, dict):
            raise HarnessError(f"dataset config {dataset_config}: has no `data` section")
        cfg.merge_from_dict(layer)
        cfg.data = data
    if method_config:
        cfg.merge_from_dict(load_file(method_config, f"method {method!r} config").to_dict())
    cfg.setdefault("method", {})
    cfg.method["type"] = method
    if config_file:
        layer = load_file(config_file, "option --config")
        if Path(config_file).resolve().parent == CONFIG_DIR.resolve():
            apply_profile(cfg, layer, f"profile {Path(config_file).stem!r}")
        else:
            keep_sections(cfg, layer.to_dict(), f"option --config {config_file}")
            cfg.merge_from_dict(layer.to_dict())
    if quick:
        apply_profile(cfg, load_file(QUICK_PROFILE, "quick profile"), "profile 'quick'")
    cfg.profile = "quick" if quick else Path(config_file).stem if config_file else DEFAULT_CONFIG.stem
    apply_cfg_options(cfg, options)
    if cfg.method.get("type") != method:
        raise HarnessError("option --cfg-options: method.type cannot be changed (use --method)")
    apply_width_mult(cfg)
    return cfg


def keep_sections(cfg, layer: dict, what: str, prefix: str = "") -> None:
    """Refuse a layer that puts a plain value where the config has a section (``schedule = 5``):
    merging more layers over it would fail deep inside mmengine."""
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if isinstance(cfg.get(key), dict) and not isinstance(value, dict):
            raise HarnessError(f"config {path}={value!r}: must be a section (a dict of keys), as in the "
                               f"defaults ({what})")
        if isinstance(cfg.get(key), dict) and isinstance(value, dict):
            keep_sections(cfg[key], value, what, f"{path}.")


def apply_profile(cfg: Config, profile: Config, what: str) -> None:
    """Merge a harness profile: knobs only (see the module docstring)."""
    layer = profile.to_dict()
    owned = sorted(set(layer) & set(METHOD_SECTIONS))
    if owned:
        raise HarnessError(f"{what} sets {', '.join(owned)}: profiles set knobs only "
                           f"(schedule, data size, width_mult); the models belong to the method")
    data = layer.get("data")
    if isinstance(data, dict) and "generate" in data and "generate" not in (cfg.get("data") or {}):
        data.pop("generate")
    cfg.merge_from_dict(layer)


def apply_width_mult(cfg: Config) -> None:
    """Scale ``base_width`` of the student and the teacher by ``width_mult`` and drop the knob."""
    mult = cfg.pop("width_mult", 1.0)
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult > 0:
        raise HarnessError(f"config width_mult={mult!r}: must be a positive number")
    if mult == 1:
        return
    for key in SCALED_MODELS:
        model = cfg.get(key)
        if model is not None and isinstance(model.get("base_width"), int):
            model["base_width"] = max(1, round(model["base_width"] * mult))


def section(cfg: Config, key: str) -> dict[str, Any]:
    """A plain-dict copy of a config section (what builders receive as keyword arguments)."""
    value = cfg.get(key)
    if value is None:
        return {}
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)
