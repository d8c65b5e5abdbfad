"""Corrupted views of any dataset (``synth-c``, ``kitti-c``, ``drivingstereo-c``) and the
``harness data corrupt`` exporter (RoboDepth's KITTI-C layout).

:class:`CorruptedView` wraps a dataset and corrupts only the network input ``image`` of every
sample (GT, intrinsics, the stereo partner and the neighbouring frames are untouched), on the
fly and deterministically from ``(corruption seed, corruption, frame)`` (see
:mod:`harness.data.corruptions`): the same frame gets the same corrupted bytes in every run,
for every method and training seed. It can also read a stored corrupted copy (``corrupted_root``,
e.g. RoboDepth's released KITTI-C) instead of corrupting on the fly.

Where the corruption is applied (``docs/robustness.md``): RoboDepth corrupts the Eigen test
images after resizing them to 640x192, the network input size. Here the image is corrupted at
the size the dataset produces, i.e. the network input size (``data.input_size``): 640x192 for
``kitti`` (so KITTI-C is reproduced at its own resolution; the resize itself is
``cv2.INTER_AREA`` instead of PIL's antialias filter, see docs/datasets.md), 320x96 for the
synthetic set. ``corrupt_size=(H, W)`` corrupts at another size instead (bilinear up / area
down, corrupt, area back) - the corruption parameters are in pixels, so this keeps their
footprint relative to the image the same as at that size.

A mirrored sample is un-mirrored, corrupted and mirrored again, so a frame's corruption never
depends on the flip draw.

Layout written by :func:`export_corrupted` and read through ``corrupted_root``::

    <out>/clean/<data folder>/<image path relative to the data root, .png>
    <out>/<corruption>/<severity>/<data folder>/<same relative path>
    <out>/corruption_manifest.json

with ``<data folder>`` = ``kitti_data`` for KITTI and the synthetic set (RoboDepth's
``kitti_c/<corruption>/<severity>/kitti_data/<date>/<drive>/image_02/data/<frame>.png``) and
``drivingstereo_data`` for DrivingStereo.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data import corruptions as C
from harness.data import formats
from harness.errors import HarnessError

__all__ = [
    "CorruptedView",
    "DrivingStereoCDataset",
    "KittiCDataset",
    "SynthCDataset",
    "data_folder",
    "export_corrupted",
    "frame_key",
    "image_relpath",
    "subsample_indices",
]

_OTHER = {"l": "r", "r": "l"}


# --------------------------------------------------------------------------------------------
# frame identity and paths
# --------------------------------------------------------------------------------------------
def _sample_record(base, index: int) -> tuple[str, int, str]:
    """``(folder, frame, side)`` of sample ``index`` of a synth / KITTI / DrivingStereo set."""
    s = _frame(base, index)
    return str(s.folder), int(s.frame), str(s.side)


def _frame(base, index: int):
    frame_at = getattr(base, "frame_at", None)  # StereoFrameDataset subclasses
    return frame_at(index) if frame_at is not None else base.samples[index]


def frame_key(base, index: int) -> str:
    """The corruption seed key of a sample: ``"<folder> <frame> <side>"`` of its split line."""
    folder, frame, side = _sample_record(base, index)
    return f"{folder} {frame} {side}"


def image_relpath(base, index: int, side: str | None = None) -> Path:
    """Path of the sample's image relative to the data root, with a ``.png`` suffix."""
    fr = _frame(base, index)
    path = base._image_path(fr, side or fr.side)
    rel = Path(os.path.relpath(path, base.root))
    return rel.with_suffix(".png")


def data_folder(base) -> str:
    """``kitti_data`` (KITTI layout: KITTI and the synthetic set) or ``<name>_data``."""
    name = getattr(base, "name", None) or "synth"
    return "kitti_data" if name in ("kitti", "synth", "stereo") else f"{name}_data"


def subsample_indices(n: int, max_frames: int | None) -> list[int] | None:
    """At most ``max_frames`` evenly spaced indices of ``range(n)`` (``None``: all of them)."""
    if max_frames is None or int(max_frames) <= 0 or int(max_frames) >= n:
        return None
    return [int(i) for i in np.unique(np.linspace(0, n - 1, int(max_frames)).round().astype(int))]


# --------------------------------------------------------------------------------------------
# the view
# --------------------------------------------------------------------------------------------
class CorruptedView(Dataset):
    """A dataset whose ``image`` is corrupted with one ``(corruption, severity)``.

    Args:
        base: the dataset to wrap (a synth, KITTI or DrivingStereo dataset).
        corruption: one of :data:`harness.data.corruptions.CORRUPTIONS`, or ``None`` (clean:
            a pass-through, or the stored ``clean`` images with ``corrupted_root``).
        severity: 1..5 (required with a corruption).
        seed: the corruption seed (not the training seed: every run sees the same images).
        corrupt_size: ``None`` (corrupt at the sample size) or ``(H, W)``.
        per_severity_draws: a fresh random pattern per severity (see ``corruptions.corrupt``).
        corrupted_root: read ``<root>/<corruption>/<severity>/<data folder>/<relpath>`` (or
            ``<root>/clean/...``) instead of corrupting on the fly.
        indices: evaluate only these samples of ``base`` (``max_frames`` subsampling).

    Everything else (``split``, ``gt_source``, ``provides``, ``eval_gt``, ...) is the base's;
    ``split_hash`` and ``fingerprint`` are the base's for the clean, complete view and change
    with the condition and the subsample otherwise.
    """

    def __init__(self, base, corruption: str | None = None, severity: int | None = None, *, seed: int = 0,
                 corrupt_size=None, per_severity_draws: bool = False, corrupted_root=None,
                 indices: list[int] | None = None):
        super().__init__()
        if corruption is not None:
            if corruption not in C.CORRUPTIONS:
                raise HarnessError(f"corruption {corruption!r}: unknown (known: {', '.join(C.CORRUPTIONS)})")
            if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= int(severity) <= 5:
                raise HarnessError(f"corruption {corruption!r}: severity must be an integer 1..5, got {severity!r}")
            severity = int(severity)
        elif severity is not None:
            raise HarnessError("a severity needs a corruption")
        if int(seed) < 0:
            raise HarnessError(f"corruption seed must be non-negative, got {seed}")
        if corrupt_size is not None:
            if len(corrupt_size) != 2 or min(int(v) for v in corrupt_size) <= 0:
                raise HarnessError(f"corrupt_size must be (H, W) positive integers, got {corrupt_size!r}")
            corrupt_size = (int(corrupt_size[0]), int(corrupt_size[1]))
        self.base = base
        self.corruption = corruption
        self.severity = severity
        self.corruption_seed = int(seed)
        self.corrupt_size = corrupt_size
        self.per_severity_draws = bool(per_severity_draws)
        self.corrupted_root = None if corrupted_root is None else Path(corrupted_root)
        if self.corrupted_root is not None and not self.corrupted_root.is_dir():
            raise HarnessError(f"corrupted_root {self.corrupted_root}: no such directory")
        if indices is not None:
            n = len(base)
            bad = [i for i in indices if not 0 <= int(i) < n]
            if bad:
                raise HarnessError(f"subsample index {bad[0]} is outside the split ({n} samples)")
        self.indices = None if indices is None else [int(i) for i in indices]

    # ------------------------------------------------------------------ identity
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "base" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["base"], name)

    @property
    def condition(self) -> str:
        return "clean" if self.corruption is None else f"{self.corruption}/{self.severity}"

    def _tag(self) -> str | None:
        if self.corruption is None and self.indices is None and self.corrupted_root is None:
            return None
        return json.dumps({"condition": self.condition, "seed": self.corruption_seed, "version": C.VERSION,
                           "size": self.corrupt_size, "per_severity": self.per_severity_draws,
                           "stored": None if self.corrupted_root is None else str(self.corrupted_root.resolve()),
                           "indices": self.indices}, sort_keys=True)

    @property
    def split_hash(self) -> str:
        tag = self._tag()
        if tag is None:
            return self.base.split_hash
        return hashlib.sha256(f"{self.base.split_hash}:{tag}".encode()).hexdigest()

    @property
    def fingerprint(self) -> str:
        tag = self._tag()
        if tag is None:
            return self.base.fingerprint
        return hashlib.sha256(f"{self.base.fingerprint}:{tag}".encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)

    def _base_index(self, index: int) -> int:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.indices[index] if self.indices is not None else index

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> dict:
        j = self._base_index(index)
        sample = self.base[j]
        if "image" not in sample:
            return sample
        stored = self.corrupted_root is not None
        if self.corruption is None and not stored:
            return sample
        meta = sample["meta"]
        flipped = bool(meta.get("flipped", False))
        if stored:
            side = _sample_record(self.base, j)[2]
            if meta.get("swapped"):
                side = _OTHER[side]
            h, w = sample["image"].shape[-2:]
            img = self._read_stored(j, side, (h, w))
        else:
            img = np.rint(sample["image"].numpy().transpose(1, 2, 0) * 255.0).clip(0, 255).astype(np.uint8)
            if flipped:
                img = img[:, ::-1]
            img = self._corrupt(np.ascontiguousarray(img), frame_key(self.base, j))
        if flipped:
            img = img[:, ::-1]
        chw = np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32)
        chw /= np.float32(255.0)
        sample["image"] = torch.from_numpy(chw)
        sample["meta"] = dict(meta, corruption=self.corruption or "clean", severity=self.severity)
        return sample

    def _corrupt(self, img: np.ndarray, key: str) -> np.ndarray:
        h, w = img.shape[:2]
        size = self.corrupt_size
        if size is not None and size != (h, w):
            interp = cv2.INTER_AREA if size[0] * size[1] < h * w else cv2.INTER_LINEAR
            work = cv2.resize(img, (size[1], size[0]), interpolation=interp)
            out = C.corrupt(work, self.corruption, self.severity, seed=self.corruption_seed, key=key,
                            per_severity_draws=self.per_severity_draws)
            back = cv2.INTER_AREA if h * w < size[0] * size[1] else cv2.INTER_LINEAR
            return cv2.resize(out, (w, h), interpolation=back)
        return C.corrupt(img, self.corruption, self.severity, seed=self.corruption_seed, key=key,
                         per_severity_draws=self.per_severity_draws)

    def stored_path(self, index: int, side: str | None = None) -> Path:
        """Where ``corrupted_root`` holds the image of sample ``index`` (of the base)."""
        cond = ["clean"] if self.corruption is None else [self.corruption, str(self.severity)]
        return self.corrupted_root.joinpath(*cond, data_folder(self.base), image_relpath(self.base, index, side))

    def _read_stored(self, index: int, side: str, size) -> np.ndarray:
        path = self.stored_path(index, side)
        if not path.is_file():
            raise HarnessError(f"{path}: stored corrupted image not found (condition {self.condition})")
        img = formats.read_image(path)
        if img.shape[:2] != tuple(size):
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return img

    # ------------------------------------------------------------------ evaluation helpers
    def eval_gt(self, index: int) -> np.ndarray:
        return self.base.eval_gt(self._base_index(index))

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)


def _build_view(base_cls, root, split, height, width, need, seed, corruption, severity, corruption_seed,
                corrupt_size, per_severity_draws, corrupted_root, kwargs) -> dict:
    if split is not None:
        kwargs["split"] = split
    base = base_cls(root, height=height, width=width, need=need, seed=seed, **kwargs)
    return dict(base=base, corruption=corruption, severity=severity, seed=corruption_seed,
                corrupt_size=corrupt_size, per_severity_draws=per_severity_draws, corrupted_root=corrupted_root)


class _Registered(CorruptedView):
    """Constructor shared by the registered ``*-c`` datasets: the base dataset's arguments plus
    ``corruption``, ``severity``, ``corruption_seed``, ``corrupt_size``, ``per_severity_draws``
    and ``corrupted_root`` (defaults: clean, i.e. exactly the base dataset)."""

    base_class: type

    def __init__(self, root, split=None, height=None, width=None, need=None, seed=0, corruption=None,
                 severity=None, corruption_seed=0, corrupt_size=None, per_severity_draws=False,
                 corrupted_root=None, **kwargs):
        super().__init__(**_build_view(self.base_class, root, split, height, width, need, seed, corruption,
                                       severity, corruption_seed, corrupt_size, per_severity_draws,
                                       corrupted_root, kwargs))


class SynthCDataset(_Registered):
    """``synth-c``: the synthetic set with on-the-fly KITTI-C corruptions."""

    @property
    def base_class(self):
        from harness.data.synth_dataset import SynthDataset

        return SynthDataset


class KittiCDataset(_Registered):
    """``kitti-c``: KITTI raw with on-the-fly KITTI-C corruptions (or RoboDepth's stored copy)."""

    @property
    def base_class(self):
        from harness.data.kitti import KittiDataset

        return KittiDataset


class DrivingStereoCDataset(_Registered):
    """``drivingstereo-c``: DrivingStereo with on-the-fly KITTI-C corruptions."""

    @property
    def base_class(self):
        from harness.data.drivingstereo import DrivingStereoDataset

        return DrivingStereoDataset


BASE_OF = {"synth-c": "synth", "kitti-c": "kitti", "drivingstereo-c": "drivingstereo"}


# --------------------------------------------------------------------------------------------
# harness data corrupt --dataset
# --------------------------------------------------------------------------------------------
def export_corrupted(base, out, conditions: list[tuple[str, int]], *, seed: int = 0, overwrite: bool = False,
                     progress=None) -> dict:
    """Write the clean images of ``base`` and every condition's corrupted copy (PNG) in the
    layout of the module docstring, plus ``corruption_manifest.json``. Existing files are kept
    (an interrupted export resumes) unless ``overwrite``. Returns counts and timings."""
    out = Path(out)
    t0 = time.time()
    folder = data_folder(base)
    written = skipped = 0
    n = len(base)
    total = n * (len(conditions) + 1)
    done = 0
    for i in range(n):
        rel = image_relpath(base, i)
        sample = base[i]
        img = np.rint(sample["image"].numpy().transpose(1, 2, 0) * 255.0).clip(0, 255).astype(np.uint8)
        key = frame_key(base, i)
        for cond in [None, *conditions]:
            parts = ["clean"] if cond is None else [cond[0], str(cond[1])]
            path = out.joinpath(*parts, folder, rel)
            done += 1
            if path.is_file() and not overwrite:
                skipped += 1
                continue
            data = img if cond is None else C.corrupt(img, cond[0], cond[1], seed=seed, key=key)
            formats.write_image(path, data)
            written += 1
            if progress:
                progress(done, total)
    manifest = {
        "format": "stereodistill corrupted copy (RoboDepth KITTI-C layout)",
        "corruptions_version": C.VERSION,
        "seed": int(seed),
        "dataset": getattr(base, "name", "synth"),
        "split": getattr(base, "split", None),
        "split_hash": base.split_hash,
        "size": list(sample["image"].shape[-2:]) if n else None,
        "conditions": [f"{c}/{s}" for c, s in conditions],
        "frames": [frame_key(base, i) for i in range(n)],
        "parameters": {name: C.describe(name) for name in sorted({c for c, _ in conditions})},
    }
    formats.atomic_write_bytes(out / "corruption_manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    seconds = time.time() - t0
    return {"frames": n, "conditions": len(conditions), "written": written, "skipped": skipped,
            "seconds": seconds, "images_per_second": written / seconds if seconds > 0 else float("inf")}
