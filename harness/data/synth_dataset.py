"""``SynthDataset``: a torch Dataset over the KITTI-raw-layout set written by :mod:`.synth`.

It reads files only through :mod:`harness.data.formats` and never calls the generator. One
sample is one line ``<date>/<drive> <frame> <side>`` of ``<root>/splits/<split>_files.txt``.

Conventions (shared with ``harness.distill.geometry``):

* pixel centres are at integer coordinates ``0..W-1``; ``K`` is scaled for a resize exactly
  (``fx' = fx*s``, ``cx' = (cx + 0.5)*s - 0.5``) and mirrored exactly (``cx' = W - 1 - cx'``);
* ``T_t2s[s]`` maps points from the target camera at ``t`` to the same camera at ``t+s``;
* ``T_l2r`` maps points from the target camera (``image``) to its stereo partner
  (``image_right``): translation ``x = -baseline`` for an un-flipped left target.

Flip modes (``flip_prob`` per sample, drawn from ``default_rng([seed, index, epoch])``):

* ``"mirror"`` (Monodepth2): mirror every view, keep roles -> ``T_l2r`` x becomes ``+baseline``;
* ``"swap"`` (Monodepth/RSD): mirror every view and swap left/right: ``image`` is the mirrored
  right view, ``image_right`` the mirrored left view. The mirrored right camera sits to the
  LEFT of the mirrored left camera, so the pair is canonical again: ``T_l2r`` x is negated
  twice (mirror, then swap) and stays ``-baseline``. ``frames``, ``T_t2s``, ``depth_gt`` and
  ``semantic`` follow the new target camera (``image_03``).

A split line with side ``r`` targets ``image_03`` with ``image_02`` as partner (``T_l2r`` x =
``+baseline``), like Monodepth2's ``side_sign``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from harness.data import formats
from harness.data.kitti import KittiCalib, velodyne_depth
from harness.data.stereo_base import (
    DatasetFileError,
    DatasetOptionError,
    Frame,
    StereoFrameDataset,
    read_depth_png,
    read_rgb,
)

__all__ = ["SPARSE_LINE_STEP", "SPARSE_POINT_STEP", "SynthDataset", "project_velodyne", "thin_scan"]

_CAM = {"l": 2, "r": 3}
_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])
GT_SOURCES = ("dense", "velodyne")
#: sparse supervision keeps every SPARSE_LINE_STEP-th scan line and every SPARSE_POINT_STEP-th
#: return of a kept line: the written 64-line scan becomes a ~21-line one, ~5 % of the pixels
SPARSE_LINE_STEP = 3
SPARSE_POINT_STEP = 2


def project_velodyne(
    points: np.ndarray,
    P_rect: np.ndarray,
    R_rect: np.ndarray,
    Tr_velo_to_cam: np.ndarray,
    height: int,
    width: int,
    eigen_offset: bool = True,
) -> np.ndarray:
    """Sparse depth map ``float32 HxW`` (0 = no return) from Velodyne points, Eigen style:
    :func:`harness.data.kitti.velodyne_depth` with ``M = P_rect (3x4) @ R_rect (4x4) @ Tr``,
    value = the projective depth ``w`` (points with ``w <= 0`` dropped), the nearest return
    per true pixel, pixel ``round(u) - 1`` (``eigen_offset=False``: the exact pixel)."""
    R4 = np.eye(4)
    R4[:3, :3] = np.asarray(R_rect, dtype=np.float64).reshape(3, 3)
    M = np.asarray(P_rect, dtype=np.float64).reshape(3, 4) @ R4 @ np.asarray(Tr_velo_to_cam, dtype=np.float64)
    pts = np.asarray(points)
    w = pts[:, :3].astype(np.float64) @ M[2, :3] + M[2, 3]
    return velodyne_depth(pts[w > 0], M, height, width, vel_depth=False, duplicates="min",
                          pixel_offset=1 if eigen_offset else 0)


def thin_scan(depth: np.ndarray, line_step: int = SPARSE_LINE_STEP, point_step: int = SPARSE_POINT_STEP) -> np.ndarray:
    """A projected scan (``HxW``, 0 = no return, one scan line per image row) thinned to every
    ``line_step``-th occupied row and every ``point_step``-th return along a kept row."""
    rows, cols = np.nonzero(depth)  # row-major: sorted by row, then column
    lines = np.unique(rows)
    rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")  # index along the line
    keep = np.isin(rows, lines[::line_step]) & (rank % point_step == 0)
    out = np.zeros_like(depth)
    out[rows[keep], cols[keep]] = depth[rows[keep], cols[keep]]
    return out


class SynthDataset(StereoFrameDataset):
    """KITTI-raw-layout stereo/temporal dataset written by :func:`harness.data.synth.generate`.

    Args:
        root: data set folder (the generator's ``out_dir``).
        split: ``"train"``/``"val"``/``"test"`` (reads ``<root>/splits/<split>_files.txt``) or
            a path to a split file.
        height, width: output size; ``None`` (both) = native size. Images are resized with
            ``cv2.INTER_AREA``, GT depth and labels with centre-aligned nearest neighbour.
        gt_source: ``"dense"`` (16-bit PNG under ``data_depth_annotated``) or ``"velodyne"``
            (the ``.bin`` scan projected Eigen-style, see :func:`project_velodyne`).
        flip_mode: ``None``, ``"mirror"`` or ``"swap"`` (see the module docstring).
        flip_prob: probability of a flip when ``flip_mode`` is set.
        need: batch keys to produce (``None`` = all of :attr:`provides`); files only needed
            for other keys are not read. ``meta`` is always returned.
        seed: seed of the per-sample flip decisions (with the index and :meth:`set_epoch`).
        supervision: what ``depth_gt`` holds (``data.supervision``, training splits): ``"dense"``
            (the ``gt_source`` map), ``"sparse"`` (the frame's scan projected at the exact pixel
            and thinned by :func:`thin_scan`: a Velodyne-like ~5 % of the pixels, each with its
            exact depth) or ``"none"`` (no ``depth_gt``/``depth_gt_mask``). ``eval_gt`` is
            always the ``gt_source`` map.

    Bad arguments raise :class:`~harness.data.stereo_base.DatasetOptionError` (a
    ``ValueError``), missing files :class:`~harness.data.stereo_base.DatasetFileError` (a
    ``FileNotFoundError``); both are one-line ``HarnessError`` messages.
    """

    name = "synth"
    provides = StereoFrameDataset.provides | {"T_t2s", "semantic"}

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        height: int | None = None,
        width: int | None = None,
        gt_source: str = "dense",
        flip_mode: str | None = None,
        flip_prob: float = 0.5,
        need=None,
        seed: int = 0,
        supervision: str = "dense",
    ):
        super().__init__()
        if gt_source not in GT_SOURCES:
            raise DatasetOptionError(f"synth: gt_source must be 'dense' or 'velodyne', got {gt_source!r}")
        self._init_common(height, width, need, seed, flip_mode, flip_prob, supervision)
        self.root = Path(root)
        self.split = split
        self.gt_source = gt_source
        if split.endswith(".txt") or os.sep in split:
            self._split_file = Path(split)
        else:
            self._split_file = self.root / "splits" / f"{split}_files.txt"
        if not self._split_file.is_file():
            raise DatasetFileError(f"{self._split_file}: split file not found (generate the data set first?)")
        self.samples = formats.read_split(self._split_file)
        self._calibs: dict[str, KittiCalib] = {}
        self._poses: dict[str, np.ndarray] = {}
        self._gt_subset: dict[str, str] = {}
        self._native = self._find_native_size()
        self.size = self.out_size = self.out_size or self._native

    # ------------------------------------------------------------------ identity
    @property
    def split_file(self) -> Path:
        return self._split_file

    @property
    def split_hash(self) -> str:
        """sha256 of the split file's bytes."""
        return hashlib.sha256(self._split_file.read_bytes()).hexdigest()

    @property
    def fingerprint(self) -> str:
        """Identity of the data this split reads (teacher-cache key): the generator's
        ``synth.json`` digest (or, for a hand-made tree without it, the root path) + split hash
        (+ the supervision regime unless dense)."""
        meta = self.root / "synth.json"
        origin = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else str(self.root.resolve())
        regime = "" if self.supervision == "dense" else f":{self.supervision}"
        return hashlib.sha256(f"{origin}:{self.split_hash}{regime}".encode()).hexdigest()[:16]

    @property
    def labels(self) -> dict[int, str] | None:
        """Semantic label id -> name, from the generator's ``synth.json`` (``None`` without it)."""
        meta = self.root / "synth.json"
        if not meta.is_file():
            return None
        return {int(k): v for k, v in json.loads(meta.read_text(encoding="utf-8")).get("labels", {}).items()} or None

    @property
    def native_size(self) -> tuple[int, int]:
        """``(H, W)`` of the stored images (``S_rect_02`` of the calibration)."""
        return self._native

    def frame_at(self, index: int) -> Frame:
        folder, frame, side = self.samples[index]
        return Frame(folder, int(frame), side, f"{folder} {int(frame)} {side}")

    # ------------------------------------------------------------------ files
    def _find_native_size(self) -> tuple[int, int]:
        if self.samples:
            return self._calib(self.samples[0][0]).size
        found = sorted(self.root.glob("*/calib_cam_to_cam.txt"))
        if not found:
            raise DatasetFileError(f"{self.root}: no <date>/calib_cam_to_cam.txt found")
        return KittiCalib(found[0].parent).size

    def _calib(self, folder: str) -> KittiCalib:
        date = folder.split("/")[0]
        if date not in self._calibs:
            self._calibs[date] = KittiCalib(self.root / date)
        return self._calibs[date]

    def _pose(self, folder: str) -> np.ndarray:
        if folder not in self._poses:
            self._poses[folder] = formats.read_poses(self.root / folder / "poses.txt")
        return self._poses[folder]

    def _image_path(self, fr: Frame, side: str, offset: int = 0) -> Path:
        return self.root / fr.folder / f"image_0{_CAM[side]}" / "data" / f"{fr.frame + offset:010d}.png"

    def _dense_path(self, fr: Frame, side: str) -> Path:
        drive = fr.folder.split("/")[-1]
        rel = Path(drive) / "proj_depth" / "groundtruth" / f"image_0{_CAM[side]}" / f"{fr.frame:010d}.png"
        base = self.root / "data_depth_annotated"
        subset = self._gt_subset.get(drive)
        if subset is None:
            for subset in ("train", "val"):
                if (base / subset / drive).is_dir():
                    break
            else:
                raise DatasetFileError(f"{base}/{{train,val}}/{drive}: no annotated depth for this drive")
            self._gt_subset[drive] = subset
        return base / subset / rel

    def _velodyne(self, fr: Frame, side: str, eigen_offset: bool = True) -> np.ndarray:
        """The frame's scan projected into camera ``side`` (:func:`project_velodyne`)."""
        cal = self._calib(fr.folder)
        path = self.root / fr.folder / "velodyne_points" / "data" / f"{fr.frame:010d}.bin"
        if not path.is_file():
            raise DatasetFileError(f"{path}: Velodyne scan not found (frame {fr.frame} of {fr.folder})")
        h, w = cal.size
        return project_velodyne(formats.read_velodyne(path), cal.P(_CAM[side]), cal.R_rect, cal.Tr_velo_to_cam,
                                h, w, eigen_offset=eigen_offset)

    # ------------------------------------------------------------------ StereoFrameDataset hooks
    def _image(self, fr: Frame, side: str, offset: int) -> np.ndarray:
        path = self._image_path(fr, side, offset)
        if not path.is_file():
            raise DatasetFileError(f"{path}: image not found (frame {fr.frame + offset} of {fr.folder})")
        return read_rgb(path)

    def _native_size(self, fr: Frame) -> tuple[int, int]:
        return self._calib(fr.folder).size

    def _K(self, fr: Frame, side: str) -> np.ndarray:
        return self._calib(fr.folder).P(_CAM[side])[:, :3].copy()

    def _cam_x(self, fr: Frame) -> dict[str, float]:
        cal = self._calib(fr.folder)
        return {"l": cal.cam_x(2), "r": cal.cam_x(3)}

    def _gt(self, fr: Frame, side: str) -> np.ndarray:
        if self.gt_source == "dense":
            path = self._dense_path(fr, side)
            if not path.is_file():
                raise DatasetFileError(f"{path}: annotated depth PNG not found (frame {fr.frame} of {fr.folder})")
            return read_depth_png(path)
        return self._velodyne(fr, side)

    def _sparse_gt(self, fr: Frame, side: str) -> np.ndarray:
        return thin_scan(self._velodyne(fr, side, eigen_offset=False))

    def _extra_items(self, fr: Frame, side: str, flip: bool, size: tuple[int, int]) -> dict:
        out: dict = {}
        if "T_t2s" in self.need:
            poses = self._pose(fr.folder)
            if not (0 < fr.frame < len(poses) - 1):
                raise IndexError(f"{fr.folder}: frame {fr.frame} has no t-1/t+1 pose ({len(poses)} poses)")
            x = self._cam_x(fr)
            E = np.eye(4)
            E[0, 3] = x[side] - x["l"]  # target camera relative to the posed left camera
            P_t = poses[fr.frame] @ E
            T = {}
            for s in (-1, 1):
                M = np.linalg.inv(poses[fr.frame + s] @ E) @ P_t
                if flip:
                    M = _MIRROR @ M @ _MIRROR
                T[s] = torch.from_numpy(M.astype(np.float32))
            out["T_t2s"] = T
        if "semantic" in self.need:
            path = self.root / fr.folder / "semantic" / f"image_0{_CAM[side]}" / "data" / f"{fr.frame:010d}.png"
            lab = self._resize_nearest(formats.read_labels(path), size)
            if flip:
                lab = lab[:, ::-1]
            out["semantic"] = torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64))
        return out
