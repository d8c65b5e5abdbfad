"""Common sample assembly for real stereo datasets (KITTI, DrivingStereo).

:class:`StereoFrameDataset` turns "where are the files of sample ``i``" (answered by a
subclass) into the batch dictionary :class:`~harness.data.synth_dataset.SynthDataset` produces,
with the same conventions (see that module's docstring):

* images resized to the output size with ``cv2.INTER_AREA``, GT depth with centre-aligned
  nearest neighbour; native-resolution GT through :meth:`eval_gt` (never flipped or resized);
* ``K`` scaled exactly to the output size (``fx' = fx*s``, ``cx' = (cx + 0.5)*s - 0.5``) and
  mirrored exactly (``cx' = W - 1 - cx'``);
* flip modes ``"mirror"`` (mirror every view, keep roles: ``T_l2r`` x becomes ``+baseline``) and
  ``"swap"`` (mirror and swap left/right: the pair stays canonical, ``T_l2r`` x = ``-baseline``);
  the per-sample decision is ``default_rng([seed, index, epoch]).random() < flip_prob``;
* a split line with side ``r`` targets the right camera with the left as partner.

Every file problem is raised as :class:`~harness.errors.HarnessError` naming the file, so the
CLI prints one line.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data import formats
from harness.data.sample_ops import draw_flip, image_to_tensor, scaled_intrinsics
from harness.errors import HarnessError

__all__ = [
    "CalibFile",
    "DatasetFileError",
    "DatasetOptionError",
    "Frame",
    "OTHER",
    "StereoFrameDataset",
    "forward_warp_depth",
    "read_depth_png",
    "read_rgb",
]

OTHER = {"l": "r", "r": "l"}
_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])
FLIP_MODES = (None, "mirror", "swap")
#: what the ``depth_gt`` key of a training split holds (``data.supervision``): the dataset's GT,
#: a sparse Velodyne-like projection (``_sparse_gt``), or nothing (the key is not provided)
SUPERVISION = ("dense", "sparse", "none")
_GT_KEYS = frozenset({"depth_gt", "depth_gt_mask"})


class DatasetOptionError(HarnessError, ValueError):
    """A dataset argument out of its range (also a ``ValueError``)."""


class DatasetFileError(HarnessError, FileNotFoundError):
    """A file a dataset needs does not exist (also a ``FileNotFoundError``)."""


@dataclass(frozen=True)
class Frame:
    """One sample: ``folder`` (KITTI ``<date>/<drive>``, DrivingStereo ``<subset>/<sequence>``),
    integer ``frame`` index inside that folder, ``side`` (``l``/``r``) and the split line."""

    folder: str
    frame: int
    side: str
    line: str


class CalibFile:
    """A KITTI-style ``key: values`` calibration file, parsed on first use and validated per key.

    A missing file, a missing key, a non-numeric value or a wrong number count raises one
    ``HarnessError`` naming the file and the key.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._data: dict | None = None

    @property
    def data(self) -> dict:
        if self._data is None:
            if not self.path.is_file():
                raise HarnessError(f"{self.path}: calibration file not found")
            try:
                self._data = formats.read_calib(self.path)
            except (OSError, UnicodeDecodeError) as exc:
                raise HarnessError(f"{self.path}: cannot read calibration file ({exc})") from None
            except ValueError as exc:
                raise HarnessError(str(exc)) from None
        return self._data

    def numbers(self, key: str, count: int) -> np.ndarray:
        data = self.data
        if key not in data:
            raise HarnessError(f"{self.path}: calibration key {key!r} is missing")
        value = data[key]
        if isinstance(value, str):
            raise HarnessError(f"{self.path}: calibration key {key!r} has non-numeric value {value!r}")
        if value.size != count:
            raise HarnessError(f"{self.path}: calibration key {key!r} has {value.size} numbers, expected {count}")
        if not np.isfinite(value).all():
            raise HarnessError(f"{self.path}: calibration key {key!r} has non-finite numbers")
        return value

    def size(self, key: str) -> tuple[int, int]:
        """``(H, W)`` from a ``S_*`` key stored as ``width height``."""
        w, h = self.numbers(key, 2)
        if w <= 0 or h <= 0 or w != int(w) or h != int(h):
            raise HarnessError(f"{self.path}: {key} must be two positive integers, got {w:g} {h:g}")
        return int(h), int(w)


def read_rgb(path) -> np.ndarray:
    """``formats.read_image`` with every failure as one ``HarnessError`` naming the file."""
    try:
        return formats.read_image(path)
    except (OSError, ValueError) as exc:
        raise HarnessError(_clean(exc, path)) from None


def read_depth_png(path, scale: float = 256.0) -> np.ndarray:
    """A uint16 single-channel PNG as ``float32`` metres (``value / scale``); 8-bit or colour
    PNGs are refused with one line naming the file."""
    try:
        depth = formats.read_png16(path)
    except (OSError, ValueError) as exc:
        raise HarnessError(_clean(exc, path)) from None
    if scale != 256.0:
        depth *= np.float32(256.0 / scale)
    return depth


def _clean(exc: BaseException, path) -> str:
    msg = str(exc)
    if isinstance(exc, FileNotFoundError) and str(path) not in msg:
        return f"{path}: no such file"
    return msg if str(path) in msg else f"{path}: {msg}"


def forward_warp_depth(depth: np.ndarray, fx_baseline: float, direction: float) -> np.ndarray:
    """Move a depth map to the stereo partner's view: pixel ``(r, c)`` with depth ``z`` lands at
    column ``round(c + direction * fx*B / z)``; the nearest surface wins; holes stay 0.

    ``direction = -1`` maps a left-view map to the right view. Vectorised (no loop over pixels).
    """
    h, w = depth.shape
    rows, cols = np.nonzero(depth > 0)
    z = depth[rows, cols].astype(np.float64)
    target = np.rint(cols + direction * fx_baseline / z).astype(np.int64)
    keep = (target >= 0) & (target < w)
    rows, target, z = rows[keep], target[keep], z[keep]
    out = np.zeros((h, w), dtype=np.float32)
    if z.size:
        lin = rows * w + target
        order = np.lexsort((z, lin))
        lin, z = lin[order], z[order]
        first = np.ones(lin.shape, dtype=bool)
        first[1:] = lin[1:] != lin[:-1]
        out.ravel()[lin[first]] = z[first]
    return out


class StereoFrameDataset(Dataset):
    """Base class: a subclass fills ``self.samples`` (list of :class:`Frame`, or overrides
    :meth:`frame_at`) and implements the file accessors below; this class does flips, resizing,
    intrinsics and the batch dict.

    Subclass hooks:
        ``_image(frame, side, offset)`` -> ``uint8 HxWx3`` RGB of ``side`` at ``frame.frame + offset``;
        ``_K(frame, side)`` -> native ``3x3`` intrinsics of that camera;
        ``_native_size(frame)`` -> ``(H, W)`` of the native images;
        ``_cam_x(frame)`` -> ``{"l": x, "r": x}`` camera positions (m) along the rectified x axis;
        ``_gt(frame, side)`` -> native ``float32 HxW`` GT depth (0 = invalid) of that camera;
        ``_extra_items(frame, side, flip, size)`` -> further batch keys (default none);
        ``_sparse_gt(frame, side)`` -> native sparse training GT (only for ``supervision="sparse"``).

    ``supervision`` (``data.supervision`` of the training split): ``"dense"`` — ``depth_gt`` is
    ``_gt``; ``"sparse"`` — ``depth_gt`` is ``_sparse_gt`` (zeros invalid); ``"none"`` — no
    ``depth_gt``/``depth_gt_mask``. :meth:`eval_gt` is always ``_gt``.
    """

    name = "stereo"
    provides = frozenset(
        {"image", "image_right", "frames", "K", "K_inv", "baseline", "T_l2r", "depth_gt", "depth_gt_mask", "meta"}
    )

    def _init_common(self, height, width, need, seed, flip_mode, flip_prob, supervision: str = "dense") -> None:
        if supervision not in SUPERVISION:
            raise DatasetOptionError(f"{self.name}: supervision must be one of {SUPERVISION}, got {supervision!r}")
        if supervision == "sparse" and type(self)._sparse_gt is StereoFrameDataset._sparse_gt:
            raise DatasetOptionError(f"{self.name}: supervision 'sparse' is not available for this dataset")
        self.supervision = supervision
        if supervision == "none":
            self.provides = frozenset(self.provides - _GT_KEYS)
        if flip_mode not in FLIP_MODES:
            raise DatasetOptionError(f"{self.name}: flip_mode must be None, 'mirror' or 'swap', got {flip_mode!r}")
        if (height is None) != (width is None):
            raise DatasetOptionError(f"{self.name}: give both height and width, or neither (native size)")
        if not 0.0 <= float(flip_prob) <= 1.0:
            raise DatasetOptionError(f"{self.name}: flip_prob must be in [0, 1], got {flip_prob}")
        if int(seed) < 0:
            raise DatasetOptionError(f"{self.name}: seed must be non-negative")
        need = self.provides if need is None else frozenset(need)
        unknown = need - self.provides
        if unknown:
            why = ""
            if unknown & _GT_KEYS and supervision == "none":
                why = " (data.supervision='none' withholds the training GT)"
            raise DatasetOptionError(
                f"dataset {self.name!r} cannot provide {sorted(unknown)}{why}; it provides {sorted(self.provides)}"
            )
        self.need = need | {"meta"}
        self.flip_mode = flip_mode
        self.flip_prob = float(flip_prob)
        self.seed = int(seed)
        self._epoch = 0
        self.out_size = None if height is None else (int(height), int(width))
        self._mean_depth: np.ndarray | None = None

    # ------------------------------------------------------------------ identity
    @property
    def frame_lines(self) -> list[str]:
        """The split lines of the samples, in order (what ``export-gt``/``eval`` record)."""
        return [self.frame_at(i).line for i in range(len(self))]

    @property
    def split_hash(self) -> str:
        """sha256 of the split's lines (one per sample, ``\\n``-terminated)."""
        return hashlib.sha256("".join(f"{ln}\n" for ln in self.frame_lines).encode()).hexdigest()

    @property
    def metainfo(self) -> dict:
        return {"dataset": self.name, "split": self.split, "size": self.out_size}

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def frame_at(self, index: int) -> Frame:
        """The :class:`Frame` of sample ``index``."""
        return self.samples[index]

    # ------------------------------------------------------------------ helpers
    def _size_for(self, frame: Frame) -> tuple[int, int]:
        return self.out_size if self.out_size is not None else self._native_size(frame)

    @staticmethod
    def _resize_image(img: np.ndarray, size) -> np.ndarray:
        h, w = size
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return img

    @staticmethod
    def _resize_nearest(arr: np.ndarray, size) -> np.ndarray:
        h, w = size
        if arr.shape[:2] != (h, w):
            arr = cv2.resize(arr, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return arr

    def _flip(self, index: int) -> bool:
        return draw_flip(self.flip_mode, self.flip_prob, self.seed, index, self._epoch)

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        fr = self.frame_at(index)
        need = self.need
        flip = self._flip(index)
        swap = flip and self.flip_mode == "swap"
        tgt = OTHER[fr.side] if swap else fr.side
        partner = OTHER[tgt]
        native = self._native_size(fr)
        size = self._size_for(fr)
        out: dict = {}

        def view(side: str, offset: int = 0) -> torch.Tensor:
            img = self._image(fr, side, offset)
            if img.shape[:2] != tuple(native):
                raise HarnessError(
                    f"{self._image_path(fr, side, offset)}: image is {img.shape[1]}x{img.shape[0]}, "
                    f"the calibration says {native[1]}x{native[0]}"
                )
            return image_to_tensor(self._resize_image(img, size), flip)

        if "image" in need:
            out["image"] = view(tgt)
        if "image_right" in need:
            out["image_right"] = view(partner)
        if "frames" in need:
            out["frames"] = {s: view(tgt, s) for s in (-1, 1)}
        if "K" in need or "K_inv" in need:
            K = scaled_intrinsics(self._K(fr, tgt), native, size, flip)
            focal = float(K[0, 0])
            if "K" in need:
                out["K"] = torch.from_numpy(K.astype(np.float32))
            if "K_inv" in need:
                out["K_inv"] = torch.from_numpy(np.linalg.inv(K).astype(np.float32))
        else:  # meta only: a missing calibration must not stop GT-only uses
            try:
                focal = float(self._K(fr, tgt)[0, 0]) * size[1] / native[1]
            except HarnessError:
                focal = float("nan")
        if "baseline" in need or "T_l2r" in need:
            cam_x = self._cam_x(fr)
            if "baseline" in need:
                out["baseline"] = torch.tensor(abs(cam_x["r"] - cam_x["l"]), dtype=torch.float32)
            if "T_l2r" in need:
                T = np.eye(4)
                T[0, 3] = -(cam_x[partner] - cam_x[tgt])
                if flip:
                    T = _MIRROR @ T @ _MIRROR
                out["T_l2r"] = torch.from_numpy(T.astype(np.float32))
        if "depth_gt" in need or "depth_gt_mask" in need:
            gt = self._resize_nearest(self._train_gt(fr, tgt), size)
            if flip:
                gt = gt[:, ::-1]
            gt = np.ascontiguousarray(gt, dtype=np.float32)[None]
            if "depth_gt" in need:
                out["depth_gt"] = torch.from_numpy(gt)
            if "depth_gt_mask" in need:
                out["depth_gt_mask"] = torch.from_numpy(gt > 0)
        out.update(self._extra_items(fr, tgt, flip, size))
        out["meta"] = dict(
            self._meta_extra(fr),
            dataset=self.name,
            index=int(index),
            folder=fr.folder,
            frame=int(fr.frame),
            side=fr.side,
            focal=focal,
            flipped=bool(flip),
            swapped=bool(swap),
            native_size=[int(native[0]), int(native[1])],
        )
        return out

    def _meta_extra(self, fr: Frame) -> dict:
        return {}

    def _extra_items(self, fr: Frame, side: str, flip: bool, size: tuple[int, int]) -> dict:
        return {}

    def _sparse_gt(self, fr: Frame, side: str) -> np.ndarray:
        raise NotImplementedError

    def _train_gt(self, fr: Frame, side: str) -> np.ndarray:
        """The GT the ``depth_gt`` key carries under :attr:`supervision`."""
        return self._sparse_gt(fr, side) if self.supervision == "sparse" else self._gt(fr, side)

    # ------------------------------------------------------------------ evaluation helpers
    def eval_gt(self, index: int) -> np.ndarray:
        """Native-resolution GT depth (``float32 HxW``, 0 = invalid) of sample ``index`` for the
        camera of its split side; never flipped or resized."""
        fr = self.frame_at(index)
        return self._gt(fr, fr.side)

    def mean_depth_map(self) -> np.ndarray:
        """Per-pixel mean of valid training GT (:meth:`_train_gt`) at the output size over at most
        ``mean_depth_frames`` evenly spaced samples of the split (all of them when the split is
        smaller); pixels never valid get the global mean. Cached after the first call."""
        if self._mean_depth is None:
            if not len(self):
                raise HarnessError(f"{self.name} split {self.split!r}: no samples")
            n = len(self)
            limit = int(getattr(self, "mean_depth_frames", 0) or n)
            picks = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int))
            size = self._size_for(self.frame_at(0))
            total = np.zeros(size)
            count = np.zeros(size)
            for i in picks:
                fr = self.frame_at(int(i))
                gt = self._resize_nearest(self._train_gt(fr, fr.side), size)
                valid = gt > 0
                total += np.where(valid, gt, 0.0)
                count += valid
            if count.sum() == 0:
                raise HarnessError(f"{self.name} split {self.split!r}: no valid GT depth")
            global_mean = total.sum() / count.sum()
            mean = np.where(count > 0, total / np.maximum(count, 1), global_mean)
            self._mean_depth = mean.astype(np.float32)
        return self._mean_depth.copy()
