"""KITTI raw's GPS/IMU side for a synthetic drive: ``calib_imu_to_velo.txt``, OXTS packets
derived from the camera poses, and the per-sensor ``timestamps.txt`` files, so that KITTI
clients (pykitti, the devkit) read the set unchanged.

Frames (KITTI raw ``dataformat.txt``): the IMU has x forward, y left, z up; the OXTS world is
East-North-Up with pykitti's origin at the first position. The synthetic world (camera 2 of
frame 0: x right, y down, z forward) is placed with the street heading east::

    east = z_synth,  north = -x_synth,  up = -y_synth

so the IMU pose is ``T_enu_imu(t) = A @ poses[t] @ T_cam2_imu`` with ``T_cam2_imu =
T_cam2_velo @ T_velo_imu`` from the written calibration (rectified camera 2 = camera 0 here).
Each packet holds the 30 values of ``dataformat.txt`` in its order: lat, lon, alt (Mercator,
inverted exactly as pykitti projects it, around :data:`ORIGIN`), roll, pitch, yaw (``R = Rz(yaw)
Ry(pitch) Rx(roll)``), velocities vn, ve, vf, vl, vu, accelerations ax, ay, az (body, gravity
included as an accelerometer measures it) and af, al, au (forward/left/up), angular rates wx, wy,
wz (body) and wf, wl, wu, then pos/vel accuracy, navstat, numsats, posmode, velmode, orimode.
Derivatives are central finite differences at :data:`RATE_HZ`.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np

from harness.data import formats

__all__ = [
    "IMU_R",
    "IMU_T",
    "ORIGIN",
    "RATE_HZ",
    "SYNTH_TO_ENU",
    "calib_imu_to_velo",
    "imu_poses",
    "oxts_packets",
    "timestamps",
    "write_drive_oxts",
]

#: KITTI 2011_09_26 IMU -> Velodyne extrinsics (calib_imu_to_velo.txt)
IMU_R = np.array(
    [
        [9.999976e-01, 7.553071e-04, -2.035826e-03],
        [-7.854027e-04, 9.998898e-01, -1.482298e-02],
        [2.024406e-03, 1.482454e-02, 9.998881e-01],
    ]
)
IMU_T = np.array([-8.086759e-01, 3.195559e-01, -7.997231e-01])
#: latitude, longitude (deg) and altitude (m) of the first frame of every drive (Karlsruhe)
ORIGIN = (49.011, 8.4237, 115.0)
RATE_HZ = 10.0
SYNTH_TO_ENU = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
EARTH_RADIUS = 6378137.0
GRAVITY = 9.81
_FLAGS = (0.05, 0.02, 4, 10, 5, 5, 6)  # pos_accuracy, vel_accuracy, navstat, numsats, posmode, velmode, orimode


def calib_imu_to_velo(calib_time: str) -> dict:
    return {"calib_time": calib_time, "R": IMU_R.ravel(), "T": IMU_T}


def _rigid(R, T) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = T
    return M


def imu_poses(poses: np.ndarray, velo_R: np.ndarray, velo_T: np.ndarray) -> np.ndarray:
    """``N x 4 x 4`` IMU-to-ENU poses of a drive (origin: the synthetic world origin)."""
    T_cam2_imu = _rigid(velo_R, velo_T) @ _rigid(IMU_R, IMU_T)
    A = np.eye(4)
    A[:3, :3] = SYNTH_TO_ENU
    return A @ np.asarray(poses, dtype=np.float64) @ T_cam2_imu


def _rotation_vector(R: np.ndarray) -> np.ndarray:
    """Axis-angle vectors of ``N x 3 x 3`` rotations (small angles: exact formula, no branch cut)."""
    cos = np.clip((np.trace(R, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], axis=1)
    scale = np.where(angle > 1e-12, angle / (2.0 * np.sin(np.maximum(angle, 1e-12))), 0.5)
    return axis * scale[:, None]


def oxts_packets(T_enu_imu: np.ndarray) -> np.ndarray:
    """``N x 30`` OXTS values (module docstring) of a drive's IMU poses."""
    n = len(T_enu_imu)
    R, p = T_enu_imu[:, :3, :3], T_enu_imu[:, :3, 3]
    lat0, lon0, alt0 = ORIGIN
    scale = math.cos(math.radians(lat0))
    tx0 = scale * lon0 * math.pi * EARTH_RADIUS / 180.0
    ty0 = scale * EARTH_RADIUS * math.log(math.tan((90.0 + lat0) * math.pi / 360.0))
    rel = p - p[0]
    lon = (tx0 + rel[:, 0]) * 180.0 / (scale * math.pi * EARTH_RADIUS)
    lat = np.degrees(2.0 * np.arctan(np.exp((ty0 + rel[:, 1]) / (scale * EARTH_RADIUS)))) - 90.0
    alt = alt0 + rel[:, 2]
    roll = np.arctan2(R[:, 2, 1], R[:, 2, 2])
    pitch = -np.arcsin(np.clip(R[:, 2, 0], -1.0, 1.0))
    yaw = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    dt_s = 1.0 / RATE_HZ
    grad = (lambda x: np.gradient(x, dt_s, axis=0)) if n > 1 else (lambda x: np.zeros_like(x))
    v = grad(p)
    a = grad(v) + np.array([0.0, 0.0, GRAVITY])  # specific force: gravity's reaction included
    # level frame: heading only (forward, left, up)
    cy, sy = np.cos(yaw), np.sin(yaw)
    Ryaw = np.zeros((n, 3, 3))
    Ryaw[:, 0, 0], Ryaw[:, 0, 1], Ryaw[:, 1, 0], Ryaw[:, 1, 1], Ryaw[:, 2, 2] = cy, -sy, sy, cy, 1.0
    body = lambda M, x: np.einsum("nji,nj->ni", M, x)  # noqa: E731  (M^T x)
    v_level, a_body, a_level = body(Ryaw, v), body(R, a), body(Ryaw, a)
    w_body = np.zeros((n, 3))
    if n > 1:
        step = _rotation_vector(np.einsum("nji,njk->nik", R[:-1], R[1:])) * RATE_HZ  # body rate between frames
        w_body[0], w_body[-1] = step[0], step[-1]
        w_body[1:-1] = 0.5 * (step[:-1] + step[1:])
    w_level = np.einsum("nij,nj->ni", np.einsum("nji,njk->nik", Ryaw, R), w_body)
    out = np.zeros((n, 30))
    out[:, 0], out[:, 1], out[:, 2] = lat, lon, alt
    out[:, 3], out[:, 4], out[:, 5] = roll, pitch, yaw
    out[:, 6], out[:, 7] = v[:, 1], v[:, 0]  # vn, ve
    out[:, 8:11] = v_level
    out[:, 11:14], out[:, 14:17] = a_body, a_level
    out[:, 17:20], out[:, 20:23] = w_body, w_level
    out[:, 23:30] = _FLAGS
    return out


def _format_packet(row: np.ndarray) -> str:
    head = [f"{row[0]:.14f}", f"{row[1]:.14f}", f"{row[2]:.10f}"] + [f"{x:.12g}" for x in row[3:25]]
    return " ".join(head + [str(int(x)) for x in row[25:]])


def timestamps(drive_index: int, n_frames: int, date: str) -> list[str]:
    """KITTI timestamp lines (``YYYY-mm-dd HH:MM:SS.nnnnnnnnn``) at :data:`RATE_HZ`; drive
    ``k`` starts at 12:00 + k minutes of ``date``."""
    start = dt.datetime.strptime(date, "%Y_%m_%d") + dt.timedelta(hours=12, minutes=drive_index)
    step_ns = round(1e9 / RATE_HZ)
    lines = []
    for t in range(n_frames):
        ns = t * step_ns
        stamp = start + dt.timedelta(seconds=ns // 1_000_000_000)
        lines.append(f"{stamp:%Y-%m-%d %H:%M:%S}.{ns % 1_000_000_000:09d}")
    return lines


def write_drive_oxts(drive_dir: Path, drive_index: int, poses: np.ndarray, date: str,
                     velo_R: np.ndarray, velo_T: np.ndarray) -> None:
    """``oxts/data/%010d.txt`` (one packet each), ``oxts/timestamps.txt`` and the
    ``timestamps.txt`` of ``image_02``, ``image_03`` and ``velodyne_points`` of one drive."""
    packets = oxts_packets(imu_poses(poses, velo_R, velo_T))
    text = "".join(f"{ln}\n" for ln in timestamps(drive_index, len(poses), date)).encode()
    for sensor in ("oxts", "image_02", "image_03", "velodyne_points"):
        formats.atomic_write_bytes(drive_dir / sensor / "timestamps.txt", text)
    for t, row in enumerate(packets):
        formats.atomic_write_bytes(drive_dir / "oxts" / "data" / f"{t:010d}.txt", (_format_packet(row) + "\n").encode())
