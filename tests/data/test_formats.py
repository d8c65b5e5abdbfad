"""Round trips and error handling of the on-disk formats (harness.data.formats)."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from harness.data import formats


def test_png16_round_trip_and_encoding(tmp_path):
    depth = np.array([[0.0, 1.0, 1.0 / 256], [80.123, 300.0, -2.0]], dtype=np.float32)
    path = tmp_path / "deep" / "dir" / "d.png"  # parents are created
    formats.write_png16(path, depth)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.ndim == 2
    assert raw.tolist() == [[0, 256, 1], [round(80.123 * 256), 65535, 0]]  # clip + 0 stays 0
    back = formats.read_png16(path)
    assert back.dtype == np.float32 and back.shape == depth.shape
    assert back[0, 0] == 0 and back[1, 2] == 0
    assert abs(back[1, 0] - 80.123) <= 0.5 / 256
    assert back[1, 1] == pytest.approx(formats.MAX_PNG16_DEPTH)


def test_png16_rejects_wrong_file(tmp_path):
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"rgb\.png: expected a single-channel 16-bit"):
        formats.read_png16(rgb)
    grey8 = tmp_path / "grey8.png"
    cv2.imwrite(str(grey8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        formats.read_png16(grey8)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="junk.png"):
        formats.read_png16(junk)
    with pytest.raises(FileNotFoundError):
        formats.read_png16(tmp_path / "missing.png")


def test_image_round_trip_keeps_rgb_order_on_disk(tmp_path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    rgb[1, 2] = (1, 2, 3)
    path = tmp_path / "img.png"
    formats.write_image(path, rgb)
    np.testing.assert_array_equal(formats.read_image(path), rgb)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)  # OpenCV's BGR view of the file
    assert tuple(bgr[0, 0]) == (0, 0, 200)
    with pytest.raises(ValueError):
        formats.write_image(path, rgb.astype(np.float32))


def test_labels_round_trip(tmp_path):
    lab = np.arange(12, dtype=np.uint8).reshape(3, 4) % 7
    formats.write_labels(tmp_path / "l.png", lab)
    np.testing.assert_array_equal(formats.read_labels(tmp_path / "l.png"), lab)


CALIB_TEXT = """calib_time: 09-Jan-2012 13:57:47
S_rect_02: 1.242000e+03 3.750000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03

R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
note: a: b
"""


def test_calib_parsing(tmp_path):
    path = tmp_path / "calib_cam_to_cam.txt"
    path.write_text(CALIB_TEXT)
    cal = formats.read_calib(path)
    assert cal["calib_time"] == "09-Jan-2012 13:57:47"  # digits, '-' and ':' but letters -> string
    assert cal["note"] == "a: b"  # split at the FIRST ':' only
    assert cal["S_rect_02"].tolist() == [1242.0, 375.0]
    P = cal["P_rect_02"].reshape(3, 4)
    assert P[0, 0] == pytest.approx(721.5377) and P[1, 3] == pytest.approx(0.2163791)
    assert cal["R_rect_00"].dtype == np.float64 and cal["R_rect_00"].shape == (9,)


def test_calib_line_without_colon_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("calib_time: 09-Jan-2012 13:57:47\n\nthis line has no separator\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3"):
        formats.read_calib(path)


def test_calib_round_trip_puts_calib_time_first(tmp_path):
    calib = {
        "P_rect_02": np.array([721.5377, 0, 609.5593, 44.85728, 0, 721.5377, 172.854, 0.2163791, 0, 0, 1, 0.002745884]),
        "S_rect_02": [1242, 375],
        "calib_time": "09-Jan-2012 13:57:47",
    }
    path = tmp_path / "c.txt"
    formats.write_calib(path, calib)
    lines = path.read_text().splitlines()
    assert lines[0] == "calib_time: 09-Jan-2012 13:57:47"
    assert lines[1].startswith("P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02")
    back = formats.read_calib(path)
    np.testing.assert_allclose(back["P_rect_02"], calib["P_rect_02"], rtol=1e-6)
    assert back["calib_time"] == calib["calib_time"]


def test_velodyne_round_trip_and_size_error(tmp_path):
    pts = np.random.default_rng(0).normal(size=(17, 4)).astype(np.float32)
    path = tmp_path / "v" / "0000000000.bin"
    formats.write_velodyne(path, pts)
    assert os.path.getsize(path) == 17 * 16
    assert path.read_bytes()[:4] == pts[0, 0].astype("<f4").tobytes()  # little-endian, no header
    back = formats.read_velodyne(path)
    assert back.dtype == np.float32 and back.shape == (17, 4)
    np.testing.assert_array_equal(back, pts)
    path.write_bytes(path.read_bytes() + b"\0" * 4)
    with pytest.raises(ValueError, match="multiple of 16"):
        formats.read_velodyne(path)
    with pytest.raises(ValueError):
        formats.write_velodyne(path, pts[:, :3])


def test_split_parsing(tmp_path):
    path = tmp_path / "train_files.txt"
    path.write_text(
        "2011_09_26/2011_09_26_drive_0022_sync 473 r\n"
        "2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\n"
        "\n"
    )
    rows = formats.read_split(path)
    assert rows == [
        ("2011_09_26/2011_09_26_drive_0022_sync", 473, "r"),
        ("2011_09_26/2011_09_26_drive_0002_sync", 69, "l"),
    ]
    out = tmp_path / "out" / "split.txt"
    formats.write_split(out, rows)
    assert formats.read_split(out) == rows
    assert out.read_text().splitlines()[1] == "2011_09_26/2011_09_26_drive_0002_sync 69 l"


@pytest.mark.parametrize(
    "bad_line, match",
    [
        ("2011_09_26/drive 12", "expected '<folder> <frame_index> <side>'"),
        ("2011_09_26/drive twelve l", "not an integer"),
        ("2011_09_26/drive 12 x", "side must be"),
    ],
)
def test_split_malformed_line_names_file_and_line(tmp_path, bad_line, match):
    path = tmp_path / "s.txt"
    path.write_text(f"2011_09_26/drive 1 l\n{bad_line}\n")
    with pytest.raises(ValueError, match=match) as err:
        formats.read_split(path)
    assert f"{path}:2" in str(err.value)


def test_poses_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    poses = np.tile(np.eye(4), (3, 1, 1))
    for p in poses:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        p[:3, :3] = q
        p[:3, 3] = rng.normal(size=3) * 50
    path = tmp_path / "poses.txt"
    formats.write_poses(path, poses)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(len(line.split()) == 12 for line in lines)
    np.testing.assert_allclose(np.array(lines[0].split(), float), poses[0, :3].ravel(), rtol=1e-8)
    back = formats.read_poses(path)
    assert back.shape == (3, 4, 4)
    np.testing.assert_allclose(back, poses, rtol=1e-8, atol=1e-9)
    path.write_text("1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(ValueError, match="poses.txt:1"):
        formats.read_poses(path)


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "d.png"
    formats.write_png16(path, np.ones((2, 2), np.float32))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        formats.write_png16(path, np.full((2, 2), 5.0, np.float32))
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png"]
