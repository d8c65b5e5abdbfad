"""KITTI raw (+ depth benchmark annotations): loader, Eigen GT from Velodyne, split lists.

Formats and protocol: ``docs/datasets.md``, "KITTI" and "Evaluation protocols" (see also
``docs/datasets.md``)::

    <root>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <root>/<date>/<date>_drive_XXXX_sync/image_0{2,3}/data/<frame:010d>.png|jpg
    <root>/<date>/<date>_drive_XXXX_sync/velodyne_points/data/<frame:010d>.bin
    improved GT ("dense"), searched in this order:
      <gt_root or root/data_depth_annotated>/{train,val}/<drive>/proj_depth/groundtruth/image_0X/<frame:010d>.png
      <root>/<date>/<drive>/proj_depth/groundtruth/image_0X/...      (Monodepth2's merged tree)
      <root>/{train,val}/<drive>/proj_depth/groundtruth/image_0X/...  (root = the annotated tree)

Split names: ``eigen`` (697, Velodyne GT), ``eigen_benchmark`` (652, improved GT),
``eigen_zhou`` / ``eigen_zhou_train`` and ``eigen_zhou_val`` (shipped in ``harness/splits``),
``<root>/splits/<name>_files.txt`` when the data set carries its own lists (e.g. the synth set),
or the path of any split file in the same ``<folder> <frame> <side>`` line format.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from harness.data import formats
from harness.data.stereo_base import CalibFile, Frame, StereoFrameDataset, read_depth_png, read_rgb
from harness.errors import HarnessError

__all__ = [
    "KittiCalib",
    "KittiDataset",
    "SHIPPED_SPLITS",
    "SPLIT_DIR",
    "read_split_frames",
    "resolve_split",
    "velodyne_depth",
]

SPLIT_DIR = Path(__file__).resolve().parent.parent / "splits"
#: shipped split name -> file under ``harness/splits``
SHIPPED_SPLITS: dict[str, str] = {
    "eigen": "eigen/test_files.txt",
    "eigen_benchmark": "eigen_benchmark/test_files.txt",
    "eigen_zhou": "eigen_zhou/train_files.txt",
    "eigen_zhou_train": "eigen_zhou/train_files.txt",
    "eigen_zhou_val": "eigen_zhou/val_files.txt",
}
#: default GT source of a shipped split (everything else: Velodyne)
DEFAULT_GT = {"eigen_benchmark": "dense"}
_CAM = {"l": 2, "r": 3}
GT_SOURCES = ("velodyne", "dense")
DUPLICATES = ("monodepth2", "min")


# --------------------------------------------------------------------------------------------
# split files
# --------------------------------------------------------------------------------------------
def resolve_split(root: str | os.PathLike | None, split: str) -> Path:
    """Path of the split file named ``split`` (see the module docstring for the search order)."""
    if split in SHIPPED_SPLITS:
        return SPLIT_DIR / SHIPPED_SPLITS[split]
    if root is not None and os.sep not in split and not split.endswith(".txt"):
        own = Path(root) / "splits" / f"{split}_files.txt"
        if own.is_file():
            return own
    path = Path(split)
    if path.is_file():
        return path
    known = ", ".join(sorted(SHIPPED_SPLITS))
    raise HarnessError(f"split {split!r}: not a shipped split ({known}), not <data-root>/splits/{split}_files.txt "
                       "and not an existing split file")


def read_split_frames(path: str | os.PathLike) -> list[Frame]:
    """Read a ``<folder> <frame_index> <side>`` split file into :class:`Frame` records."""
    try:
        rows = formats.read_split(path)
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read split file ({exc})") from None
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.split()]
    frames = []
    for (folder, frame, side), line in zip(rows, lines):
        if "/" not in folder:
            raise HarnessError(f"{path}: split line {line!r}: folder must be '<date>/<drive>'")
        frames.append(Frame(folder, int(frame), side, line))
    if not frames:
        raise HarnessError(f"{path}: split file has no lines")
    return frames


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------
class KittiCalib:
    """The calibration of one date folder (``calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt``),
    validated key by key when first used (:class:`~harness.data.stereo_base.CalibFile`)."""

    def __init__(self, date_dir: str | os.PathLike):
        self.date_dir = Path(date_dir)
        self.cam = CalibFile(self.date_dir / "calib_cam_to_cam.txt")
        self.velo = CalibFile(self.date_dir / "calib_velo_to_cam.txt")

    def P(self, cam: int) -> np.ndarray:
        """``P_rect_0{cam}`` as ``3x4``."""
        return self.cam.numbers(f"P_rect_0{cam}", 12).reshape(3, 4)

    @property
    def R_rect(self) -> np.ndarray:
        """``R_rect_00`` as ``3x3``."""
        return self.cam.numbers("R_rect_00", 9).reshape(3, 3)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` from ``S_rect_02`` (stored as width height), used for both cameras."""
        return self.cam.size("S_rect_02")

    @property
    def Tr_velo_to_cam(self) -> np.ndarray:
        """``[[R, T], [0, 0, 0, 1]]`` from ``calib_velo_to_cam.txt``."""
        Tr = np.eye(4)
        Tr[:3, :3] = self.velo.numbers("R", 9).reshape(3, 3)
        Tr[:3, 3] = self.velo.numbers("T", 3)
        return Tr

    def cam_x(self, cam: int) -> float:
        """Camera position along the rectified x axis (m): ``P[0,3] = -fx * x``."""
        P = self.P(cam)
        return float(-P[0, 3] / P[0, 0])

    def velo_to_image(self, cam: int) -> np.ndarray:
        """``P_rect_0{cam} @ R_rect_00 (4x4) @ Tr_velo_to_cam`` (``3x4``)."""
        R4 = np.eye(4)
        R4[:3, :3] = self.R_rect
        return self.P(cam) @ R4 @ self.Tr_velo_to_cam


# --------------------------------------------------------------------------------------------
# Velodyne -> sparse depth (Eigen export)
# --------------------------------------------------------------------------------------------
def velodyne_depth(
    points: np.ndarray,
    velo_to_image: np.ndarray,
    height: int,
    width: int,
    *,
    vel_depth: bool = True,
    duplicates: str = "monodepth2",
    pixel_offset: int = 1,
) -> np.ndarray:
    """Sparse depth ``float32 HxW`` (0 = no return) from Velodyne points, as the Eigen export.

    Steps (Monodepth2's ``generate_depth_map``; ``docs/datasets.md``, "GT from Velodyne"): keep points with ``x_velo >= 0``; ``[u', v', w] = M [x y z 1]``
    with ``M = P_rect . R_rect_00 . Tr_velo`` (:meth:`KittiCalib.velo_to_image`); pixel
    ``col = round(u'/w) - 1``, ``row = round(v'/w) - 1`` (NumPy round-half-even, the ``-1`` of
    the original 1-based code; ``pixel_offset=0`` gives the exact pixel); keep ``0 <= col < W``,
    ``0 <= row < H`` (points with ``w = 0`` give non-finite coordinates and are dropped); value = the LiDAR forward coordinate
    ``x_velo`` (``vel_depth=True``, the Eigen test GT) or the projective depth ``w``.

    Duplicates (several points on one pixel):

    * ``"monodepth2"`` (default, reproduces the published ``gt_depths.npz``): the points are
      written in file order (the last one wins per pixel); then, grouping points by Monodepth2's
      linear index ``row*(W-1) + col - 1`` (not a true row-major index: pixel ``(r, W-1)``
      shares it with ``(r+1, 0)``), the pixel of the first point of every group of two or more
      gets the group's minimum;
    * ``"min"``: the nearest return wins per true pixel.

    Negative values become 0. Vectorised: no Python loop over points or duplicates.
    """
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must be N x 4 (or N x 3), got shape {pts.shape}")
    pts = pts[pts[:, 0] >= 0]
    hom = np.empty((pts.shape[0], 4), dtype=np.float64)
    hom[:, :3] = pts[:, :3]
    hom[:, 3] = 1.0
    proj = hom @ np.asarray(velo_to_image, dtype=np.float64).reshape(3, 4).T
    with np.errstate(divide="ignore", invalid="ignore"):
        col = np.round(proj[:, 0] / proj[:, 2]) - pixel_offset
        row = np.round(proj[:, 1] / proj[:, 2]) - pixel_offset
    value = hom[:, 0] if vel_depth else proj[:, 2]
    inside = (col >= 0) & (row >= 0) & (col < width) & (row < height)
    col = col[inside].astype(np.int64)
    row = row[inside].astype(np.int64)
    value = value[inside]
    out = np.zeros(height * width, dtype=np.float64)
    if value.size:
        lin = row * width + col
        if duplicates == "min":
            order = np.lexsort((value, lin))
            ls = lin[order]
            first = np.ones(ls.shape, dtype=bool)
            first[1:] = ls[1:] != ls[:-1]
            out[ls[first]] = value[order][first]
        else:
            # 1) in file order, the last point wins per pixel
            uniq, from_end = np.unique(lin[::-1], return_index=True)
            out[uniq] = value[lin.size - 1 - from_end]
            # 2) Monodepth2's groups: the first point's pixel gets the group minimum
            q = row * (width - 1) + col - 1
            order = np.argsort(q, kind="stable")
            qs = q[order]
            starts = np.flatnonzero(np.concatenate(([True], qs[1:] != qs[:-1])))
            counts = np.diff(np.append(starts, qs.size))
            multi = counts > 1
            if multi.any():
                mins = np.minimum.reduceat(value[order], starts)[multi]
                first_pt = order[starts[multi]]
                out[lin[first_pt]] = mins
    out[out < 0] = 0.0
    return out.reshape(height, width).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------
class KittiDataset(StereoFrameDataset):
    """KITTI raw stereo sequences with Eigen (Velodyne) or improved (annotated PNG) GT.

    Args:
        root: KITTI raw root (``<root>/<date>/...``).
        split: a split name or a split file (module docstring).
        height, width: output size (``None``: native ``S_rect_02`` size of each date).
        need: batch keys to produce (``None``: all of :attr:`provides`).
        seed: seed of the per-sample flip decisions.
        gt_source: ``"velodyne"`` (Eigen export of the ``.bin`` scan) or ``"dense"`` (improved GT,
            ``uint16/256`` PNGs); ``None`` = ``dense`` for ``eigen_benchmark``, else ``velodyne``.
        gt_root: folder holding the annotated ``{train,val}/<drive>/proj_depth/...`` trees
            (default ``<root>/data_depth_annotated``; the other layouts are searched too).
        vel_depth: Velodyne GT value: ``True`` = LiDAR forward ``x`` (Eigen export), ``False`` =
            camera projective depth (Monodepth2's training-time ``get_depth``).
        duplicates: ``"monodepth2"`` or ``"min"`` (see :func:`velodyne_depth`).
        img_ext: ``"auto"`` (``.png``, else ``.jpg``), ``"png"`` or ``"jpg"``.
        baseline: ``"calib"`` (from ``P_rect_02/03``: 0.5327 m for 2011_09_26) or a number in
            metres (e.g. 0.54, the nominal rig baseline); sets ``baseline`` and ``T_l2r``.
        flip_mode, flip_prob: as :class:`~harness.data.synth_dataset.SynthDataset`.
        mean_depth_frames: at most this many evenly spaced samples for :meth:`mean_depth_map`.
    """

    name = "kitti"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "eigen",
        height: int | None = None,
        width: int | None = None,
        need=None,
        seed: int = 0,
        gt_source: str | None = None,
        gt_root: str | None = None,
        vel_depth: bool = True,
        duplicates: str = "monodepth2",
        img_ext: str = "auto",
        baseline: str | float = "calib",
        flip_mode: str | None = None,
        flip_prob: float = 0.5,
        mean_depth_frames: int = 1000,
    ):
        super().__init__()
        self._init_common(height, width, need, seed, flip_mode, flip_prob)
        self.root = Path(root)
        if not self.root.is_dir():
            raise HarnessError(f"KITTI root {self.root}: no such directory")
        split = str(split)
        if gt_source is None:
            gt_source = DEFAULT_GT.get(split, "velodyne")
        if gt_source not in GT_SOURCES:
            raise HarnessError(f"kitti: gt_source must be one of {GT_SOURCES}, got {gt_source!r}")
        if duplicates not in DUPLICATES:
            raise HarnessError(f"kitti: duplicates must be one of {DUPLICATES}, got {duplicates!r}")
        if img_ext not in ("auto", "png", "jpg"):
            raise HarnessError(f"kitti: img_ext must be 'auto', 'png' or 'jpg', got {img_ext!r}")
        if baseline != "calib" and not (isinstance(baseline, (int, float)) and float(baseline) > 0):
            raise HarnessError(f"kitti: baseline must be 'calib' or a positive number of metres, got {baseline!r}")
        self.split = split
        self.split_file = resolve_split(self.root, split)
        self.samples = read_split_frames(self.split_file)
        self.gt_kind = gt_source
        self.gt_root = Path(gt_root) if gt_root else None
        self.vel_depth = bool(vel_depth)
        self.duplicates = duplicates
        self.img_ext = img_ext
        self.baseline_option = baseline
        self.mean_depth_frames = int(mean_depth_frames)
        self._calibs: dict[str, KittiCalib] = {}
        self._gt_dirs: dict[str, Path] = {}
        self._ext: dict[tuple[str, int], str] = {}

    # ------------------------------------------------------------------ identity
    @property
    def split_hash(self) -> str:
        """sha256 of the split file's bytes (as the synth set)."""
        return hashlib.sha256(self.split_file.read_bytes()).hexdigest()

    @property
    def fingerprint(self) -> str:
        key = f"kitti:{self.root.resolve()}:{self.split_hash}:{self.gt_source}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def gt_source(self) -> str:
        """GT source as recorded in the protocol: ``"dense"`` (improved GT PNGs), ``"velodyne"``
        (the Eigen export: LiDAR-x values, Monodepth2 duplicate rule), or ``"velodyne_camz"`` /
        ``..._nearest`` for the projective-depth value / the clean duplicate rule."""
        if self.gt_kind == "dense":
            return "dense"
        name = "velodyne" if self.vel_depth else "velodyne_camz"
        return name + ("_nearest" if self.duplicates == "min" else "")

    # ------------------------------------------------------------------ files
    def calib(self, folder: str) -> KittiCalib:
        date = folder.split("/")[0]
        if date not in self._calibs:
            self._calibs[date] = KittiCalib(self.root / date)
        return self._calibs[date]

    def image_path(self, fr: Frame, side: str, offset: int = 0) -> Path:
        cam = _CAM[side]
        base = self.root / fr.folder / f"image_0{cam}" / "data"
        stem = f"{fr.frame + offset:010d}"
        if self.img_ext != "auto":
            return base / f"{stem}.{self.img_ext}"
        ext = self._ext.get((fr.folder, cam))
        if ext is not None and (base / f"{stem}.{ext}").is_file():
            return base / f"{stem}.{ext}"
        for ext in ("png", "jpg"):
            if (base / f"{stem}.{ext}").is_file():
                self._ext[(fr.folder, cam)] = ext
                return base / f"{stem}.{ext}"
        return base / f"{stem}.png"

    _image_path = image_path

    def velodyne_path(self, fr: Frame) -> Path:
        return self.root / fr.folder / "velodyne_points" / "data" / f"{fr.frame:010d}.bin"

    def dense_path(self, fr: Frame, side: str) -> Path:
        drive = fr.folder.split("/")[-1]
        rel = Path("proj_depth") / "groundtruth" / f"image_0{_CAM[side]}" / f"{fr.frame:010d}.png"
        base = self._gt_dirs.get(drive)
        if base is None:
            candidates = []
            for top in ([self.gt_root] if self.gt_root else []) + [self.root / "data_depth_annotated"]:
                candidates += [top / "train" / drive, top / "val" / drive, top / drive]
            candidates += [self.root / fr.folder, self.root / "train" / drive, self.root / "val" / drive]
            for cand in candidates:
                if (cand / "proj_depth" / "groundtruth").is_dir():
                    base = cand
                    break
            else:
                where = self.gt_root or self.root / "data_depth_annotated"
                raise HarnessError(f"{where}/{{train,val}}/{drive}/proj_depth/groundtruth: no annotated depth "
                                   f"for drive {drive} (split line {fr.line!r})")
            self._gt_dirs[drive] = base
        return base / rel

    def _frame_error(self, path: Path, fr: Frame, what: str) -> HarnessError:
        return HarnessError(f"{path}: {what} not found (split {self.split_file} line {fr.line!r})")

    # ------------------------------------------------------------------ StereoFrameDataset hooks
    def _image(self, fr: Frame, side: str, offset: int) -> np.ndarray:
        path = self.image_path(fr, side, offset)
        if not path.is_file():
            raise self._frame_error(path, fr, "image" if offset == 0 else f"neighbour frame {offset:+d}")
        return read_rgb(path)

    def _native_size(self, fr: Frame) -> tuple[int, int]:
        return self.calib(fr.folder).size

    def _K(self, fr: Frame, side: str) -> np.ndarray:
        return self.calib(fr.folder).P(_CAM[side])[:, :3].copy()

    def _cam_x(self, fr: Frame) -> dict[str, float]:
        cal = self.calib(fr.folder)
        x = {"l": cal.cam_x(2), "r": cal.cam_x(3)}
        if self.baseline_option != "calib":
            x["r"] = x["l"] + float(self.baseline_option)
        return x

    def _gt(self, fr: Frame, side: str) -> np.ndarray:
        if self.gt_kind == "dense":
            path = self.dense_path(fr, side)
            if not path.is_file():
                raise self._frame_error(path, fr, "annotated depth PNG")
            return read_depth_png(path)
        path = self.velodyne_path(fr)
        if not path.is_file():
            raise self._frame_error(path, fr, "Velodyne scan")
        try:
            points = formats.read_velodyne(path)
        except (OSError, ValueError) as exc:
            raise HarnessError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
        cal = self.calib(fr.folder)
        h, w = cal.size
        return velodyne_depth(points, cal.velo_to_image(_CAM[side]), h, w,
                              vel_depth=self.vel_depth, duplicates=self.duplicates)
