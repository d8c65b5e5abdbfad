"""Teacher outputs computed once and stored beside the data (``Strategy.precompute``).

A strategy that declares ``precompute = {"proxy_disp": "disp", "proxy_conf": "aux:confidence"}``
gets those batch keys without running a teacher per step: the harness runs the configured
(frozen, cached) teacher once over the train and val splits on canonical, un-mirrored samples
and writes each map as a 16-bit PNG (value x 256, 0 = invalid, the KITTI depth convention):

    <data_root>/precomputed/<teacher>-<teacher key>/<batch key>/<folder>/<side>/<frame:010d>.png

(by ``meta["sample_id"]`` when a dataset declares one, else by split and index for datasets
without KITTI's folder/side/frame meta keys)

(``<cache>/precomputed/<data fingerprint>/...`` when the data root is not writable). A
``<split>.done`` marker is written last, under a file lock, so concurrent or interrupted runs
never read half a set. :class:`WithPrecomputed` adds the maps to a dataset's samples, mirrored
with the sample; mirrored-and-swapped samples would need the right view's maps and are refused.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import Dataset

from harness.data import formats
from harness.distill import flips
from harness.errors import HarnessError
from harness.types import DepthOutput

MAX_VALUE = 65535 / 256.0


def teacher_output(out: DepthOutput, what: str) -> torch.Tensor:
    """Select ``"disp"``, ``"depth"`` or ``"aux:<name>"`` (full resolution) from a teacher output."""
    if what == "disp":
        return out.disp[0]
    if what == "depth":
        return out.depth[0]
    if what.startswith("aux:") and what[4:] in out.aux:
        return out.aux[what[4:]]
    raise HarnessError(f"precompute: the teacher has no output {what!r} (outputs: disp, depth, "
                       f"{', '.join('aux:' + k for k in out.aux) or 'no aux'})")


def store_root(data_root: Path, cache_dir: Path, fingerprint: str, teacher_tag: str) -> Path:
    """Beside the data when the data root is writable, else in the cache."""
    beside = data_root / "precomputed"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside / teacher_tag
    except OSError:
        pass
    return cache_dir / "precomputed" / fingerprint / teacher_tag


def map_path(root: Path, key: str, meta: dict[str, Any], split: str | None = None, index: int | None = None) -> Path:
    """Where one sample's map lives: by the dataset's declared ``meta["sample_id"]``, else by the
    KITTI-style ``folder``/``side``/``frame`` meta keys, else by ``(split, index)``."""
    if meta.get("sample_id") is not None:
        return root / key / f"{meta['sample_id']}.png"
    if all(k in meta for k in ("folder", "side", "frame")):
        return root / key / str(meta["folder"]) / str(meta["side"]) / f"{int(meta['frame']):010d}.png"
    if split is None or index is None:
        raise HarnessError("precompute: the dataset's samples carry no meta 'sample_id' (nor KITTI's "
                           "folder/side/frame) and no split index was given")
    return root / key / str(split) / f"{int(index):06d}.png"


@torch.no_grad()
def precompute_split(
    teacher: torch.nn.Module,
    dataset,
    spec: dict[str, str],
    root: Path,
    *,
    device: str = "cpu",
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run ``teacher`` over every sample of ``dataset`` (built without flips) and store ``spec``."""
    root.mkdir(parents=True, exist_ok=True)
    done = root / f"{dataset.split}.done"
    with FileLock(str(root / f"{dataset.split}.lock")):
        if done.is_file():
            return
        teacher.to(device).eval()
        n = len(dataset)
        for start in range(0, n, batch_size):
            samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
            batch = torch.utils.data.default_collate(samples)
            batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
            # a stereo teacher sees canonical pairs (a right-camera split line's partner lies on the left)
            out = flips.run_canonical(teacher, batch) if flips.reads_pair(teacher, batch) else teacher(batch)
            for key, what in spec.items():
                maps = teacher_output(out, what).float().cpu().numpy()
                for j, sample in enumerate(samples):
                    value = np.clip(np.nan_to_num(maps[j, 0], nan=0.0, posinf=0.0), 0.0, MAX_VALUE)
                    formats.write_png16(map_path(root, key, sample["meta"], dataset.split, start + j), value)
            if progress:
                progress(min(n, start + batch_size), n)
        formats.atomic_write_bytes(done, b"ok\n")


class WithPrecomputed(Dataset):
    """A dataset whose samples also carry precomputed teacher maps (``B x 1 x H x W``)."""

    def __init__(self, base, roots: dict[str, Path]):
        self.base = base
        self.roots = dict(roots)
        self.provides = frozenset(base.provides) | frozenset(self.roots)

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str):  # split, split_hash, eval_gt, set_epoch, ... of the base
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base[index]
        meta = sample["meta"]
        if meta.get("swapped"):
            raise HarnessError("precomputed teacher maps exist for the left view only: use flip_mode "
                               "'mirror' (not 'swap') with a method that precomputes teacher outputs")
        size = tuple(sample["image"].shape[-2:])
        for key, root in self.roots.items():
            path = map_path(root, key, meta, self.base.split, index)
            arr = formats.read_png16(path)
            if arr.shape != size:
                raise HarnessError(f"{path}: precomputed map is {arr.shape[0]}x{arr.shape[1]}, samples are "
                                   f"{size[0]}x{size[1]}; delete {root} to recompute")
            if meta.get("flipped"):
                arr = arr[:, ::-1]
            sample[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
        return sample
