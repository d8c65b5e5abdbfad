"""Built-in procedural stereo driving-scene generator ("synth"), written in KITTI raw layout.

A drive is a camera rig moving forward (+z) along a straight street: a ground plane with road,
lane marks, parking strips, sidewalks and back yards; buildings (boxes with window patterns)
along both sides with gaps between them; parked and stopped cars (two boxes each: body and
cabin); street-light poles; sky. Everything is static, so the only motion is ego-motion.

Rendering is exact ray casting, vectorised with NumPy:

* camera rays ``d = ((u - cx)/fx, (v - cy)/fy, 1)`` rotated into the world, so the ray
  parameter of a hit *is* its camera depth ``z``;
* the ground is one analytic ray-plane intersection for all pixels;
* boxes use the slab test over (pixel, box) candidate pairs: every box is clipped to the near
  plane and projected to a pixel rectangle, and only pixels inside it are tested, all pairs in
  one batch (no per-pixel or per-box Python loop in the hot path); nearest hit wins;
* textures are functions of WORLD surface coordinates (value-noise octaves, stripes, window
  grids), box-filtered over the pixel footprint so that they are band-limited; shading is
  Lambertian with a per-drive sun direction + ambient. Hence the same surface point has the
  same colour in the left and right views and in neighbouring frames (up to the tiny change of
  the anti-aliasing footprint with distance): stereo and temporal warps reproduce the images.

Coordinates: world = camera frame of frame 0 (x right, y down, z forward); the ground is the
plane ``y = CAMERA_HEIGHT``; the left camera (``image_02``) carries the pose, the right camera
(``image_03``) sits at ``+BASELINE`` along the camera x axis.

:func:`generate` writes a whole data set (layout in its docstring); :class:`DriveScene`
renders single frames in memory (used by tests and by anyone who wants arrays, not files).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data import formats, oxts, synth_splits

__all__ = [
    "GENERATOR",
    "VERSION",
    "DATE",
    "BASELINE",
    "CAMERA_HEIGHT",
    "MAX_DEPTH",
    "LABELS",
    "VELO_R",
    "VELO_T",
    "Camera",
    "DriveScene",
    "generate",
    "fingerprint",
    "drive_name",
    "velodyne_from_depth",
]

GENERATOR = "stereodistill.synth"
#: Bump when the output of a given seed changes (cache keys include it via synth.json).
VERSION = "2"
#: Recording "date" of every synthetic drive (KITTI's date-folder level).
DATE = "2000_01_01"
CALIB_TIME = "01-Jan-2000 12:00:00"
BASELINE = 0.54
CAMERA_HEIGHT = 1.65
#: Surfaces farther than this camera depth are not rendered (sky, depth 0) so that every depth
#: fits a 16-bit PNG (max 255.996 m). Only reached by very long drives.
MAX_DEPTH = 250.0
LABELS = {0: "sky", 1: "road", 2: "lane_mark", 3: "sidewalk", 4: "building", 5: "car", 6: "pole"}
SKY, ROAD, LANE_MARK, SIDEWALK, BUILDING, CAR, POLE = range(7)

#: KITTI 2011_09_26 velodyne->camera extrinsics (the ``calib_velo_to_cam.txt`` of that date).
VELO_R = np.array(
    [
        [0.007533745, -0.9999714, -0.000616602],
        [0.01480249, 0.0007280733, -0.9998902],
        [0.9998621, 0.00752379, 0.01480755],
    ]
)
VELO_T = np.array([-0.004069766, -0.07631618, -0.2717806])

_NEAR = 0.05
# box kinds
_K_BUILDING, _K_BODY, _K_CABIN, _K_POLE = 0, 1, 2, 3
_KIND_LABEL = np.array([BUILDING, CAR, CAR, POLE], dtype=np.uint8)

_FACADE_COLOURS = np.array(
    [
        [0.80, 0.72, 0.58],
        [0.62, 0.33, 0.26],
        [0.60, 0.60, 0.60],
        [0.86, 0.85, 0.80],
        [0.85, 0.77, 0.50],
        [0.58, 0.68, 0.78],
        [0.45, 0.36, 0.30],
        [0.84, 0.60, 0.50],
        [0.70, 0.75, 0.62],
    ]
)
_CAR_COLOURS = np.array(
    [
        [0.90, 0.90, 0.90],
        [0.08, 0.08, 0.09],
        [0.62, 0.64, 0.66],
        [0.70, 0.10, 0.10],
        [0.12, 0.22, 0.55],
        [0.10, 0.32, 0.18],
        [0.85, 0.70, 0.15],
        [0.35, 0.35, 0.38],
    ]
)


def _canon(x: float) -> float:
    """Round a number the way the calibration file stores it (``%e``), so files are exact."""
    return float("%e" % x)


def drive_name(index: int) -> str:
    """Folder name of drive ``index`` (0-based): ``2000_01_01_drive_0001_sync`` for 0."""
    return f"{DATE}_drive_{index + 1:04d}_sync"


# --------------------------------------------------------------------------------------------
# camera
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """Rectified pinhole stereo camera (pixel centres at integer coordinates, 0-based)."""

    height: int
    width: int
    fx: float
    fy: float
    cx: float
    cy: float
    baseline: float = BASELINE

    @classmethod
    def for_size(cls, height: int, width: int) -> "Camera":
        """KITTI-like intrinsics scaled to the image: fx = fy = 721.5377 W / 1242, cx = W/2,
        cy = 0.46 H (horizon a little above the centre). Values are rounded as ``%e`` so the
        calibration file reproduces them exactly."""
        if height < 2 or width < 2:
            raise ValueError(f"image size must be at least 2x2, got {height}x{width}")
        fx = _canon(721.5377 * width / 1242.0)
        return cls(int(height), int(width), fx, fx, _canon(width / 2.0), _canon(height * 0.46))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def P_rect(self, cam: int) -> np.ndarray:
        """3x4 rectified projection of camera 0/2 (left) or 1/3 (right)."""
        P = np.zeros((3, 4))
        P[:, :3] = self.K
        if cam in (1, 3):
            P[0, 3] = _canon(-self.fx * self.baseline)
        return P

    def rays(self) -> np.ndarray:
        """``(H*W, 3)`` camera-frame ray directions with z = 1 (row-major pixel order)."""
        v, u = np.mgrid[0 : self.height, 0 : self.width]
        d = np.empty((self.height * self.width, 3))
        d[:, 0] = (u.ravel() - self.cx) / self.fx
        d[:, 1] = (v.ravel() - self.cy) / self.fy
        d[:, 2] = 1.0
        return d


# --------------------------------------------------------------------------------------------
# texture helpers (all vectorised)
# --------------------------------------------------------------------------------------------


class _ValueNoise:
    """2-D value noise on a random 512x512 lattice (period 512 lattice units), in [0, 1]."""

    SIZE = 512

    def __init__(self, rng: np.random.Generator):
        self.table = rng.random(self.SIZE * self.SIZE, dtype=np.float32)

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        m = self.SIZE - 1
        fu = np.floor(u)
        fv = np.floor(v)
        su = (u - fu).astype(np.float32)
        sv = (v - fv).astype(np.float32)
        iu = fu.astype(np.int64) & m
        iv = fv.astype(np.int64) & m
        iu1 = (iu + 1) & m
        row0 = iv * self.SIZE
        row1 = ((iv + 1) & m) * self.SIZE
        t = self.table
        su = su * su * (3.0 - 2.0 * su)
        sv = sv * sv * (3.0 - 2.0 * sv)
        a = t[row0 + iu]
        b = t[row0 + iu1]
        c = t[row1 + iu]
        d = t[row1 + iu1]
        ab = a + (b - a) * su
        cd = c + (d - c) * su
        return ab + (cd - ab) * sv

    def fbm(self, u, v, octaves, footprint) -> np.ndarray:
        """Sum of ``amp * (noise - 0.5)`` over ``(frequency, amplitude)`` octaves; an octave
        fades out as its wavelength approaches two pixel footprints (no aliasing)."""
        out = np.zeros(np.shape(u), dtype=np.float32)
        for k, (freq, amp) in enumerate(octaves):
            fade = np.clip(2.0 - 4.0 * footprint * freq, 0.0, 1.0).astype(np.float32)
            if not fade.any():
                continue
            off = 57.31 * (k + 1)
            out += (amp * fade) * (self(u * freq + off, v * freq - 0.61 * off) - 0.5)
        return out


def _pulse(x, a, b, e):
    """Box-filtered (width ``e``) periodic indicator of ``a <= frac(x) < b`` (period 1)."""
    w = b - a

    def integral(y):
        fl = np.floor(y)
        return fl * w + np.clip(y - fl - a, 0.0, w)

    return np.clip((integral(x + 0.5 * e) - integral(x - 0.5 * e)) / e, 0.0, 1.0)


def _band(x, lo, hi, e):
    """Box-filtered (width ``e``) indicator of ``lo <= x < hi``."""
    return np.clip((np.minimum(x + 0.5 * e, hi) - np.maximum(x - 0.5 * e, lo)) / e, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# one drive
# --------------------------------------------------------------------------------------------

_CORNER_BITS = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=bool)
_EDGES = np.array([(i, i | (1 << k)) for i in range(8) for k in range(3) if not i & (1 << k)])


class DriveScene:
    """One procedurally generated drive: the static street scene and the ego trajectory.

    Everything is drawn from ``np.random.default_rng([seed, drive_index])`` (attempt 0) or
    ``default_rng([seed, drive_index, attempt])`` (a redraw, see :mod:`.synth_splits`), so a
    drive does not depend on any other drive. ``poses[t]`` is the left camera's
    camera-to-world matrix.
    """

    #: Texture pre-filter width in pixels: patterns are box-filtered over AA pixel footprints
    #: (1 = exact pixel area; 2 keeps linear interpolation of the images close to the
    #: true texture, which is what stereo/temporal warping tests and losses rely on).
    AA = 2.0

    def __init__(
        self,
        seed: int,
        drive_index: int,
        n_frames: int,
        camera: Camera,
        sensor_noise: float = 0.0,
        yaw: bool = True,
        attempt: int = 0,
    ):
        if seed < 0 or drive_index < 0 or attempt < 0:
            raise ValueError("seed, drive_index and attempt must be non-negative integers")
        if n_frames < 1:
            raise ValueError("a drive needs at least one frame")
        self.seed = int(seed)
        self.drive_index = int(drive_index)
        self.n_frames = int(n_frames)
        self.camera = camera
        self.sensor_noise = float(sensor_noise)
        self.attempt = int(attempt)
        key = [self.seed, self.drive_index] + ([self.attempt] if self.attempt else [])
        rng = np.random.default_rng(key)
        self._noise = _ValueNoise(rng)
        self._layout(rng, yaw)
        self._rays = np.ascontiguousarray(camera.rays().T)  # 3 x P
        self._ray_norm = np.sqrt((self._rays**2).sum(0)).astype(np.float32)

    # ---------------------------------------------------------------------- layout
    def _layout(self, rng: np.random.Generator, yaw: bool) -> None:
        u = rng.uniform
        self.lane_w = u(3.0, 3.6)
        self.n_lanes = int(rng.choice([1, 2], p=[0.6, 0.4]))
        self.lanes_hw = self.n_lanes * self.lane_w  # half width of the driving lanes
        self.road_hw = self.lanes_hw + 2.2  # + parking strip
        self.street_hw = self.road_hw + u(2.0, 4.0)  # + sidewalk: building fronts
        self.back_x = self.street_hw + u(16.0, 26.0)  # rear building rows
        self.road_tone = u(0.26, 0.36)
        self.walk_tone = u(0.50, 0.64)

        # sun (unit vector towards the sun; y points down) and lighting
        el, az = math.radians(u(25.0, 65.0)), u(0.0, 2.0 * math.pi)
        self.sun = np.array([math.cos(el) * math.sin(az), -math.sin(el), math.cos(el) * math.cos(az)])
        self.ambient = u(0.42, 0.55)
        self.diffuse = u(0.55, 0.7)

        # ego trajectory: constant speed (+-3 % jitter), optional small sinusoidal yaw
        speed = u(0.5, 1.5)
        n = self.n_frames
        v = speed * (1.0 + u(-0.03, 0.03, size=n))
        amp = u(0.0, 0.012) if (yaw and rng.random() < 0.5) else 0.0
        period, phase = u(15.0, 40.0), u(0.0, 2.0 * math.pi)
        heading = amp * (np.sin(2.0 * math.pi * np.arange(n) / period + phase) - math.sin(phase))
        lane = int(rng.integers(self.n_lanes))
        x = np.empty(n)
        z = np.empty(n)
        x[0], z[0] = self.lane_w * (lane + 0.5), 0.0
        for t in range(1, n):
            x[t] = x[t - 1] + v[t - 1] * math.sin(heading[t - 1])
            z[t] = z[t - 1] + v[t - 1] * math.cos(heading[t - 1])
        poses = np.zeros((n, 4, 4))
        c, s = np.cos(heading), np.sin(heading)
        poses[:, 0, 0], poses[:, 0, 2], poses[:, 2, 0], poses[:, 2, 2] = c, s, -s, c
        poses[:, 1, 1] = 1.0
        poses[:, 0, 3], poses[:, 2, 3], poses[:, 3, 3] = x, z, 1.0
        # round-trip through the pose file format so rendered geometry == written poses
        self.poses = np.array([float("%.9e" % p) for p in poses.ravel()]).reshape(n, 4, 4)
        self.speed = speed
        self.ego_x = x

        z_last = float(z[-1])
        self.z_begin = -30.0
        self.z_end = z_last + u(90.0, 160.0)
        H = CAMERA_HEIGHT
        lo, hi, kind, colour, params = [], [], [], [], []

        def add(b_lo, b_hi, k, col, par=()):
            lo.append(b_lo)
            hi.append(b_hi)
            kind.append(k)
            colour.append(col)
            p = np.zeros(8)
            p[: len(par)] = par
            params.append(p)

        def building(x0, x1, z0, z1, height):
            col = _FACADE_COLOURS[rng.integers(len(_FACADE_COLOURS))] * u(0.85, 1.1, size=3)
            par = (
                u(1.8, 3.2),  # window spacing
                u(2.8, 3.4),  # floor height
                u(0.35, 0.6),  # window width fraction
                u(0.4, 0.6),  # window height fraction
                float(rng.random() < 0.5),  # shop windows on the ground floor
                u(0.0, 1000.0),  # per-building noise offset
                u(0.6, 1.0),  # glass brightness
            )
            add([x0, H - height, z0], [x1, H, z1], _K_BUILDING, np.clip(col, 0, 1), par)

        # building rows on both sides, front at +-street_hw (some set back a little)
        for side in (-1.0, 1.0):
            zc = self.z_begin
            while zc < self.z_end:
                length = u(8.0, 28.0)
                setback = u(0.3, 1.5) if rng.random() < 0.3 else 0.0
                depth = u(8.0, 14.0)
                front = self.street_hw + setback
                x0, x1 = (front, front + depth) if side > 0 else (-front - depth, -front)
                building(x0, x1, zc, min(zc + length, self.z_end), u(6.0, 24.0))
                zc += length
                if rng.random() < 0.3:
                    zc += u(3.0, 10.0)  # gap / alley
            # rear row seen through the gaps
            bx = self.back_x
            building(bx if side > 0 else -bx - 4.0, bx + 4.0 if side > 0 else -bx,
                     self.z_begin, self.z_end + 4.0, u(10.0, 28.0))
        # end of the street
        building(-self.back_x - 4.0, self.back_x + 4.0, self.z_end, self.z_end + 6.0, u(12.0, 30.0))

        def car(xc, zc, facing):
            length, width = u(3.8, 4.8), u(1.65, 1.9)
            body_h, cab_h = u(0.75, 0.95), u(0.45, 0.6)
            col = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * u(0.9, 1.05)
            col = np.clip(col, 0, 1)
            z0, z1 = zc - length / 2, zc + length / 2
            add([xc - width / 2, H - body_h, z0], [xc + width / 2, H, z1], _K_BODY, col,
                (facing, body_h))
            cl = length * u(0.45, 0.6)
            cz = zc - facing * length * u(0.0, 0.08)
            add([xc - width / 2 + 0.08, H - body_h - cab_h, cz - cl / 2],
                [xc + width / 2 - 0.08, H - body_h, cz + cl / 2], _K_CABIN, col, (facing, body_h))

        # parked cars along both kerbs
        for side in (-1.0, 1.0):
            zc = self.z_begin + u(0.0, 8.0)
            while zc < self.z_end - 20.0:
                if rng.random() < 0.2:
                    zc += u(6.0, 20.0)
                    continue
                xc = side * (self.lanes_hw + 1.1 + u(-0.1, 0.15))
                car(xc, zc + 2.4, side if rng.random() < 0.8 else -side)
                zc += 4.8 + u(0.8, 5.0)
        # stopped traffic in the lanes the ego car does not use
        lane_x = [-(k + 0.5) * self.lane_w for k in range(self.n_lanes)]
        lane_x += [(k + 0.5) * self.lane_w for k in range(self.n_lanes) if k != lane]
        for xl in lane_x:
            zc = u(5.0, 30.0)
            while zc < self.z_end - 25.0:
                if rng.random() < 0.5:
                    car(xl + u(-0.3, 0.3), zc, 1.0 if xl > 0 else -1.0)
                zc += u(12.0, 40.0)
        if rng.random() < 0.5:  # a car waiting ahead in the ego lane, beyond the drive's end
            car(self.lane_w * (lane + 0.5) + u(-0.2, 0.2), z_last + u(10.0, 35.0), 1.0)

        # street-light poles with an arm over the road
        for side in (-1.0, 1.0):
            zc = self.z_begin + u(0.0, 15.0)
            gap = u(14.0, 30.0)
            while zc < self.z_end - 10.0:
                xp, th, ph = side * (self.road_hw + 0.5), u(0.14, 0.22), u(5.5, 8.0)
                col = np.full(3, u(0.35, 0.6))
                add([xp - th / 2, H - ph, zc - th / 2], [xp + th / 2, H, zc + th / 2], _K_POLE, col)
                arm = u(1.2, 2.2)
                ax0, ax1 = sorted((xp, xp - side * arm))
                add([ax0, H - ph, zc - 0.06], [ax1, H - ph + 0.12, zc + 0.06], _K_POLE, col)
                zc += gap * u(0.9, 1.1)

        self.box_lo = np.array(lo, dtype=np.float64)
        self.box_hi = np.array(hi, dtype=np.float64)
        self.box_kind = np.array(kind, dtype=np.int64)
        self.box_colour = np.array(colour, dtype=np.float32)
        self.box_params = np.array(params, dtype=np.float64)
        # struct-of-arrays copies for fast 1-D gathers in the renderer
        self._lo = np.ascontiguousarray(self.box_lo.T)
        self._hi = np.ascontiguousarray(self.box_hi.T)
        self._lo32 = self._lo.astype(np.float32)
        self._hi32 = self._hi.astype(np.float32)
        self._col = np.ascontiguousarray(self.box_colour.T)
        self._par = np.ascontiguousarray(self.box_params.T).astype(np.float32)

    # ---------------------------------------------------------------------- rendering
    def camera_origin(self, t: int, view: str = "left") -> tuple[np.ndarray, np.ndarray]:
        """World origin and camera-to-world rotation of ``view`` ("left"/"right") at frame t."""
        pose = self.poses[t]
        R = pose[:3, :3]
        o = pose[:3, 3].copy()
        if view == "right":
            o = o + R[:, 0] * self.camera.baseline
        elif view != "left":
            raise ValueError(f"view must be 'left' or 'right', got {view!r}")
        return o, R

    def _box_pixel_ranges(self, o, R):
        cam = self.camera
        corners = np.where(_CORNER_BITS[None], self.box_hi[:, None, :], self.box_lo[:, None, :])
        c = (corners - o) @ R  # camera coordinates, N x 8 x 3
        a, b = c[:, _EDGES[:, 0]], c[:, _EDGES[:, 1]]
        za, zb = a[..., 2], b[..., 2]
        cross = (za - _NEAR) * (zb - _NEAR) < 0
        s = (_NEAR - za) / np.where(cross, zb - za, 1.0)
        pts = np.concatenate([c, a + s[..., None] * (b - a)], axis=1)
        ok = np.concatenate([c[..., 2] >= _NEAR, cross], axis=1)
        z = np.where(ok, pts[..., 2], 1.0)
        u = cam.fx * pts[..., 0] / z + cam.cx
        v = cam.fy * pts[..., 1] / z + cam.cy
        big = 1e9
        umin = np.where(ok, u, big).min(1)
        umax = np.where(ok, u, -big).max(1)
        vmin = np.where(ok, v, big).min(1)
        vmax = np.where(ok, v, -big).max(1)
        W, Hh = cam.width, cam.height
        c0 = np.ceil(np.clip(umin, -2, W + 2)).astype(np.int64) - 1
        c1 = np.floor(np.clip(umax, -2, W + 2)).astype(np.int64) + 1
        r0 = np.ceil(np.clip(vmin, -2, Hh + 2)).astype(np.int64) - 1
        r1 = np.floor(np.clip(vmax, -2, Hh + 2)).astype(np.int64) + 1
        c0, r0 = np.maximum(c0, 0), np.maximum(r0, 0)
        c1, r1 = np.minimum(c1, W - 1), np.minimum(r1, Hh - 1)
        nc = np.where(ok.any(1) & (c1 >= c0) & (r1 >= r0), c1 - c0 + 1, 0)
        nr = np.where(nc > 0, r1 - r0 + 1, 0)
        return r0, c0, nr, nc

    def render(self, t: int, view: str = "left") -> dict[str, np.ndarray]:
        """Render frame ``t`` of ``view``: ``rgb`` uint8 HxWx3, ``depth`` float32 (camera z, 0 =
        sky or farther than MAX_DEPTH), ``semantic`` uint8 labels (see LABELS)."""
        cam = self.camera
        Hh, W = cam.height, cam.width
        P = Hh * W
        o, R = self.camera_origin(t, view)
        d = R @ self._rays  # 3 x P world directions; the ray parameter is the camera depth
        dy = d[1]
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)

        # ground plane y = CAMERA_HEIGHT
        down = dy > 1e-12
        t_hit = np.full(P, np.inf)
        t_hit[down] = (CAMERA_HEIGHT - o[1]) / dy[down]
        box_id = np.full(P, -1, dtype=np.int64)

        # boxes: slab test over (pixel, box) candidate pairs inside each box's pixel rectangle
        r0, c0, nr, nc = self._box_pixel_ranges(o, R)
        n = nr * nc
        M = int(n.sum())
        if M:
            i32 = np.int32
            which = np.repeat(np.arange(len(n), dtype=i32), n)
            start = (np.cumsum(n) - n).astype(i32)
            local = np.arange(M, dtype=i32) - start[which]
            ncw = nc.astype(i32)[which]
            row = local // ncw
            pix = (r0.astype(i32)[which] + row) * i32(W) + c0.astype(i32)[which] + (local - row * ncw)
            tn = tf = None
            for a in range(3):
                ia = inv[a][pix]
                t1 = (self._lo[a] - o[a])[which] * ia
                t2 = (self._hi[a] - o[a])[which] * ia
                if tn is None:
                    tn, tf = np.minimum(t1, t2), np.maximum(t1, t2)
                else:
                    np.maximum(tn, np.minimum(t1, t2), out=tn)
                    np.minimum(tf, np.maximum(t1, t2), out=tf)
            hit = (tf >= tn) & (tn > 0) & (tn < MAX_DEPTH)
            pix, which, tn = pix[hit], which[hit], tn[hit]
            tbox = np.full(P, np.inf)
            np.minimum.at(tbox, pix, tn)
            win = tn == tbox[pix]
            box_id[pix[win]] = which[win]
            closer = tbox < t_hit
            t_hit = np.where(closer, tbox, t_hit)
            box_id[~closer] = -1

        valid = t_hit < MAX_DEPTH
        box_id[~valid] = -1
        depth = np.where(valid, t_hit, 0.0)
        rgb = np.empty((3, P), dtype=np.float32)
        label = np.zeros(P, dtype=np.uint8)

        si = np.flatnonzero(~valid)
        if si.size:  # sky: vertical gradient by elevation (a direction, so view-consistent)
            elev = -dy[si] / self._ray_norm[si]
            k = np.clip(elev * 3.0, 0.0, 1.0).astype(np.float32)
            for ch, (h0, z0) in enumerate(((0.78, 0.36), (0.84, 0.54), (0.92, 0.84))):
                rgb[ch, si] = h0 + (z0 - h0) * k
        gi = np.flatnonzero(valid & (box_id < 0))
        if gi.size:
            self._shade_ground(o, d, depth, gi, rgb, label)
        bi = np.flatnonzero(box_id >= 0)
        if bi.size:
            self._shade_boxes(o, d, inv, depth, box_id[bi], bi, rgb, label)

        img = rgb.T.reshape(Hh, W, 3)
        if self.sensor_noise > 0:
            view_id = 0 if view == "left" else 1
            nrng = np.random.default_rng([self.seed, self.drive_index, t, view_id, 7])
            img = img + nrng.normal(0.0, self.sensor_noise / 255.0, size=img.shape).astype(np.float32)
        out = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        return {
            "rgb": out,
            "depth": depth.reshape(Hh, W).astype(np.float32),
            "semantic": label.reshape(Hh, W),
        }

    def _footprint(self, dist, cos_inc):
        """Pixel footprint (m) on a surface at ``dist`` seen at incidence cosine ``cos_inc``."""
        return (np.float32(self.AA / self.camera.fx) * dist / np.maximum(cos_inc, np.float32(0.05))).astype(
            np.float32, copy=False
        )

    def _write(self, rgb, idx, albedo, n_dot_l):
        shade = (self.ambient + self.diffuse * np.maximum(n_dot_l, 0.0)).astype(np.float32)
        for ch in range(3):
            rgb[ch, idx] = np.clip(albedo[ch] * shade, 0.0, 1.0)

    def _shade_ground(self, o, d, depth, gi, rgb, label):
        tz = depth[gi].astype(np.float32)
        ddy = d[1][gi].astype(np.float32)
        px = np.float32(o[0]) + tz * d[0][gi].astype(np.float32)
        pz = np.float32(o[2]) + tz * d[2][gi].astype(np.float32)
        dn = self._ray_norm[gi]
        dist = tz * dn
        ex = np.float32(self.AA / self.camera.fx) * dist  # lateral footprint (m)
        ez = self._footprint(dist, ddy / dn)  # along-street footprint (foreshortened)
        e_iso = np.sqrt(ex * ez)
        ax = np.abs(px)
        nz = self._noise
        n = gi.size
        albedo = np.empty((3, n), dtype=np.float32)
        lab = np.full(n, SIDEWALK, dtype=np.uint8)

        road = ax < self.road_hw
        if road.any():
            x, z, exr, ezr, er = px[road], pz[road], ex[road], ez[road], e_iso[road]
            tone = self.road_tone + nz.fbm(x, z, ((0.15, 0.12), (1.3, 0.08), (5.0, 0.08), (17.0, 0.07)), er)
            # lane marks (box-filtered): dashed centre line and lane separators, solid edge lines
            w = 0.14
            dash = _pulse(z / 9.0, 0.0, 1.0 / 3.0, ezr / 9.0)
            mark = _band(x, -w / 2, w / 2, exr) * dash
            if self.n_lanes == 2:
                for xs in (-self.lane_w, self.lane_w):
                    mark = np.maximum(mark, _band(x, xs - w / 2, xs + w / 2, exr) * dash)
            for xs in (-self.lanes_hw, self.lanes_hw):
                mark = np.maximum(mark, _band(x, xs - w / 2, xs + w / 2, exr))
            g = tone + (0.82 - tone) * mark
            albedo[0, road] = g
            albedo[1, road] = g
            albedo[2, road] = g * 1.02
            lab[road] = np.where(mark >= 0.5, LANE_MARK, ROAD)

        walk = ~road & (ax < self.street_hw)
        if walk.any():
            x, z, e = px[walk], pz[walk], e_iso[walk]
            tile = 0.6
            grout = np.maximum(_pulse(x / tile, 0.0, 0.06, e / tile), _pulse(z / tile, 0.0, 0.06, e / tile))
            tone = self.walk_tone + nz.fbm(x, z, ((0.4, 0.1), (3.0, 0.05), (12.0, 0.05)), e)
            tone = tone * (1.0 - 0.35 * grout)
            kerb = _band(np.abs(x), self.road_hw, self.road_hw + 0.25, e)
            tone = tone + (0.75 - tone) * kerb
            albedo[0, walk] = tone * 1.02
            albedo[1, walk] = tone
            albedo[2, walk] = tone * 0.95

        yard = ~road & ~walk
        if yard.any():
            x, z, e = px[yard], pz[yard], e_iso[yard]
            g = nz.fbm(x + 311.0, z, ((0.2, 0.5), (1.5, 0.3), (6.0, 0.2)), e)
            albedo[0, yard] = 0.32 + 0.3 * g
            albedo[1, yard] = 0.42 + 0.35 * g
            albedo[2, yard] = 0.22 + 0.2 * g

        self._write(rgb, gi, albedo, np.full(n, -self.sun[1]))
        label[gi] = lab

    def _shade_boxes(self, o, d, inv, depth, ids, bi, rgb, label):
        # the slab entered last is the face that was hit (float64, like the intersection)
        tin = []
        for a in range(3):
            ia = inv[a][bi]
            tin.append(np.minimum((self._lo[a][ids] - o[a]) * ia, (self._hi[a][ids] - o[a]) * ia))
        axis = np.where((tin[0] >= tin[1]) & (tin[0] >= tin[2]), 0, np.where(tin[1] >= tin[2], 1, 2))
        # shading and textures in float32
        tz = depth[bi].astype(np.float32)
        dd = [d[a][bi].astype(np.float32) for a in range(3)]
        p = [np.float32(o[a]) + tz * dd[a] for a in range(3)]
        lo = [self._lo32[a][ids] for a in range(3)]
        hi = [self._hi32[a][ids] for a in range(3)]
        normal = [np.where(axis == a, -np.sign(dd[a]), np.float32(0.0)) for a in range(3)]
        dn = self._ray_norm[bi]
        dist = tz * dn
        d_axis = np.abs(np.where(axis == 0, dd[0], np.where(axis == 1, dd[1], dd[2])))
        e_u = self._footprint(dist, d_axis / dn)  # horizontal along the face (foreshortened)
        e_v = np.float32(self.AA / self.camera.fy) * dist  # vertical
        on_x = axis == 0
        s = np.where(on_x, p[2] - lo[2], p[0] - lo[0])  # horizontal face coordinate from its start
        face_len = np.where(on_x, hi[2] - lo[2], hi[0] - lo[0])
        h = np.float32(CAMERA_HEIGHT) - p[1]  # height above the ground
        top = np.float32(CAMERA_HEIGHT) - lo[1]
        su = np.where(on_x, p[2], p[0])  # world horizontal coordinate along the face
        kind = self.box_kind[ids]
        n = ids.size
        albedo = np.empty((3, n), dtype=np.float32)

        def sub(m, *arrays):
            return [a[m] for a in arrays]

        b = kind == _K_BUILDING
        if b.any():
            albedo[:, b] = self._facade(ids[b], *sub(b, s, face_len, h, top, su, e_u, e_v))
        c = (kind == _K_BODY) | (kind == _K_CABIN)
        if c.any():
            albedo[:, c] = self._car(ids[c], kind[c], axis[c], normal[2][c],
                                     *sub(c, s, face_len, h, top, su, e_u, e_v, p[1]))
        q = kind == _K_POLE
        if q.any():
            octaves = ((1.0, 0.15), (6.0, 0.1))
            g = 1.0 + self._noise.fbm(p[1][q] * 3.0, p[0][q] + p[2][q], octaves, e_v[q] * 3.0)
            for ch in range(3):
                albedo[ch, q] = self._col[ch][ids[q]] * g

        n_dot_l = normal[0] * self.sun[0] + normal[1] * self.sun[1] + normal[2] * self.sun[2]
        self._write(rgb, bi, albedo, n_dot_l)
        label[bi] = _KIND_LABEL[kind]

    def _facade(self, ids, s, face_len, h, top, su, e_u, e_v):
        spacing, floor_h, wfrac, hfrac, shop, noff, glass = (self._par[i][ids] for i in range(7))
        margin = 0.6
        ncol = np.maximum(1.0, np.round((face_len - 2 * margin) / spacing))
        sp = np.maximum(face_len - 2 * margin, 0.5) / ncol
        cu = (s - margin) / sp
        cv = h / floor_h
        col_in = _band(cu, 0.0, ncol, e_u / sp)
        win_u = _pulse(cu, 0.5 - wfrac / 2, 0.5 + wfrac / 2, e_u / sp) * col_in
        win_v = _pulse(cv, 0.3, 0.3 + hfrac, e_v / floor_h) * _band(h, floor_h, top - 0.9, e_v)
        win = win_u * win_v
        shopw = shop * _band(h, 0.4, 2.6, e_v) * _pulse(cu, 0.06, 0.94, e_u / sp) * col_in
        win = np.maximum(win, shopw).astype(np.float32)
        nz = self._noise
        # per-window glass brightness: noise sampled at the integer window cell
        cell = nz(np.floor(cu) * 0.731 + noff, np.floor(cv) * 1.37 - noff)
        g = (0.55 + 0.6 * cell) * glass
        e = np.sqrt(e_u * e_v)
        wall = 1.0 + nz.fbm(su + noff, h, ((0.15, 0.25), (1.0, 0.12), (4.0, 0.1), (14.0, 0.08)), e)
        wall = (wall * (1.0 - 0.3 * _band(h, top - 0.5, top + 1.0, e_v))).astype(np.float32)
        out = np.empty((3, ids.size), dtype=np.float32)
        for ch, gc in enumerate((0.16, 0.20, 0.26)):
            wc = self._col[ch][ids] * wall
            out[ch] = wc + (gc * g - wc) * win
        return out

    def _car(self, ids, kind, axis, nz_, s, face_len, h, top, su, e_u, e_v, py):
        facing, body_h = self._par[0][ids], self._par[1][ids]
        col = [self._col[ch][ids] for ch in range(3)]
        e = np.sqrt(e_u * e_v)
        vertical = axis != 1
        # cabin: glass on the vertical faces, framed by the body colour
        glass = (kind == _K_CABIN) & vertical
        gl = _band(h, body_h + 0.07, top - 0.07, e_v) * _band(s, 0.12, face_len - 0.12, e_u)
        gl = np.where(glass, gl, 0.0).astype(np.float32)
        shine = 0.8 + 0.4 * self._noise(su * 0.7, py * 0.7)
        # body: wheels on the long sides, lamps and a bumper on front and back
        body = kind == _K_BODY
        r = 0.32
        wheel = np.zeros(ids.size)
        for frac in (0.2, 0.8):
            dw = np.hypot(s - frac * face_len, h - r)
            wheel = np.maximum(wheel, np.clip((r - dw) / np.maximum(e, 1e-3) + 0.5, 0.0, 1.0))
        wheel = np.where(body & (axis == 0), wheel, 0.0).astype(np.float32)
        ends = body & (axis == 2)
        lamp = np.maximum(_band(s, 0.1, 0.4, e_u), _band(s, face_len - 0.4, face_len - 0.1, e_u))
        lamp = np.where(ends, lamp * _band(h, body_h - 0.32, body_h - 0.12, e_v), 0.0).astype(np.float32)
        front = nz_ * facing > 0  # the face whose normal points along the car's heading
        bumper = np.where(ends, _band(h, 0.25, 0.45, e_v), 0.0).astype(np.float32)
        grain = 1.0 + self._noise.fbm(su, py, ((2.0, 0.08), (8.0, 0.05)), e)
        out = np.empty((3, ids.size), dtype=np.float32)
        for ch, (gc, fc, bc) in enumerate(((0.10, 0.95, 0.75), (0.12, 0.93, 0.08), (0.15, 0.80, 0.06))):
            c = col[ch]
            c = c + (gc * shine - c) * gl
            c = c + (0.05 - c) * wheel
            c = c + (np.where(front, fc, bc) - c) * lamp
            c = c * (1.0 - 0.5 * bumper)
            out[ch] = np.clip(c * grain, 0.0, 1.0)
        return out

    def frame(self, t: int) -> dict[str, np.ndarray]:
        """Both views of frame ``t``: ``left``/``right`` RGB, ``depth``/``depth_right``,
        ``disparity``/``disparity_right`` (px, 0 = invalid), ``semantic``/``semantic_right`` and
        the left camera's ``pose`` (camera-to-world)."""
        left = self.render(t, "left")
        right = self.render(t, "right")
        fb = self.camera.fx * self.camera.baseline
        out = {
            "left": left["rgb"],
            "right": right["rgb"],
            "depth": left["depth"],
            "depth_right": right["depth"],
            "semantic": left["semantic"],
            "semantic_right": right["semantic"],
            "pose": self.poses[t].copy(),
        }
        for key, dep in (("disparity", left["depth"]), ("disparity_right", right["depth"])):
            with np.errstate(divide="ignore"):
                out[key] = np.where(dep > 0, fb / np.where(dep > 0, dep, 1.0), 0.0).astype(np.float32)
        return out


# --------------------------------------------------------------------------------------------
# Velodyne points and calibration
# --------------------------------------------------------------------------------------------


def _velo_to_cam() -> np.ndarray:
    Tr = np.eye(4)
    Tr[:3, :3] = VELO_R
    Tr[:3, 3] = VELO_T
    return Tr


def velodyne_from_depth(depth: np.ndarray, camera: Camera, rows: int = 64, col_step: int = 2) -> np.ndarray:
    """Pseudo-LiDAR scan of a dense depth map: ~``rows`` scan rows (from +2 deg elevation down
    to the bottom of the image) x every ``col_step``-th column, back-projected to the camera
    frame and moved to the Velodyne frame with ``inv([R|T])``. Reflectance is 0.5.

    ``P_rect_02 @ R_rect_00 @ Tr_velo_to_cam`` maps every point back onto the centre of the
    pixel it came from (``u = col``, ``v = row`` exactly, up to float32 rounding), with
    projective depth ``w`` = the dense depth.
    """
    Hh, W = depth.shape
    v_top = max(0.0, math.ceil(camera.cy - camera.fy * math.tan(math.radians(2.0))))
    r = np.unique(np.round(np.linspace(v_top, Hh - 1, rows)).astype(np.int64))
    c = np.arange(0, W, col_step)
    z = depth[np.ix_(r, c)].astype(np.float64)
    vv, uu = np.meshgrid(r, c, indexing="ij")
    ok = z > 0
    z, uu, vv = z[ok], uu[ok], vv[ok]
    cam_pts = np.stack(
        [(uu - camera.cx) * z / camera.fx, (vv - camera.cy) * z / camera.fy, z, np.ones_like(z)]
    )
    velo = np.linalg.inv(_velo_to_cam()) @ cam_pts
    out = np.empty((z.shape[0], 4), dtype=np.float32)
    out[:, :3] = velo[:3].T
    out[:, 3] = 0.5
    return out


def _calib_cam_to_cam(camera: Camera) -> dict:
    cal: dict[str, object] = {"calib_time": CALIB_TIME, "corner_dist": [9.95e-02]}
    size = [camera.width, camera.height]
    for cam in range(4):
        xx = f"{cam:02d}"
        off = -camera.baseline if cam in (1, 3) else 0.0
        cal[f"S_{xx}"] = size
        cal[f"K_{xx}"] = camera.K.ravel()
        cal[f"D_{xx}"] = np.zeros(5)
        cal[f"R_{xx}"] = np.eye(3).ravel()
        cal[f"T_{xx}"] = [off, 0.0, 0.0]
        cal[f"S_rect_{xx}"] = size
        cal[f"R_rect_{xx}"] = np.eye(3).ravel()
        cal[f"P_rect_{xx}"] = camera.P_rect(cam).ravel()
    return cal


def _calib_velo_to_cam() -> dict:
    return {
        "calib_time": CALIB_TIME,
        "R": VELO_R.ravel(),
        "T": VELO_T,
        "delta_f": [0.0, 0.0],
        "delta_c": [0.0, 0.0],
    }


# --------------------------------------------------------------------------------------------
# data set generation
# --------------------------------------------------------------------------------------------


def _assign_splits(n_drives: int, fractions) -> list[str]:
    """Contiguous drive -> split assignment by largest remainder; every split with a positive
    fraction gets at least one drive when there are enough drives."""
    names = ("train", "val", "test")
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise ValueError(f"split_fractions must be 3 non-negative numbers, got {fractions!r}")
    f = f / f.sum()
    exact = f * n_drives
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n_drives - counts.sum()]:
        counts[k] += 1
    for k in range(3):
        if f[k] > 0 and counts[k] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[k] += 1
    return [name for name, c in zip(names, counts) for _ in range(c)]


def _probe(seed: int, k: int, n: int, height: int, width: int, eval_per_drive: int) -> dict:
    """Draw drive ``k`` (redrawing a degenerate one) and return its attempt and probe stats:
    its evaluation frames at a quarter of the resolution (:mod:`.synth_splits`)."""
    small = Camera.for_size(max(2, height // 4), max(2, width // 4))
    frames = synth_splits.eval_frames(n, eval_per_drive)
    best = None
    for attempt in range(synth_splits.MAX_ATTEMPTS):
        scene = DriveScene(seed, k, n, small, attempt=attempt)
        stats = np.mean([synth_splits.frame_stats(r["depth"], r["semantic"])
                         for r in (scene.render(t) for t in frames)], axis=0)
        if best is None or stats[0] < best["stats"][0]:
            best = {"attempt": attempt, "stats": stats}
        if stats[0] <= synth_splits.MAX_DRIVE_NEAR:
            break
    return best


def _probe_job(job) -> dict:
    return _probe(*job)


def _write_drive(out_dir, seed, k, n, split, height, width, sensor_noise, attempt=0):
    """Render and write drive ``k`` (a generator: yields after each frame)."""
    out = Path(out_dir)
    camera = Camera.for_size(height, width)
    name = drive_name(k)
    scene = DriveScene(seed, k, n, camera, sensor_noise=sensor_noise, attempt=attempt)
    ddir = out / DATE / name
    gt_dir = out / "data_depth_annotated" / ("train" if split == "train" else "val") / name
    gt_dir = gt_dir / "proj_depth" / "groundtruth"
    for t in range(n):
        f = scene.frame(t)
        stem = f"{t:010d}"
        formats.write_image(ddir / "image_02" / "data" / f"{stem}.png", f["left"])
        formats.write_image(ddir / "image_03" / "data" / f"{stem}.png", f["right"])
        formats.write_labels(ddir / "semantic" / "image_02" / "data" / f"{stem}.png", f["semantic"])
        formats.write_labels(ddir / "semantic" / "image_03" / "data" / f"{stem}.png", f["semantic_right"])
        formats.write_png16(gt_dir / "image_02" / f"{stem}.png", f["depth"])
        formats.write_png16(gt_dir / "image_03" / f"{stem}.png", f["depth_right"])
        formats.write_velodyne(
            ddir / "velodyne_points" / "data" / f"{stem}.bin", velodyne_from_depth(f["depth"], camera)
        )
        yield t
    formats.write_poses(ddir / "poses.txt", scene.poses)
    oxts.write_drive_oxts(ddir, k, scene.poses, DATE, VELO_R, VELO_T)


def _write_drive_all(job) -> int:
    return sum(1 for _ in _write_drive(*job))


def _map(fn, jobs, workers):
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        yield from pool.map(fn, jobs)


def generate(
    out_dir: str | os.PathLike,
    frames: int = 200,
    seed: int = 0,
    height: int = 96,
    width: int = 320,
    frames_per_drive: int = 20,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    progress: Callable[[int, int], None] | None = None,
    sensor_noise: float = 0.0,
    workers: int = 1,
    eval_frames_per_drive: int = 4,
    balance: bool = True,
) -> dict:
    """Generate ``frames`` stereo frames in KITTI raw layout under ``out_dir``; returns stats.

    Layout (drive ``k`` = ``2000_01_01_drive_{k+1:04d}_sync``)::

        2000_01_01/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt
        2000_01_01/<drive>/image_02/data/%010d.png, image_03/data/%010d.png   (RGB)
        2000_01_01/<drive>/velodyne_points/data/%010d.bin
        2000_01_01/<drive>/oxts/data/%010d.txt  (GPS/IMU packets from the poses, harness.data.oxts)
        2000_01_01/<drive>/{image_02,image_03,velodyne_points,oxts}/timestamps.txt   (10 Hz)
        2000_01_01/<drive>/semantic/image_02/data/%010d.png (+ image_03)     (uint8 labels)
        2000_01_01/<drive>/poses.txt            (left camera-to-world, KITTI odometry format)
        data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_02/%010d.png
                                                 (+ image_03; dense depth, uint16 / 256)
        splits/{train,val,test}_files.txt       ("<date>/<drive> <frame> l")
        synth.json                               (written last: parameters, seed, drives, counts)

    Drives are ``ceil(frames / frames_per_drive)``; the last one may be shorter. Each split
    gets its largest-remainder share of ``split_fractions`` of the drives; no drive is in two
    splits. Train lists every inner frame (both temporal neighbours exist); val and test list
    ``eval_frames_per_drive`` evenly spaced inner frames per drive (0: all), so an evaluation
    split has no runs of near-duplicate frames. Before rendering, every drive is probed cheaply
    and degenerate drives are drawn again; with ``balance`` and at least two val and two test
    drives, drives are assigned to splits so that the split means of the probe statistics
    (near-pixel share, class shares) match (:mod:`harness.data.synth_splits`); otherwise train
    takes the first drives, then val, then test. Depth of train drives goes under ``train``, of
    val and test drives under ``val``.

    ``sensor_noise`` adds Gaussian noise (std in 8-bit levels) independently to every image
    (default 0: views are exactly consistent). ``workers > 1`` renders drives in that many
    processes; the files are byte-identical either way. ``progress(done, total)`` is called
    after every frame (with workers: after every drive).
    """
    if frames < 1 or frames_per_drive < 1:
        raise ValueError("frames and frames_per_drive must be >= 1")
    if eval_frames_per_drive < 0:
        raise ValueError("eval_frames_per_drive must be >= 0")
    t_start = time.perf_counter()
    out = Path(out_dir)
    camera = Camera.for_size(height, width)
    n_drives = math.ceil(frames / frames_per_drive)
    lengths = [min(frames_per_drive, frames - k * frames_per_drive) for k in range(n_drives)]
    contiguous = _assign_splits(n_drives, split_fractions)
    counts_by_split = tuple(contiguous.count(s) for s in ("train", "val", "test"))
    # a stale synth.json must not vouch for a half-written set: it is rewritten last
    (out / "synth.json").unlink(missing_ok=True)
    date_dir = out / DATE
    formats.write_calib(date_dir / "calib_cam_to_cam.txt", _calib_cam_to_cam(camera))
    formats.write_calib(date_dir / "calib_velo_to_cam.txt", _calib_velo_to_cam())
    formats.write_calib(date_dir / "calib_imu_to_velo.txt", oxts.calib_imu_to_velo(CALIB_TIME))

    t_probe = time.perf_counter()
    probes = list(_map(_probe_job, [(seed, k, n, height, width, eval_frames_per_drive)
                                    for k, n in enumerate(lengths)], workers))
    stats = np.array([p["stats"] for p in probes])
    if balance and min(counts_by_split[1:]) >= 2:
        assignment = synth_splits.balanced_assignment(stats, counts_by_split)
    else:
        assignment = contiguous
    probe_seconds = time.perf_counter() - t_probe

    split_rows: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    drives: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    frame_counts = {"train": 0, "val": 0, "test": 0}
    jobs = []
    for k, n in enumerate(lengths):
        split = assignment[k]
        drives[split].append(drive_name(k))
        frame_counts[split] += n
        listed = range(1, n - 1) if split == "train" else synth_splits.eval_frames(n, eval_frames_per_drive)
        split_rows[split].extend((f"{DATE}/{drive_name(k)}", t, "l") for t in listed)
        jobs.append((str(out), seed, k, n, split, height, width, float(sensor_noise), probes[k]["attempt"]))

    done = 0
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            for _ in _write_drive(*job):
                done += 1
                if progress is not None:
                    progress(done, frames)
    else:
        for n in _map(_write_drive_all, jobs, workers):
            done += n
            if progress is not None:
                progress(done, frames)

    for split, rows in split_rows.items():
        formats.write_split(out / "splits" / f"{split}_files.txt", rows)
    counts = {
        s: {"drives": len(drives[s]), "frames": frame_counts[s], "samples": len(split_rows[s])}
        for s in split_rows
    }
    meta = {
        "generator": GENERATOR,
        "version": VERSION,
        "seed": int(seed),
        "params": {
            "frames": int(frames),
            "height": int(height),
            "width": int(width),
            "frames_per_drive": int(frames_per_drive),
            "split_fractions": [float(x) for x in split_fractions],
            "eval_frames_per_drive": int(eval_frames_per_drive),
            "balance": bool(balance),
            "max_drive_near": synth_splits.MAX_DRIVE_NEAR,
            "near_m": synth_splits.NEAR_M,
            "sensor_noise": float(sensor_noise),
            "baseline": BASELINE,
            "camera_height": CAMERA_HEIGHT,
            "max_depth": MAX_DEPTH,
            "fx": camera.fx,
            "fy": camera.fy,
            "cx": camera.cx,
            "cy": camera.cy,
            "date": DATE,
        },
        "labels": {str(k): v for k, v in LABELS.items()},
        "drives": drives,
        "counts": counts,
        # per drive: split, draw attempt, probe statistics (synth_splits.BALANCE_STATS)
        "probes": {
            drive_name(k): {"split": assignment[k], "attempt": int(p["attempt"]),
                            **{name: round(float(v), 6) for name, v in zip(synth_splits.BALANCE_STATS, p["stats"])}}
            for k, p in enumerate(probes)
        },
    }
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    formats.atomic_write_bytes(out / "synth.json", text.encode())
    seconds = time.perf_counter() - t_start
    return {
        "out_dir": str(out),
        "frames": int(frames),
        "drives": n_drives,
        "seconds": seconds,
        "probe_seconds": probe_seconds,
        "redrawn": sum(1 for p in probes if p["attempt"] > 0),
        "frames_per_second": frames / seconds if seconds > 0 else float("inf"),
        "counts": counts,
        "fingerprint": fingerprint(out),
    }


def fingerprint(out_dir: str | os.PathLike) -> str:
    """sha256 of ``synth.json`` (raises FileNotFoundError if the set was never completed)."""
    return hashlib.sha256((Path(out_dir) / "synth.json").read_bytes()).hexdigest()
