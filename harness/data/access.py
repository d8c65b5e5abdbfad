"""Open one split of a registered dataset by name, with its config's defaults and protocol.

Used by ``harness data export-gt``, ``harness data check`` and ``harness eval``: the dataset
class comes from the plugin catalog, the split's keyword arguments and the evaluation protocol
from the dataset's config file (``harness/config/configs/_base_/datasets/<name>.py``), so the CLI
tools evaluate exactly like ``harness run`` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.eval.protocol import Protocol

__all__ = ["OpenSplit", "open_split", "split_protocol"]


@dataclass
class OpenSplit:
    name: str  # dataset name
    dataset: Any
    data_cfg: dict
    root: Path

    @property
    def frames(self) -> list[str]:
        """The split's lines, one per sample."""
        lines = getattr(self.dataset, "frame_lines", None)
        if lines is not None:
            return list(lines)
        return [" ".join(str(x) for x in s) for s in getattr(self.dataset, "samples", [])]


def _dataset_config(entry) -> dict:
    path = entry.extra.get("config")
    if not path:
        return {}
    from harness.config.loader import load_file

    cfg = load_file(path, f"dataset {entry.name!r} config")
    data = cfg.get("data")
    return data.to_dict() if hasattr(data, "to_dict") else dict(data or {})


def open_split(
    dataset: str,
    root: str | Path,
    *,
    split: str | None = None,
    split_file: str | Path | None = None,
    role: str = "test",
    need=frozenset({"meta"}),
    host=None,
) -> OpenSplit:
    """Build ``dataset``'s split (``--split NAME`` or ``--split-file F``; default: the config's
    ``role`` split) at native resolution."""
    if split is not None and split_file is not None:
        raise HarnessError("options --split and --split-file: give one of them, not both")
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"option --data-root {root}: no such directory")
    if split_file is not None and not Path(split_file).is_file():
        raise HarnessError(f"option --split-file {split_file}: no such file")
    if host is None:
        from harness.host.manager import PluginHost

        host = PluginHost()
    catalog = host.catalog
    entry = catalog.get("datasets", dataset)
    data_cfg = _dataset_config(entry)
    kwargs = dict(data_cfg.get(role) or {})
    if split is not None or split_file is not None:
        chosen = str(split_file) if split_file is not None else split
        # a different split than the config's: keep the loader options, let gt_source follow the split
        if chosen != kwargs.get("split") and dataset == "kitti":
            kwargs.pop("gt_source", None)
        kwargs["split"] = chosen
    kwargs.setdefault("split", role)
    kwargs.pop("flip_mode", None)
    ds = _build(catalog, dataset, root, kwargs, need)
    return OpenSplit(dataset, ds, data_cfg, root)


def _build(catalog, dataset, root, kwargs, need):
    cls = catalog.get("datasets", dataset).obj
    try:
        return cls(root=str(root), height=None, width=None, need=need, seed=0, **kwargs)
    except HarnessError:
        raise
    except TypeError as exc:
        raise HarnessError(f"cannot build dataset {dataset!r}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise HarnessError(str(exc)) from None


def split_protocol(opened: OpenSplit, resolution: tuple[int, int], **overrides) -> Protocol:
    """The dataset config's ``protocol``, its ``split_protocols[<split>]`` changes, then
    ``overrides`` (``None`` values ignored)."""
    ds = opened.dataset
    p = dict(opened.data_cfg.get("protocol") or {})
    p.update((opened.data_cfg.get("split_protocols") or {}).get(ds.split, {}))
    p.update({k: v for k, v in overrides.items() if v is not None})
    p.setdefault("crop", "none")
    p.setdefault("scale", "none")
    try:
        return Protocol(
            name=f"{opened.name}-{Path(ds.split).stem if '/' in ds.split else ds.split}",
            dataset=opened.name,
            split=ds.split,
            split_hash=ds.split_hash,
            gt_source=ds.gt_source,
            resolution=tuple(int(v) for v in resolution),
            **p,
        )
    except ValueError as exc:
        raise HarnessError(f"evaluation protocol: {exc}") from None
