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
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data import formats
from harness.data.sample_ops import draw_flip, image_to_tensor, scaled_intrinsics

__all__ = ["SynthDataset", "project_velodyne"]

_CAM = {"l": 2, "r": 3}
_OTHER = {"l": "r", "r": "l"}
_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])


def project_velodyne(
    points: np.ndarray,
    P_rect: np.ndarray,
    R_rect: np.ndarray,
    Tr_velo_to_cam: np.ndarray,
    height: int,
    width: int,
    eigen_offset: bool = True,
) -> np.ndarray:
    """Sparse depth map ``float32 HxW`` (0 = no return) from Velodyne points, Eigen style.

    ``P_velo2im = P_rect (3x4) @ R_rect (4x4) @ Tr (4x4)``; keep points with ``x_velo >= 0`` and
    positive projective depth ``w``; pixel index ``round(u) - 1`` / ``round(v) - 1`` (NumPy
    round-half-even; the ``-1`` mimics the original 1-based MATLAB code, DATASETS.md 1.4; set
    ``eigen_offset=False`` for the exact pixel); keep in-image; the nearest return wins per
    pixel (true row-major index, not Monodepth2's colliding one). Value = ``w``. Vectorised.
    """
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[pts[:, 0] >= 0]
    R4 = np.eye(4)
    R4[:3, :3] = np.asarray(R_rect, dtype=np.float64).reshape(3, 3)
    P = np.asarray(P_rect, dtype=np.float64).reshape(3, 4) @ R4 @ np.asarray(Tr_velo_to_cam, dtype=np.float64)
    proj = pts[:, :3] @ P[:, :3].T + P[:, 3]
    w = proj[:, 2]
    keep = w > 0
    proj, w = proj[keep], w[keep]
    off = 1 if eigen_offset else 0
    col = np.round(proj[:, 0] / w).astype(np.int64) - off
    row = np.round(proj[:, 1] / w).astype(np.int64) - off
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row, w = col[inside], row[inside], w[inside]
    out = np.zeros((height, width), dtype=np.float32)
    if w.size:
        lin = row * width + col
        order = np.lexsort((w, lin))  # by pixel, then nearest first
        lin, w = lin[order], w[order]
        first = np.empty(lin.shape, dtype=bool)
        first[0] = True
        first[1:] = lin[1:] != lin[:-1]
        out.ravel()[lin[first]] = w[first]
    return out


class _Calib:
    """What the loader needs from one date folder's calibration files."""

    def __init__(self, date_dir: Path):
        cam = formats.read_calib(date_dir / "calib_cam_to_cam.txt")
        self.P = {c: np.asarray(cam[f"P_rect_0{c}"], dtype=np.float64).reshape(3, 4) for c in (2, 3)}
        self.R_rect = np.asarray(cam["R_rect_00"], dtype=np.float64).reshape(3, 3)
        w, h = np.asarray(cam["S_rect_02"]).astype(int)
        self.size = (int(h), int(w))
        # camera x position (m) relative to the rectified reference camera 0: P[0,3] = -fx * x
        self.x = {c: -self.P[c][0, 3] / self.P[c][0, 0] for c in (2, 3)}
        self.baseline = self.x[3] - self.x[2]
        self._velo_path = date_dir / "calib_velo_to_cam.txt"
        self._Tr: np.ndarray | None = None

    @property
    def Tr(self) -> np.ndarray:
        if self._Tr is None:
            velo = formats.read_calib(self._velo_path)
            Tr = np.eye(4)
            Tr[:3, :3] = np.asarray(velo["R"], dtype=np.float64).reshape(3, 3)
            Tr[:3, 3] = np.asarray(velo["T"], dtype=np.float64)
            self._Tr = Tr
        return self._Tr

    def K(self, cam: int) -> np.ndarray:
        return self.P[cam][:, :3].copy()


class SynthDataset(Dataset):
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
    """

    provides = frozenset(
        {
            "image",
            "image_right",
            "frames",
            "T_t2s",
            "K",
            "K_inv",
            "baseline",
            "T_l2r",
            "depth_gt",
            "depth_gt_mask",
            "semantic",
            "meta",
        }
    )

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
    ):
        super().__init__()
        self.root = Path(root)
        if gt_source not in ("dense", "velodyne"):
            raise ValueError(f"gt_source must be 'dense' or 'velodyne', got {gt_source!r}")
        if flip_mode not in (None, "mirror", "swap"):
            raise ValueError(f"flip_mode must be None, 'mirror' or 'swap', got {flip_mode!r}")
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither (native size)")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        if int(seed) < 0:
            raise ValueError("seed must be non-negative")
        need = self.provides if need is None else frozenset(need)
        unknown = need - self.provides
        if unknown:
            raise ValueError(
                f"SynthDataset cannot provide {sorted(unknown)}; it provides {sorted(self.provides)}"
            )
        self.need = need | {"meta"}
        self.split = split
        self.gt_source = gt_source
        self.flip_mode = flip_mode
        self.flip_prob = float(flip_prob)
        self.seed = int(seed)
        self._epoch = 0
        if split.endswith(".txt") or os.sep in split:
            self._split_file = Path(split)
        else:
            self._split_file = self.root / "splits" / f"{split}_files.txt"
        if not self._split_file.is_file():
            raise FileNotFoundError(
                f"{self._split_file}: split file not found (generate the data set first?)"
            )
        self.samples = formats.read_split(self._split_file)
        self._calibs: dict[str, _Calib] = {}
        self._poses: dict[str, np.ndarray] = {}
        self._gt_subset: dict[str, str] = {}
        self._native = self._find_native_size()
        self.size = (int(height), int(width)) if height is not None else self._native
        self._mean_depth: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def split_file(self) -> Path:
        return self._split_file

    @property
    def split_hash(self) -> str:
        """sha256 of the split file's bytes."""
        return hashlib.sha256(self._split_file.read_bytes()).hexdigest()

    @property
    def metainfo(self) -> dict:
        """Dataset meta information (mmengine's Runner reads it for its visualiser/evaluator)."""
        return {"dataset": "synth", "split": self.split, "size": self.size}

    @property
    def fingerprint(self) -> str:
        """Identity of the data this split reads (teacher-cache key): the generator's
        ``synth.json`` digest (or, for a hand-made tree without it, the root path) + split hash."""
        meta = self.root / "synth.json"
        origin = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else str(self.root.resolve())
        return hashlib.sha256(f"{origin}:{self.split_hash}".encode()).hexdigest()[:16]

    @property
    def native_size(self) -> tuple[int, int]:
        """``(H, W)`` of the stored images (``S_rect_02`` of the calibration)."""
        return self._native

    def set_epoch(self, epoch: int) -> None:
        """Change the flip draws (they depend on ``(seed, index, epoch)``). With a DataLoader,
        call it before iterating; workers that are not persistent pick it up each epoch."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    # ------------------------------------------------------------------ file access
    def _find_native_size(self) -> tuple[int, int]:
        if self.samples:
            return self._calib(self.samples[0][0]).size
        found = sorted(self.root.glob("*/calib_cam_to_cam.txt"))
        if not found:
            raise FileNotFoundError(f"{self.root}: no <date>/calib_cam_to_cam.txt found")
        return _Calib(found[0].parent).size

    def _calib(self, folder: str) -> _Calib:
        date = folder.split("/")[0]
        if date not in self._calibs:
            self._calibs[date] = _Calib(self.root / date)
        return self._calibs[date]

    def _pose(self, folder: str) -> np.ndarray:
        if folder not in self._poses:
            self._poses[folder] = formats.read_poses(self.root / folder / "poses.txt")
        return self._poses[folder]

    def _image_path(self, folder: str, frame: int, cam: int) -> Path:
        return self.root / folder / f"image_0{cam}" / "data" / f"{frame:010d}.png"

    def _read_image(self, folder: str, frame: int, cam: int) -> np.ndarray:
        path = self._image_path(folder, frame, cam)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image not found (frame {frame} of {folder})")
        return formats.read_image(path)

    def _dense_path(self, folder: str, frame: int, cam: int) -> Path:
        drive = folder.split("/")[-1]
        rel = Path(drive) / "proj_depth" / "groundtruth" / f"image_0{cam}" / f"{frame:010d}.png"
        base = self.root / "data_depth_annotated"
        subset = self._gt_subset.get(drive)
        if subset is None:
            for subset in ("train", "val"):
                if (base / subset / drive).is_dir():
                    break
            else:
                raise FileNotFoundError(f"{base}/{{train,val}}/{drive}: no annotated depth for this drive")
            self._gt_subset[drive] = subset
        return base / subset / rel

    def _native_gt(self, folder: str, frame: int, cam: int) -> np.ndarray:
        if self.gt_source == "dense":
            return formats.read_png16(self._dense_path(folder, frame, cam))
        cal = self._calib(folder)
        pts = formats.read_velodyne(self.root / folder / "velodyne_points" / "data" / f"{frame:010d}.bin")
        h, w = cal.size
        return project_velodyne(pts, cal.P[cam], cal.R_rect, cal.Tr, h, w)

    # ------------------------------------------------------------------ resizing helpers
    def _resize_image(self, img: np.ndarray) -> np.ndarray:
        h, w = self.size
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return img

    def _resize_nearest(self, arr: np.ndarray) -> np.ndarray:
        h, w = self.size
        if arr.shape[:2] != (h, w):
            arr = cv2.resize(arr, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return arr

    # ------------------------------------------------------------------ samples
    def _flip(self, index: int) -> bool:
        return draw_flip(self.flip_mode, self.flip_prob, self.seed, index, self._epoch)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        folder, frame, side = self.samples[index]
        need = self.need
        flip = self._flip(index)
        swap = flip and self.flip_mode == "swap"
        tgt = _OTHER[side] if swap else side
        cam, partner = _CAM[tgt], _CAM[_OTHER[tgt]]
        cal = self._calib(folder)
        native = cal.size
        out: dict = {}

        if "image" in need:
            out["image"] = image_to_tensor(self._resize_image(self._read_image(folder, frame, cam)), flip)
        if "image_right" in need:
            out["image_right"] = image_to_tensor(
                self._resize_image(self._read_image(folder, frame, partner)), flip
            )
        if "frames" in need:
            out["frames"] = {
                s: image_to_tensor(self._resize_image(self._read_image(folder, frame + s, cam)), flip)
                for s in (-1, 1)
            }
        if "T_t2s" in need:
            poses = self._pose(folder)
            if not (0 < frame < len(poses) - 1):
                raise IndexError(f"{folder}: frame {frame} has no t-1/t+1 pose ({len(poses)} poses)")
            E = np.eye(4)
            E[0, 3] = cal.x[cam] - cal.x[2]  # target camera relative to the posed left camera
            P_t = poses[frame] @ E
            T = {}
            for s in (-1, 1):
                M = np.linalg.inv(poses[frame + s] @ E) @ P_t
                if flip:
                    M = _MIRROR @ M @ _MIRROR
                T[s] = torch.from_numpy(M.astype(np.float32))
            out["T_t2s"] = T
        K = scaled_intrinsics(cal.K(cam), native, self.size, flip)
        if "K" in need:
            out["K"] = torch.from_numpy(K.astype(np.float32))
        if "K_inv" in need:
            out["K_inv"] = torch.from_numpy(np.linalg.inv(K).astype(np.float32))
        if "baseline" in need:
            out["baseline"] = torch.tensor(abs(cal.baseline), dtype=torch.float32)
        if "T_l2r" in need:
            T = np.eye(4)
            T[0, 3] = -(cal.x[partner] - cal.x[cam])
            if flip:
                T = _MIRROR @ T @ _MIRROR
            out["T_l2r"] = torch.from_numpy(T.astype(np.float32))
        if "depth_gt" in need or "depth_gt_mask" in need:
            gt = self._resize_nearest(self._native_gt(folder, frame, cam))
            if flip:
                gt = gt[:, ::-1]
            gt = np.ascontiguousarray(gt, dtype=np.float32)[None]
            if "depth_gt" in need:
                out["depth_gt"] = torch.from_numpy(gt)
            if "depth_gt_mask" in need:
                out["depth_gt_mask"] = torch.from_numpy(gt > 0)
        if "semantic" in need:
            path = self.root / folder / "semantic" / f"image_0{cam}" / "data" / f"{frame:010d}.png"
            lab = self._resize_nearest(formats.read_labels(path))
            if flip:
                lab = lab[:, ::-1]
            out["semantic"] = torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64))
        out["meta"] = {
            "dataset": "synth",
            "index": int(index),
            "folder": folder,
            "frame": int(frame),
            "side": side,
            "focal": float(K[0, 0]),
            "flipped": bool(flip),
            "swapped": bool(swap),
            "native_size": [int(native[0]), int(native[1])],
        }
        return out

    # ------------------------------------------------------------------ evaluation helpers
    def eval_gt(self, index: int) -> np.ndarray:
        """Native-resolution GT depth (``float32 HxW``, 0 = invalid) of sample ``index`` for the
        camera of its split side, from ``gt_source``; never flipped or resized."""
        folder, frame, side = self.samples[index]
        return self._native_gt(folder, frame, _CAM[side])

    def mean_depth_map(self) -> np.ndarray:
        """Per-pixel mean of valid GT depth over all samples of the split, at the output size
        (un-flipped); pixels never valid get the global mean. The "training-set mean depth"
        predictor. Cached after the first call."""
        if self._mean_depth is None:
            h, w = self.size
            total = np.zeros((h, w))
            count = np.zeros((h, w))
            for folder, frame, side in self.samples:
                gt = self._resize_nearest(self._native_gt(folder, frame, _CAM[side]))
                valid = gt > 0
                total += np.where(valid, gt, 0.0)
                count += valid
            n = count.sum()
            if n == 0:
                raise ValueError(f"{self._split_file}: no valid GT depth in this split")
            global_mean = total.sum() / n
            mean = np.where(count > 0, total / np.maximum(count, 1), global_mean)
            self._mean_depth = mean.astype(np.float32)
        return self._mean_depth.copy()
