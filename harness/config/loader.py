"""Assemble a run's mmengine ``Config``: defaults, method, user file, profile, overrides.

Merge order (later wins): ``harness/config/configs/synth_benchmark.py`` (its ``_base_`` holds the
dataset, model, schedule and runtime defaults) -> the method plugin's config -> the dataset's
config when ``--dataset`` names another dataset -> ``--config FILE`` -> the ``--quick``
profile -> ``--cfg-options key=value``. Every file is a plain mmengine Python config and may
use ``_base_`` itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mmengine.config import Config, DictAction

from harness.errors import HarnessError

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "synth_benchmark.py"
QUICK_PROFILE = CONFIG_DIR / "_base_" / "profiles" / "quick.py"


def load_file(path: str | Path, what: str) -> Config:
    """Read one mmengine config file, turning any failure into one line naming the file."""
    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"{what} {p}: no such file")
    try:
        return Config.fromfile(str(p))
    except Exception as exc:  # syntax errors, bad _base_ paths, ...
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
        out[key] = DictAction._parse_iterable(raw)
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
    if method_config:
        cfg.merge_from_dict(load_file(method_config, f"method {method!r} config").to_dict())
    cfg.setdefault("method", {})
    cfg.method["type"] = method
    if dataset_config:
        cfg.merge_from_dict(load_file(dataset_config, "dataset config").to_dict())
    if config_file:
        cfg.merge_from_dict(load_file(config_file, "option --config").to_dict())
    if quick:
        cfg.merge_from_dict(load_file(QUICK_PROFILE, "quick profile").to_dict())
    cfg.profile = "quick" if quick else Path(config_file).stem if config_file else DEFAULT_CONFIG.stem
    apply_cfg_options(cfg, options)
    if cfg.method.get("type") != method:
        raise HarnessError("option --cfg-options: method.type cannot be changed (use --method)")
    return cfg


def section(cfg: Config, key: str) -> dict[str, Any]:
    """A plain-dict copy of a config section (what builders receive as keyword arguments)."""
    value = cfg.get(key)
    if value is None:
        return {}
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)
