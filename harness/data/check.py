"""``harness data check``: report missing or malformed files of a split, without decoding images.

Every file a split needs is looked at: existence, and from its first bytes (PNG/JPEG header,
``.bin`` size, calibration keys) whether it has the right format and size. Problems are grouped
by kind with a count and the first few paths. A problem is *blocking* when it stops the split
from being evaluated (the target image, the GT source, the calibration the GT needs); missing
stereo partners and temporal neighbours only matter for training and are reported as warnings.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from harness.data.headers import image_info
from harness.errors import HarnessError

__all__ = ["CheckReport", "check_split"]

SHOW = 3


@dataclass
class _Group:
    blocking: bool
    items: list[tuple[str, str]] = field(default_factory=list)  # (path, detail)
    frames: set[int] = field(default_factory=set)


@dataclass
class CheckReport:
    dataset: str
    split: str
    root: str
    frames: int
    groups: "OrderedDict[str, _Group]" = field(default_factory=OrderedDict)
    checked: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, path, detail: str = "", *, frame: int | None = None, blocking: bool = True) -> None:
        g = self.groups.setdefault(kind, _Group(blocking))
        if len(g.items) < 10_000:
            g.items.append((str(path), detail))
        if frame is not None:
            g.frames.add(frame)

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    @property
    def blocked_frames(self) -> set[int]:
        out: set[int] = set()
        for g in self.groups.values():
            if g.blocking:
                out |= g.frames
        return out

    @property
    def evaluable(self) -> bool:
        return not any(g.blocking for g in self.groups.values())

    def format(self) -> str:
        lines = [f"{self.dataset} split {self.split!r} under {self.root}: {self.frames} frames"]
        lines.append("checked: " + ", ".join(f"{n} {what}" for what, n in self.checked.items()))
        if not self.groups:
            lines.append("no problems found")
        for kind, g in self.groups.items():
            tag = "ERROR" if g.blocking else "warning"
            where = f" ({len(g.frames)} frames)" if g.frames else ""
            lines.append(f"{tag}: {kind}: {len(g.items)} file(s){where}, e.g.")
            for path, detail in g.items[:SHOW]:
                lines.append(f"    {path}" + (f"  [{detail}]" if detail else ""))
        if self.evaluable:
            extra = " (warnings concern training only)" if self.groups else ""
            lines.append(f"result: the split can be evaluated{extra}")
        else:
            lines.append(f"result: the split CANNOT be evaluated: {len(self.blocked_frames)} of {self.frames} frames "
                         "lack evaluation inputs")
        return "\n".join(lines) + "\n"


def check_split(dataset: str, root, *, split=None, split_file=None, host=None) -> CheckReport:
    """Check one split of ``kitti`` or ``drivingstereo`` (see the module docstring)."""
    from harness.data.access import open_split

    if dataset not in _CHECKERS:
        raise HarnessError(f"option --dataset {dataset}: data check supports {', '.join(sorted(_CHECKERS))}")
    opened = open_split(dataset, root, split=split, split_file=split_file, host=host)
    ds = opened.dataset
    report = CheckReport(dataset, ds.split, str(root), len(ds))
    _CHECKERS[dataset](ds, report)
    return report


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _image(report: CheckReport, path: Path, i: int, kind: str, size, blocking: bool) -> None:
    report.count("images")
    if not path.is_file():
        report.add(f"missing {kind}", path, frame=i, blocking=blocking)
        return
    try:
        info = image_info(path)
    except (OSError, ValueError) as exc:
        report.add(f"unreadable {kind}", path, str(exc).removeprefix(f"{path}: "), frame=i, blocking=blocking)
        return
    if info.bit_depth != 8 or info.channels not in (1, 3, 4):
        report.add(f"malformed {kind}", path, f"{info.describe()}, expected 8-bit colour", frame=i, blocking=blocking)
    elif size is not None and (info.height, info.width) != tuple(size):
        report.add(f"wrong size {kind}", path, f"{info.width}x{info.height}, expected {size[1]}x{size[0]}",
                   frame=i, blocking=blocking)


def _png16(report: CheckReport, path: Path, i: int, kind: str, size, blocking: bool = True) -> None:
    report.count("depth PNGs")
    if not path.is_file():
        report.add(f"missing {kind}", path, frame=i, blocking=blocking)
        return
    try:
        info = image_info(path)
    except (OSError, ValueError) as exc:
        report.add(f"unreadable {kind}", path, str(exc).removeprefix(f"{path}: "), frame=i, blocking=blocking)
        return
    if not info.is_uint16_grey:
        report.add(f"malformed {kind}", path, f"{info.describe()}, expected a 16-bit single-channel PNG",
                   frame=i, blocking=blocking)
    elif size is not None and (info.height, info.width) != tuple(size):
        report.add(f"wrong size {kind}", path, f"{info.width}x{info.height}, expected {size[1]}x{size[0]}",
                   frame=i, blocking=blocking)


# --------------------------------------------------------------------------------------------
# KITTI
# --------------------------------------------------------------------------------------------
def _check_kitti(ds, report: CheckReport) -> None:
    from harness.data.kitti import _CAM

    calib_ok: dict[str, tuple[bool, object]] = {}
    velodyne = ds.gt_kind == "velodyne"

    def calib_of(i, fr):
        date = fr.folder.split("/")[0]
        if date not in calib_ok:
            cal = ds.calib(fr.folder)
            size, ok = None, True
            report.count("calibration folders")
            # (file, key, accessor, needed for evaluation): the projection matrices of a
            # dense-GT split only matter for training (K, baseline)
            keys = [(cal.cam, "S_rect_02", lambda: cal.size, True),
                    (cal.cam, "P_rect_02", lambda: cal.P(2), velodyne),
                    (cal.cam, "P_rect_03", lambda: cal.P(3), velodyne),
                    (cal.cam, "R_rect_00", lambda: cal.R_rect, velodyne)]
            if velodyne:  # a dense-GT split never reads the Velodyne calibration
                keys.append((cal.velo, "R/T", lambda: cal.Tr_velo_to_cam, True))
            missing: set = set()
            for calib_file, key, get, needed in keys:
                if calib_file.path in missing:
                    continue
                try:
                    value = get()
                    if key == "S_rect_02":
                        size = value
                except HarnessError as exc:
                    if not calib_file.path.is_file():
                        missing.add(calib_file.path)
                    report.add("bad calibration" if needed else "bad calibration (training only)", calib_file.path,
                               str(exc).removeprefix(f"{calib_file.path}: "), blocking=needed)
                    ok = ok and not needed
            calib_ok[date] = (ok, size)
        ok, size = calib_ok[date]
        if not ok:
            report.groups["bad calibration"].frames.add(i)
        return size

    missing_drives: set[str] = set()

    for i, fr in enumerate(ds.samples):
        size = calib_of(i, fr)
        side = fr.side
        partner = "r" if side == "l" else "l"
        _image(report, ds.image_path(fr, side), i, f"target images (image_0{_CAM[side]})", size, True)
        _image(report, ds.image_path(fr, partner), i, "stereo partner images", size, False)
        for off in (-1, 1):
            p = ds.image_path(fr, side, off)
            report.count("images")
            if not p.is_file():
                report.add("missing temporal neighbours (t-1/t+1)", p, frame=i, blocking=False)
        if velodyne:
            path = ds.velodyne_path(fr)
            report.count("velodyne scans")
            if not path.is_file():
                report.add("missing Velodyne scans", path, frame=i)
            else:
                n = os.path.getsize(path)
                if n == 0 or n % 16:
                    report.add("malformed Velodyne scans", path,
                               f"size {n} bytes is not a positive multiple of 16 (4 float32 per point)", frame=i)
        else:
            try:
                path = ds.dense_path(fr, side)
            except HarnessError as exc:
                where = str(exc).split(": ")[0]
                if where not in missing_drives:
                    missing_drives.add(where)
                    report.add("missing annotated depth drives", where)
                report.groups["missing annotated depth drives"].frames.add(i)
                continue
            _png16(report, path, i, "annotated depth PNGs", size)


# --------------------------------------------------------------------------------------------
# DrivingStereo
# --------------------------------------------------------------------------------------------
def _check_drivingstereo(ds, report: CheckReport) -> None:
    from harness.data.drivingstereo import SUBSETS

    calib_seen: dict[tuple[str, str], bool] = {}
    for i, fr in enumerate(ds.samples):
        subset, seq = fr.folder.split("/", 1)
        stem = ds.stem(fr)
        left = ds.index(subset, "left").get(stem)
        size = None
        report.count("images")
        try:
            info = image_info(left)
            size = (info.height, info.width)
            if info.bit_depth != 8:
                report.add("malformed left images", left, info.describe(), frame=i)
        except (OSError, ValueError) as exc:
            report.add("unreadable left images", left, str(exc).removeprefix(f"{left}: "), frame=i)
        kind = "depth" if ds.gt_source == "depth" else "disparity"
        gt = ds.index(subset, kind).get(stem)
        if gt is None:
            report.add(f"missing {kind} maps", SUBSETS[subset].dir(ds.root, kind) / f"{stem}.png", frame=i)
        else:
            _png16(report, gt, i, f"{kind} maps", size)
        right = ds.index(subset, "right").get(stem)
        if right is None:
            report.count("images")
            report.add("missing right images", SUBSETS[subset].dir(ds.root, "right") / f"{stem}", frame=i,
                       blocking=False)
        else:
            _image(report, right, i, "right images", size, False)
        key = (subset, seq)
        if key not in calib_seen:
            cal = ds.calib(fr)
            report.count("calibration files")
            needed = ds.gt_source == "disparity"
            ok = True
            try:
                cal.numbers("P_rect_101", 12)
                cal.numbers("P_rect_103", 12)
                cal.numbers("T_103", 3)
            except HarnessError as exc:
                ok = False
                report.add("bad calibration (needed for K/baseline" + (" and disparity GT)" if needed else ")"),
                           cal.path, str(exc).removeprefix(f"{cal.path}: "), blocking=needed)
            calib_seen[key] = ok
        if not calib_seen[key] and ds.gt_source == "disparity":
            next(g for k, g in report.groups.items() if k.startswith("bad calibration")).frames.add(i)


_CHECKERS = {"kitti": _check_kitti, "drivingstereo": _check_drivingstereo}
