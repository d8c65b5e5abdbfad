"""Tiny KITTI and DrivingStereo trees written in the real on-disk formats (docs/datasets.md).

KITTI: two date folders of odd sizes (881x267 and 643x190), calibration files with a
``calib_time`` string line, 8 frames per drive (RGB PNGs for image_02/03, Velodyne ``.bin``),
annotated uint16 GT under ``data_depth_annotated/train`` (drive A) and ``/val`` (drive B) for
frames >= 5. Frame 0 of drive A carries the special points: behind the car, out of frame, three
returns on one pixel, and a pair on Monodepth2's colliding linear index (pixels (r, W-1) and
(r+1, 0)).

DrivingStereo: half-size train (per-sequence folders, two sequences) and test (flat), a
the four full-size weather subsets (``foggy``/``rainy`` in the nested copy some unzips produce,
``sunny``/``cloudy`` flat),
half/full calibration files. Depth maps /256, disparity /256 (half) and /128 (full).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from harness.data import formats

# Real 2011_09_26 rotations (KITTI's calib files of that date); intrinsics made up for the odd image sizes.
R_RECT_00 = np.array([0.9999239, 0.00983776, -0.007445048, -0.009869795, 0.9999421, -0.004278459,
                      0.007402527, 0.004351614, 0.9999631]).reshape(3, 3)
VELO_R = np.array([0.007533745, -0.9999714, -0.000616602, 0.01480249, 0.0007280733, -0.9998902,
                   0.9998621, 0.00752379, 0.01480755]).reshape(3, 3)
VELO_T = np.array([-0.004069766, -0.07631618, -0.2717806])

DATES = {
    # date: (W, H, fx, cx, cy)
    "2011_09_26": (881, 267, 511.8, 432.4, 122.6),
    "2011_09_30": (643, 190, 373.5, 315.2, 88.1),
}
DRIVES = {"2011_09_26": "2011_09_26_drive_0002_sync", "2011_09_30": "2011_09_30_drive_0016_sync"}
N_FRAMES = 8
BASELINE = 0.5327


def P_rect(date: str, cam: int) -> np.ndarray:
    W, H, fx, cx, cy = DATES[date]
    x = -0.06 if cam == 2 else -0.06 + BASELINE  # camera x position relative to cam 0
    return np.array([[fx, 0, cx, -fx * x], [0, fx, cy, 0.2163791 * fx / 721.5377], [0, 0, 1, 0.002745884]])


def velo_to_image(date: str, cam: int = 2) -> np.ndarray:
    R4 = np.eye(4)
    R4[:3, :3] = R_RECT_00
    Tr = np.eye(4)
    Tr[:3, :3] = VELO_R
    Tr[:3, 3] = VELO_T
    return P_rect(date, cam) @ R4 @ Tr


def rect_to_velo(X_rect: np.ndarray) -> np.ndarray:
    """Points in the rectified camera-0 frame (N x 3) -> Velodyne frame (N x 3)."""
    R4 = np.eye(4)
    R4[:3, :3] = R_RECT_00
    Tr = np.eye(4)
    Tr[:3, :3] = VELO_R
    Tr[:3, 3] = VELO_T
    hom = np.c_[X_rect, np.ones(len(X_rect))]
    return (np.linalg.inv(R4 @ Tr) @ hom.T).T[:, :3]


def point_at(date: str, u: float, v: float, w: float) -> np.ndarray:
    """The Velodyne point projecting to image coordinates ``(u, v)`` with projective depth ``w``."""
    P = P_rect(date, 2)
    X = np.linalg.solve(P[:, :3], np.array([u * w, v * w, w]) - P[:, 3])
    return rect_to_velo(X[None])[0]


def special_points(date: str) -> tuple[np.ndarray, dict]:
    """Points exercising every rule of the Eigen export, and where they should land."""
    W, H = DATES[date][:2]
    pts = []
    # three returns on pixel (row 49, col 99): u, v round to (100, 50); depths 12, 10, 11
    for du, dv, w in ((0.2, 0.1, 12.0), (-0.3, 0.2, 10.0), (0.1, -0.4, 11.0)):
        pts.append(point_at(date, 100 + du, 50 + dv, w))
    # Monodepth2's colliding pair: (r=60, W-1) written first (20, then 25), then (61, 0) (15, then 18)
    pts.append(point_at(date, W, 61, 20.0))
    pts.append(point_at(date, W, 61, 25.0))
    pts.append(point_at(date, 1, 62, 15.0))
    pts.append(point_at(date, 1, 62, 18.0))
    # out of frame (left, right, above, below)
    pts += [point_at(date, -5, 30, 9.0), point_at(date, W + 7, 30, 9.0), point_at(date, 40, -3, 9.0),
            point_at(date, 40, H + 4, 9.0)]
    # behind the car: x_velo < 0 (its projection would land inside the image)
    behind = point_at(date, 200, 100, 8.0) * np.array([-1.0, -1.0, 1.0])
    pts.append(behind)
    expect = {"triple": (49, 99), "pair_a": (60, W - 1), "pair_b": (61, 0)}
    return np.array(pts), expect


def random_points(date: str, n: int, rng: np.random.Generator) -> np.ndarray:
    W, H = DATES[date][:2]
    u = rng.uniform(-20, W + 20, n)
    v = rng.uniform(-20, H + 20, n)
    w = rng.uniform(2.0, 70.0, n)
    P = P_rect(date, 2)
    rhs = np.stack([u * w, v * w, w]) - P[:, 3:4]
    X = np.linalg.solve(P[:, :3], rhs).T
    velo = rect_to_velo(X)
    # a few points behind the car
    back = rng.choice(n, size=n // 20, replace=False)
    velo[back, 0] *= -1
    return velo


def to_bin_points(velo: np.ndarray) -> np.ndarray:
    out = np.empty((len(velo), 4), dtype=np.float32)
    out[:, :3] = velo
    out[:, 3] = 0.3
    return out


def write_kitti_calib(date_dir: Path, date: str) -> None:
    W, H = DATES[date][:2]
    cam: dict[str, object] = {"calib_time": "09-Jan-2012 13:57:47", "corner_dist": [9.95e-02]}
    for c in range(4):
        xx = f"{c:02d}"
        P = P_rect(date, c) if c in (2, 3) else P_rect(date, 2) * np.array([1, 1, 1, 0])
        cam[f"S_{xx}"] = [W + 10, H + 5]
        cam[f"K_{xx}"] = P[:, :3].ravel()
        cam[f"D_{xx}"] = [-0.37, 0.2, 0.002, 0.001, -0.07]
        cam[f"R_{xx}"] = np.eye(3).ravel()
        cam[f"T_{xx}"] = [0.0, 0.0, 0.0]
        cam[f"S_rect_{xx}"] = [W, H]
        cam[f"R_rect_{xx}"] = R_RECT_00.ravel()
        cam[f"P_rect_{xx}"] = P.ravel()
    formats.write_calib(date_dir / "calib_cam_to_cam.txt", cam)
    formats.write_calib(date_dir / "calib_velo_to_cam.txt", {
        "calib_time": "15-Mar-2012 11:37:16", "R": VELO_R.ravel(), "T": VELO_T,
        "delta_f": [0.0, 0.0], "delta_c": [0.0, 0.0],
    })


def write_kitti(root: Path, seed: int = 0, points_per_frame: int = 3000, jpg_date: str | None = None) -> dict:
    """Write the KITTI fixture; returns ``{"drives": {...}, "special": expect, ...}``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    info = {"drives": {}, "special": None}
    for date, drive in DRIVES.items():
        W, H = DATES[date][:2]
        write_kitti_calib(root / date, date)
        ddir = root / date / drive
        subset = "train" if date == "2011_09_26" else "val"
        for t in range(N_FRAMES):
            for cam in (2, 3):
                img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
                ext = "jpg" if date == jpg_date else "png"
                path = ddir / f"image_0{cam}" / "data" / f"{t:010d}.{ext}"
                if ext == "png":
                    formats.write_image(path, img)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            velo = random_points(date, points_per_frame, rng)
            if t == 0 and date == "2011_09_26":
                special, expect = special_points(date)
                # keep random returns off the special pixels (and their neighbours)
                hom = np.c_[velo, np.ones(len(velo))] @ velo_to_image(date).T
                col = np.round(hom[:, 0] / hom[:, 2]) - 1
                row = np.round(hom[:, 1] / hom[:, 2]) - 1
                near = np.zeros(len(velo), bool)
                for r, c in expect.values():
                    near |= (np.abs(row - r) <= 1) & (np.abs(col - c) <= 1)
                velo = np.concatenate([special, velo[~near]])
                info["special"] = expect
            formats.write_velodyne(ddir / "velodyne_points" / "data" / f"{t:010d}.bin", to_bin_points(velo))
            if t >= 5:
                for cam in (2, 3):
                    gt = np.zeros((H, W), np.float32)
                    sel = rng.random((H, W)) < 0.05
                    gt[sel] = rng.uniform(1.0, 90.0, int(sel.sum()))
                    gdir = root / "data_depth_annotated" / subset / drive / "proj_depth" / "groundtruth"
                    formats.write_png16(gdir / f"image_0{cam}" / f"{t:010d}.png", gt)
        info["drives"][drive] = {"date": date, "size": (H, W), "subset": subset}
    return info


def kitti_line(date: str, frame: int, side: str = "l", padded: bool = True) -> str:
    return f"{date}/{DRIVES[date]} {frame:010d} {side}" if padded else f"{date}/{DRIVES[date]} {frame} {side}"


def kitti_split(path: Path, rows: list[tuple[str, int, str]], padded: bool = True) -> Path:
    """Write a split file of ``(date, frame, side)`` rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(kitti_line(d, f, s, padded) + "\n" for d, f, s in rows))
    return path


# --------------------------------------------------------------------------------------------
# DrivingStereo
# --------------------------------------------------------------------------------------------
DS_SEQS = {"train": ["2018-07-16-15-18-53", "2018-07-18-10-16-21"], "test": ["2018-07-11-14-48-52"],
           "foggy": ["2018-10-25-07-37-26"], "sunny": ["2018-10-19-09-30-39"],
           "cloudy": ["2018-10-31-06-55-01"], "rainy": ["2018-08-17-09-45-58"]}
DS_HALF = (100, 881)  # H, W (the release's 881-wide half size, short for speed)
DS_FULL = (200, 1762)
DS_FX_HALF = 1003.556
DS_T103 = np.array([-0.5446076, 0.0021, -0.0013])


def ds_stems(seq: str, n: int) -> list[str]:
    # timestamps deliberately written out of order on disk creation, sorted by stem on reading
    return [f"{seq}_{seq[:10]}-09-{10 + k:02d}-{(7 * k) % 10}{k}0" for k in range(n)]


def _ds_calib(path: Path, fx: float, size) -> None:
    H, W = size
    cal = {"calib_time": "25-Oct-2018 08:00:00"}
    for cam in ("101", "103"):
        tx = 0.0 if cam == "101" else -fx * 0.5446
        cal[f"S_{cam}"] = [W, H]
        cal[f"K_{cam}"] = [fx, 0, W / 2, 0, fx, H / 2, 0, 0, 1]
        cal[f"D_{cam}"] = [0, 0, 0, 0, 0]
        cal[f"R_{cam}"] = np.eye(3).ravel()
        cal[f"T_{cam}"] = [0, 0, 0] if cam == "101" else DS_T103
        cal[f"S_rect_{cam}"] = [W, H]
        cal[f"R_rect_{cam}"] = np.eye(3).ravel()
        cal[f"P_rect_{cam}"] = [fx, 0, W / 2, tx, 0, fx, H / 2, 0, 0, 0, 1, 0]
    formats.write_calib(path, cal)


def _ds_frame(rng, size, ext_img: str, dirs: dict, stem: str, disp_scale: float, fx: float) -> np.ndarray:
    H, W = size
    depth = np.zeros((H, W), np.float32)
    sel = rng.random((H, W)) < 0.3
    depth[sel] = rng.uniform(5.0, 70.0, int(sel.sum()))  # >= 5 m: half-size disparity fits uint16/256
    for kind in ("left", "right"):
        img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        path = dirs[kind] / f"{stem}.{ext_img}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if ext_img == "png":
            formats.write_image(path, img)
        else:
            cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    formats.write_png16(dirs["depth"] / f"{stem}.png", depth)
    disp = np.zeros_like(depth)
    disp[depth > 0] = fx * float(np.linalg.norm(DS_T103)) / depth[depth > 0]
    raw = np.clip(np.rint(disp * disp_scale), 0, 65535).astype(np.uint16)
    (dirs["disparity"]).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dirs["disparity"] / f"{stem}.png"), raw)
    return depth


def write_drivingstereo(root: Path, seed: int = 0, frames: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    root = Path(root)
    depths: dict[str, np.ndarray] = {}
    # half-size train: per-sequence folders
    for base, flat in (("train", False), ("test", True)):
        for seq in DS_SEQS[base]:
            dirs = {
                "left": root / f"{base}-left-image", "right": root / f"{base}-right-image",
                "depth": root / f"{base}-depth-map", "disparity": root / f"{base}-disparity-map",
            }
            if not flat:
                dirs = {k: v / seq for k, v in dirs.items()}
            for stem in reversed(ds_stems(seq, frames)):
                depths[stem] = _ds_frame(rng, DS_HALF, "jpg", dirs, stem, 256.0, DS_FX_HALF)
            _ds_calib(root / "calib" / "half-image-calib" / f"{seq}.txt", DS_FX_HALF, DS_HALF)
    for w, nested in (("sunny", False), ("cloudy", False), ("foggy", True), ("rainy", True)):
        seq = DS_SEQS[w][0]
        dirs = {}
        for kind, name in (("left", "left-image"), ("right", "right-image"), ("depth", "depth-map"),
                           ("disparity", "disparity-map")):
            top = root / w / f"{name}-full-size"
            dirs[kind] = top / w / f"{name}-full-size" if nested else top
        for stem in ds_stems(seq, frames):
            depths[stem] = _ds_frame(rng, DS_FULL, "png", dirs, stem, 128.0, 2 * DS_FX_HALF)
        _ds_calib(root / "calib" / "full-image-calib" / f"{seq}.txt", 2 * DS_FX_HALF, DS_FULL)
        _ds_calib(root / "calib" / "half-image-calib" / f"{seq}.txt", DS_FX_HALF, DS_HALF)
    return {"depths": depths}
