"""Real on-disk formats used by KITTI-style datasets (``docs/datasets.md``, "KITTI").

Each format is a small reader/writer pair, NumPy in and out:

* 16-bit depth PNG (KITTI depth benchmark): ``uint16 / 256`` metres, 0 = invalid.
* 8-bit RGB PNG images.
* KITTI calibration text files (``key: values`` per line).
* Velodyne ``.bin`` point clouds (little-endian float32, 4 values per point).
* Split files (``<folder> <frame_index> <side>`` per line).
* KITTI odometry poses (12 numbers per line: the top 3x4 of a camera-to-world matrix).

Every writer creates missing parent folders and writes atomically (a temporary file in the
same folder, then :func:`os.replace`), so a reader never sees a half-written file.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "read_png16",
    "write_png16",
    "read_image",
    "write_image",
    "read_labels",
    "write_labels",
    "read_calib",
    "write_calib",
    "read_velodyne",
    "write_velodyne",
    "read_split",
    "write_split",
    "read_poses",
    "write_poses",
    "atomic_write_bytes",
    "MAX_PNG16_DEPTH",
]

PathLike = str | os.PathLike

_CALIB_FLOAT_CHARS = frozenset("0123456789.e+- ")
#: Largest depth a 16-bit PNG can hold (metres); larger values saturate.
MAX_PNG16_DEPTH = 65535 / 256.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def user_mode(fd: int) -> None:
    """Give a ``mkstemp`` file (mode 0600) the mode a plain ``open`` would: 0666 minus the umask,
    so results and exports in a shared folder are readable by colleagues."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (mode 0666 minus the umask), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # an unwritable folder: name the file asked for, not the temp name
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    try:
        user_mode(fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:  # e.g. a full disk: no temp file is left, the previous file is intact
        _unlink_quietly(tmp)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _encode_png(path: PathLike, array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - cv2 only fails on unsupported dtypes/shapes
        raise ValueError(f"{path}: OpenCV could not encode a PNG from {array.dtype} {array.shape}")
    return buf.tobytes()


def _imread(path: PathLike, flags: int) -> np.ndarray:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    img = cv2.imread(os.fspath(path), flags)
    if img is None:
        raise ValueError(f"{path}: not a readable image file")
    return img


def _describe(img: np.ndarray) -> str:
    channels = 1 if img.ndim == 2 else img.shape[2]
    return f"{img.dtype} with {channels} channel(s), shape {img.shape}"


# --------------------------------------------------------------------------------------------
# 16-bit depth PNG
# --------------------------------------------------------------------------------------------


def read_png16(path: PathLike) -> np.ndarray:
    """Read a KITTI 16-bit depth PNG as ``float32 HxW`` metres (``value / 256``, 0 = invalid).

    Raises ``ValueError`` if the file is not a single-channel 16-bit image (e.g. an 8-bit RGB
    image given by mistake: OpenCV would otherwise silently convert it).
    """
    img = _imread(path, cv2.IMREAD_UNCHANGED)
    if img.dtype != np.uint16 or img.ndim != 2:
        raise ValueError(
            f"{path}: expected a single-channel 16-bit PNG depth map (uint16, value/256 = metres), "
            f"got {_describe(img)}"
        )
    return img.astype(np.float32) / 256.0


def write_png16(path: PathLike, depth: np.ndarray) -> None:
    """Write metres as ``round(depth * 256)`` clipped to uint16; 0 (and non-finite) stays 0.

    Depths above 255.996 m saturate at 65535. Negative values are written as 0 (invalid).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth must be HxW, got shape {depth.shape}")
    d = np.where(np.isfinite(depth), depth, 0.0).astype(np.float64)
    value = np.clip(np.rint(d * 256.0), 0, 65535).astype(np.uint16)
    atomic_write_bytes(path, _encode_png(path, value))


# --------------------------------------------------------------------------------------------
# RGB images and label maps
# --------------------------------------------------------------------------------------------


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as ``uint8 HxWx3`` RGB (grey images are expanded to 3 channels)."""
    img = _imread(path, cv2.IMREAD_COLOR)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:  # pragma: no cover
        raise ValueError(f"{path}: expected an 8-bit colour image, got {_describe(img)}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: PathLike, rgb: np.ndarray) -> None:
    """Write a ``uint8 HxWx3`` RGB array as a PNG (stored in the usual RGB order on disk)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{path}: expected uint8 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")
    atomic_write_bytes(path, _encode_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))


def read_labels(path: PathLike) -> np.ndarray:
    """Read a single-channel 8-bit label PNG as ``uint8 HxW``."""
    img = _imread(path, cv2.IMREAD_UNCHANGED)
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel 8-bit label PNG, got {_describe(img)}")
    return img


def write_labels(path: PathLike, labels: np.ndarray) -> None:
    """Write a ``uint8 HxW`` label map as a single-channel 8-bit PNG."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: labels must be HxW, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"{path}: label values must be in 0..255")
        labels = labels.astype(np.uint8)
    atomic_write_bytes(path, _encode_png(path, labels))


# --------------------------------------------------------------------------------------------
# KITTI calibration text
# --------------------------------------------------------------------------------------------


def read_calib(path: PathLike) -> dict[str, np.ndarray | str]:
    """Parse a KITTI calibration text file (``calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt``).

    Each non-blank line is split at its first ``:``; the value becomes a float64 vector if
    every character is one of ``0123456789.e+- ``, otherwise it is kept as a stripped string
    (so ``calib_time: 09-Jan-2012 13:57:47`` stays a string). A non-blank line without ``:``
    raises ``ValueError`` naming the file and the 1-based line number.
    """
    out: dict[str, np.ndarray | str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if ":" not in line:
                raise ValueError(f"{path}:{lineno}: calibration line has no ':' separator: {line.rstrip()!r}")
            key, value = line.split(":", 1)
            key, value = key.strip(), value.strip()
            if set(value) <= _CALIB_FLOAT_CHARS:
                try:
                    out[key] = np.array([float(x) for x in value.split()], dtype=np.float64)
                except ValueError as e:
                    raise ValueError(f"{path}:{lineno}: bad number in {key!r}: {e}") from None
            else:
                out[key] = value
    return out


def _format_calib_value(value) -> str:
    if isinstance(value, str):
        return value
    arr = np.asarray(value, dtype=np.float64).ravel()
    return " ".join("%e" % v for v in arr)


def write_calib(path: PathLike, calib: Mapping[str, object]) -> None:
    """Write a KITTI calibration file: ``key: v v v`` with ``%e`` numbers, strings verbatim.

    A ``calib_time`` entry, if present, is written first; the other keys keep their order.
    """
    lines = []
    keys = list(calib)
    if "calib_time" in calib:
        keys.remove("calib_time")
        keys.insert(0, "calib_time")
    for key in keys:
        if ":" in key or "\n" in key:
            raise ValueError(f"{path}: invalid calibration key {key!r}")
        value = _format_calib_value(calib[key])
        if "\n" in value:
            raise ValueError(f"{path}: calibration value of {key!r} contains a newline")
        lines.append(f"{key}: {value}\n")
    _atomic_write_text(path, "".join(lines))


# --------------------------------------------------------------------------------------------
# Velodyne point clouds
# --------------------------------------------------------------------------------------------


def read_velodyne(path: PathLike) -> np.ndarray:
    """Read a Velodyne ``.bin`` file as ``float32 Nx4`` (x fwd, y left, z up, reflectance)."""
    size = os.path.getsize(path)
    if size % 16:
        raise ValueError(
            f"{path}: Velodyne file size {size} bytes is not a multiple of 16 "
            "(4 little-endian float32 values per point)"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, 4).astype(np.float32, copy=False)


def write_velodyne(path: PathLike, points: np.ndarray) -> None:
    """Write ``Nx4`` points as flat little-endian float32 (no header)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"{path}: points must be Nx4, got shape {points.shape}")
    atomic_write_bytes(path, np.ascontiguousarray(points, dtype="<f4").tobytes())


# --------------------------------------------------------------------------------------------
# Split files
# --------------------------------------------------------------------------------------------


def read_split(path: PathLike) -> list[tuple[str, int, str]]:
    """Read a split file of ``<folder> <frame_index> <side>`` lines (blank lines skipped).

    The index may be zero-padded or not (``int()`` parses both); ``side`` must be ``l`` or
    ``r``. A malformed line raises ``ValueError`` naming ``file:line``.
    """
    rows: list[tuple[str, int, str]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}:{lineno}"
            if len(parts) != 3:
                raise ValueError(
                    f"{where}: expected '<folder> <frame_index> <side>', got {line.rstrip()!r}"
                )
            folder, index, side = parts
            try:
                frame = int(index)
            except ValueError:
                raise ValueError(f"{where}: frame index {index!r} is not an integer") from None
            if frame < 0:
                raise ValueError(f"{where}: frame index {frame} is negative")
            if side not in ("l", "r"):
                raise ValueError(f"{where}: side must be 'l' or 'r', got {side!r}")
            rows.append((folder, frame, side))
    return rows


def write_split(path: PathLike, rows: Iterable[tuple[str, int, str]]) -> None:
    """Write ``(folder, frame_index, side)`` rows, one ``folder index side`` line each."""
    lines = []
    for folder, frame, side in rows:
        if side not in ("l", "r") or any(c.isspace() for c in folder):
            raise ValueError(f"{path}: bad split row {(folder, frame, side)!r}")
        lines.append(f"{folder} {int(frame)} {side}\n")
    _atomic_write_text(path, "".join(lines))


# --------------------------------------------------------------------------------------------
# KITTI odometry poses
# --------------------------------------------------------------------------------------------


def read_poses(path: PathLike) -> np.ndarray:
    """Read KITTI odometry poses as ``float64 Nx4x4`` camera-to-world matrices."""
    poses = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 12:
                raise ValueError(f"{path}:{lineno}: expected 12 numbers per pose, got {len(parts)}")
            try:
                top = np.array([float(x) for x in parts], dtype=np.float64).reshape(3, 4)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            pose = np.eye(4)
            pose[:3] = top
            poses.append(pose)
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def write_poses(path: PathLike, poses: np.ndarray) -> None:
    """Write ``Nx4x4`` (or ``Nx3x4``) camera-to-world poses, 12 numbers (row-major 3x4) per line.

    Numbers use ``%.9e`` (KITTI's own files use ``%e``; the extra digits keep synthetic
    geometry exact to well below the 1/256 m depth quantisation).
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{path}: poses must be Nx4x4 or Nx3x4, got shape {poses.shape}")
    lines = [" ".join("%.9e" % (v + 0.0) for v in p[:3].ravel()) + "\n" for p in poses]  # no "-0"
    _atomic_write_text(path, "".join(lines))


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
