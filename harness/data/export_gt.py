"""``harness data export-gt``: write a split's evaluation GT to one no-pickle ``.npz``.

Layout: one ``float32 H x W`` array per frame (metres, 0 = invalid) keyed by its 5-digit
position in the split (``00000``, ``00001``, ...), plus ``frames``: the split lines as a NumPy
unicode array. ``np.load(path)`` reads it with the default ``allow_pickle=False``.

For KITTI ``eigen`` this is the Monodepth2 Eigen export (``export_gt_depth.py --split eigen``:
camera 2, ``S_rect_02`` size, LiDAR-x values; :func:`harness.data.kitti.velodyne_depth`), for
``eigen_benchmark`` the improved GT PNGs / 256. The archive is written frame by frame
(deflate-compressed members, so memory stays at one frame) into a temporary file that is
renamed into place.
"""
from __future__ import annotations

import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.data import formats
from harness.data.access import open_split
from harness.errors import HarnessError

__all__ = ["export_gt", "write_gt_npz"]


def write_gt_npz(out: str | Path, frames: list[str], gt_of: Callable[[int], np.ndarray],
                 progress: Callable[[int, int], None] | None = None, compresslevel: int = 1) -> None:
    """Write ``gt_of(i)`` for every frame and ``frames`` to ``out`` (atomically)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        formats.user_mode(fd)
        os.close(fd)
    except OSError as exc:
        raise HarnessError(f"option --out {out}: cannot write there ({exc.strerror or exc})") from None
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel,
                             allowZip64=True) as zf:
            n = len(frames)
            for i in range(n):
                arr = np.ascontiguousarray(gt_of(i), dtype=np.float32)
                with zf.open(f"{i:05d}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)
                if progress is not None:
                    progress(i + 1, n)
            with zf.open("frames.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.array(frames, dtype=str), allow_pickle=False)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def export_gt(*, dataset: str, data_root: str | Path, out: str | Path, split: str | None = None,
              split_file: str | Path | None = None, host=None, progress=None) -> dict[str, Any]:
    """Export the evaluation GT of one split; returns stats (frames, seconds, frames/s, path)."""
    out = Path(out)
    if out.suffix != ".npz":
        raise HarnessError(f"option --out {out}: the file name must end in .npz")
    if out.is_dir():
        raise HarnessError(f"option --out {out}: is a directory")
    t0 = time.perf_counter()
    opened = open_split(dataset, data_root, split=split, split_file=split_file, host=host)
    ds = opened.dataset
    frames = opened.frames
    valid = [0]

    def gt_of(i: int) -> np.ndarray:
        gt = ds.eval_gt(i)
        valid[0] += int((gt > 0).sum())
        return gt

    write_gt_npz(out, frames, gt_of, progress=progress)
    seconds = time.perf_counter() - t0
    return {"path": str(out), "frames": len(frames), "split": ds.split, "gt_source": ds.gt_source,
            "valid_pixels": valid[0], "seconds": seconds,
            "frames_per_second": len(frames) / seconds if seconds > 0 else float("inf")}
