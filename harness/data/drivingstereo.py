"""DrivingStereo (Yang et al., CVPR 2019): half-size train/test and the four weather subsets.

Layout (``docs/datasets.md``, "DrivingStereo")::

    <root>/train-left-image/<seq>/<stem>.jpg      (or flat: train-left-image/<stem>.jpg)
    <root>/train-right-image/..., train-depth-map/<seq>/<stem>.png, train-disparity-map/...
    <root>/test-left-image/..., test-right-image/..., test-depth-map/..., test-disparity-map/...
    <root>/<weather>/left-image-full-size/<stem>.png, right-image-full-size/...,
                     depth-map-full-size/<stem>.png, disparity-map-full-size/<stem>.png
                     (and *-half-size); a nested copy such as
                     <weather>/left-image-full-size/<weather>/left-image-full-size/<stem>.png
                     is found too: every folder is searched recursively for the stem
    <root>/calib/half-image-calib/<seq>.txt, <root>/calib/full-image-calib/<seq>.txt

``<stem>`` = ``<seq>_<YYYY-MM-DD-HH-MM-SS-mmm>``; ``<seq>`` = the part before the first ``_``.
Depth maps: ``uint16 / 256`` m (both sizes). Disparity: ``/ 256`` (half size), ``/ 128`` (full
size). Calibration ``*_101`` = left, ``*_103`` = right; baseline = ``|T_103|`` (Euclidean norm).

Split names: ``train_all`` (official train), ``train`` (``train_all`` without the hold-out
sequences), ``val`` (the hold-out: the last ``val_sequences`` train sequences in sorted
order), ``test`` (official half-size test), ``sunny|cloudy|foggy|rainy`` (full size),
``<weather>_half`` (half size), ``weather`` (the four full-size subsets, in that order), or a
split file: one frame per line, ``<stem>``, ``<stem>.png`` or ``<any/path>/<stem>.<ext>``
(the Robust-Depth lists), looked up in ``subset`` or, by default, in the full-size weather
folders, then test, then train, then the half-size weather folders. Frames of named splits are
ordered by sorted stem.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.headers import image_info
from harness.data.sample_ops import scaled_intrinsics
from harness.data.stereo_base import CalibFile, Frame, StereoFrameDataset, forward_warp_depth, read_depth_png, read_rgb
from harness.errors import HarnessError

__all__ = ["DrivingStereoDataset", "WEATHERS", "SUBSETS", "Subset", "split_names"]

WEATHERS = ("sunny", "cloudy", "foggy", "rainy")
KINDS = ("left", "right", "depth", "disparity")
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
GT_SOURCES = ("depth", "disparity")


@dataclass(frozen=True)
class Subset:
    """One folder group of the release: ``name``, ``resolution`` (``half``/``full``) and the
    folder (relative to the root) of each kind of file."""

    name: str
    resolution: str
    dirs: dict

    def dir(self, root: Path, kind: str) -> Path:
        return root / self.dirs[kind]


def _half(base: str) -> Subset:
    return Subset(base, "half", {
        "left": f"{base}-left-image", "right": f"{base}-right-image",
        "depth": f"{base}-depth-map", "disparity": f"{base}-disparity-map",
    })


def _weather(w: str, res: str) -> Subset:
    tag = "full-size" if res == "full" else "half-size"
    return Subset(w if res == "full" else f"{w}_half", res, {
        "left": f"{w}/left-image-{tag}", "right": f"{w}/right-image-{tag}",
        "depth": f"{w}/depth-map-{tag}", "disparity": f"{w}/disparity-map-{tag}",
    })


SUBSETS: dict[str, Subset] = {"train": _half("train"), "test": _half("test")}
SUBSETS.update({w: _weather(w, "full") for w in WEATHERS})
SUBSETS.update({f"{w}_half": _weather(w, "half") for w in WEATHERS})
#: where a split file's stems are looked up when no ``subset`` is given
AUTO_ORDER = (*WEATHERS, "test", "train", *(f"{w}_half" for w in WEATHERS))


def split_names() -> list[str]:
    return ["train_all", "train", "val", "test", *WEATHERS, *(f"{w}_half" for w in WEATHERS), "weather"]


def sequence_of(stem: str) -> str:
    return stem.split("_", 1)[0]


class DrivingStereoDataset(StereoFrameDataset):
    """DrivingStereo frames (left view targets) with depth-map (or disparity) GT.

    Args:
        root: the DrivingStereo folder (layout in the module docstring).
        split: a split name or a split file (module docstring).
        height, width: output size (``None``: native size of each sequence).
        need, seed, flip_mode, flip_prob: as :class:`~harness.data.kitti.KittiDataset`.
        gt_source: ``"depth"`` (depth maps, ``/256``) or ``"disparity"`` (``fx * B / d`` with
            ``d = png / 256`` half size, ``/ 128`` full size; needs the calibration).
        subset: where a split file's stems live (a key of :data:`SUBSETS`); ``None``: search.
        val_sequences: hold-out size for ``train``/``val``: a number of train sequences (the
            last ones in sorted order) or a list of sequence ids.
        drop_edges: leave out the first and last frame of every sequence, so that every sample
            has ``t-1``/``t+1`` neighbours (the ``frames`` key; neighbours are the previous and
            next stems of the same sequence on disk).
        mean_depth_frames: at most this many evenly spaced samples for :meth:`mean_depth_map`.

    GT of the right view (a ``swap``-flipped sample) is the left depth map moved to the right
    view by its disparity (:func:`~harness.data.stereo_base.forward_warp_depth`): the release
    has left-view maps only.
    """

    name = "drivingstereo"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "weather",
        height: int | None = None,
        width: int | None = None,
        need=None,
        seed: int = 0,
        gt_source: str = "depth",
        subset: str | None = None,
        val_sequences: int | list = 1,
        drop_edges: bool = False,
        flip_mode: str | None = None,
        flip_prob: float = 0.5,
        mean_depth_frames: int = 1000,
    ):
        super().__init__()
        self._init_common(height, width, need, seed, flip_mode, flip_prob)
        self.root = Path(root)
        if not self.root.is_dir():
            raise HarnessError(f"DrivingStereo root {self.root}: no such directory")
        if gt_source not in GT_SOURCES:
            raise HarnessError(f"drivingstereo: gt_source must be one of {GT_SOURCES}, got {gt_source!r}")
        if subset is not None and subset not in SUBSETS:
            raise HarnessError(f"drivingstereo: subset must be one of {sorted(SUBSETS)}, got {subset!r}")
        self.split = str(split)
        self.gt_source = gt_source
        self.subset = subset
        self.val_sequences = val_sequences
        self.drop_edges = bool(drop_edges)
        self.mean_depth_frames = int(mean_depth_frames)
        self._index: dict[tuple[str, str], dict[str, Path]] = {}
        self._seq_table: dict[str, tuple[dict[str, list[str]], dict[str, int]]] = {}
        self._calibs: dict[tuple[str, str], CalibFile] = {}
        self._sizes: dict[tuple[str, str], tuple[int, int]] = {}
        self.split_file: Path | None = None
        self.samples = self._build_samples()
        if not self.samples:
            raise HarnessError(f"drivingstereo split {self.split!r} under {self.root}: no frames")
        # index the folders this split will read now, so DataLoader workers inherit the indexes
        kinds = set()
        if "image_right" in self.need or flip_mode == "swap":
            kinds.add("right")
        if self.need & {"depth_gt", "depth_gt_mask"}:
            kinds.add(gt_source)
        for subset in {s.folder.split("/", 1)[0] for s in self.samples}:
            for kind in sorted(kinds):
                self.index(subset, kind)

    # ------------------------------------------------------------------ indexing
    def index(self, subset: str, kind: str) -> dict[str, Path]:
        """``stem -> path`` of every image file under the subset's ``kind`` folder (recursive)."""
        key = (subset, kind)
        if key not in self._index:
            top = SUBSETS[subset].dir(self.root, kind)
            found: dict[str, Path] = {}
            if top.is_dir():
                for dirpath, dirnames, filenames in os.walk(top):
                    dirnames.sort()
                    for name in sorted(filenames):
                        stem, ext = os.path.splitext(name)
                        if ext.lower() in _IMAGE_EXTS and not name.startswith("."):
                            found.setdefault(stem, Path(dirpath) / name)
            self._index[key] = found
        return self._index[key]

    def _require_index(self, subset: str, kind: str) -> dict[str, Path]:
        idx = self.index(subset, kind)
        if not idx:
            top = SUBSETS[subset].dir(self.root, kind)
            what = "no such directory" if not top.is_dir() else "no .png/.jpg files"
            raise HarnessError(f"{top}: {what} (DrivingStereo {subset} {kind} files)")
        return idx

    def _sequences(self, subset: str) -> tuple[dict[str, list[str]], dict[str, int]]:
        """``(sequence -> sorted stems, stem -> position in its sequence)`` of a subset."""
        if subset not in self._seq_table:
            seqs: dict[str, list[str]] = {}
            for stem in sorted(self._require_index(subset, "left")):
                seqs.setdefault(sequence_of(stem), []).append(stem)
            pos = {stem: i for stems in seqs.values() for i, stem in enumerate(stems)}
            self._seq_table[subset] = (seqs, pos)
        return self._seq_table[subset]

    def stems_of(self, subset: str, seq: str) -> list[str]:
        """Sorted stems of one sequence in a subset (the frame numbering and the neighbours)."""
        return self._sequences(subset)[0].get(seq, [])

    def _frames_for(self, subset: str, stems: list[str], lines: list[str] | None = None) -> list[Frame]:
        out = []
        lines = lines or stems
        seqs, positions = self._sequences(subset)
        for stem, line in zip(stems, lines):
            seq = sequence_of(stem)
            pos = positions[stem]
            if self.drop_edges and (pos == 0 or pos == len(seqs[seq]) - 1):
                continue
            out.append(Frame(f"{subset}/{seq}", pos, "l", line))
        return out

    def _build_samples(self) -> list[Frame]:
        name = self.split
        if name in ("train_all", "train", "val"):
            stems = sorted(self._require_index("train", "left"))
            seqs = sorted({sequence_of(s) for s in stems})
            held = self._held_out(seqs)
            if name == "train":
                stems = [s for s in stems if sequence_of(s) not in held]
            elif name == "val":
                stems = [s for s in stems if sequence_of(s) in held]
            return self._frames_for("train", stems)
        if name in SUBSETS:
            return self._frames_for(name, sorted(self._require_index(name, "left")))
        if name == "weather":
            out = []
            for w in WEATHERS:
                out += self._frames_for(w, sorted(self._require_index(w, "left")))
            return out
        path = Path(name)
        if not path.is_file():
            raise HarnessError(f"split {name!r}: not a DrivingStereo split ({', '.join(split_names())}) "
                               "and not an existing split file")
        self.split_file = path
        return self._from_split_file(path)

    def _held_out(self, seqs: list[str]) -> set[str]:
        v = self.val_sequences
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if not 0 <= int(v) < max(len(seqs), 1):
                raise HarnessError(f"drivingstereo: val_sequences={v} must leave at least one of the "
                                   f"{len(seqs)} train sequences for training")
            return set(seqs[len(seqs) - int(v):]) if int(v) else set()
        held = {str(s) for s in v}
        unknown = held - set(seqs)
        if unknown:
            raise HarnessError(f"drivingstereo: val_sequences {sorted(unknown)} are not train sequences")
        return held

    def _from_split_file(self, path: Path) -> list[Frame]:
        try:
            raw = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise HarnessError(f"{path}: cannot read split file ({exc})") from None
        lines, stems = [], []
        for lineno, line in enumerate(raw, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 1:
                raise HarnessError(f"{path}:{lineno}: expected one frame per line ('<stem>[.png]'), got {line!r}")
            stem = os.path.splitext(os.path.basename(parts[0]))[0]
            if not stem:
                raise HarnessError(f"{path}:{lineno}: empty frame name")
            lines.append(parts[0])
            stems.append(stem)
        if not stems:
            raise HarnessError(f"{path}: split file has no lines")
        order = [self.subset] if self.subset else list(AUTO_ORDER)
        out: list[Frame] = []
        for i, (stem, line) in enumerate(zip(stems, lines)):
            for sub in order:
                top = SUBSETS[sub].dir(self.root, "left")
                if top.is_dir() and stem in self.index(sub, "left"):
                    out += self._frames_for(sub, [stem], [line])
                    break
            else:
                where = SUBSETS[self.subset].dir(self.root, "left") if self.subset else self.root
                raise HarnessError(f"{path}: split line {i + 1} names frame {stem!r}, which is not under {where}")
        return out

    # ------------------------------------------------------------------ identity
    @property
    def split_hash(self) -> str:
        if self.split_file is not None:
            return hashlib.sha256(self.split_file.read_bytes()).hexdigest()
        return super().split_hash

    @property
    def fingerprint(self) -> str:
        key = f"drivingstereo:{self.root.resolve()}:{self.split}:{self.split_hash}:{self.gt_source}:{self.drop_edges}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ files
    @staticmethod
    def _parts(fr: Frame) -> tuple[str, str]:
        subset, seq = fr.folder.split("/", 1)
        return subset, seq

    def stem(self, fr: Frame, offset: int = 0) -> str:
        subset, seq = self._parts(fr)
        stems = self.stems_of(subset, seq)
        pos = fr.frame + offset
        if not 0 <= pos < len(stems):
            raise HarnessError(
                f"{SUBSETS[subset].dir(self.root, 'left')}: frame {stems[fr.frame]!r} has no neighbour "
                f"{offset:+d} in sequence {seq} (use drop_edges=True for temporal training)"
            )
        return stems[pos]

    def file_path(self, fr: Frame, kind: str, offset: int = 0) -> Path:
        subset, _ = self._parts(fr)
        stem = self.stem(fr, offset)
        path = self.index(subset, kind).get(stem)
        if path is None:
            top = SUBSETS[subset].dir(self.root, kind)
            ext = ".png" if kind in ("depth", "disparity") or SUBSETS[subset].resolution == "full" else ".jpg"
            raise HarnessError(f"{top}/{stem}{ext}: {kind} file not found (split line {fr.line!r})")
        return path

    def _image_path(self, fr: Frame, side: str, offset: int = 0) -> Path:
        return self.file_path(fr, "left" if side == "l" else "right", offset)

    def calib(self, fr: Frame) -> CalibFile:
        subset, seq = self._parts(fr)
        res = SUBSETS[subset].resolution
        key = (res, seq)
        if key not in self._calibs:
            tag = f"{res}-image-calib"
            cands = [self.root / "calib" / tag, self.root / tag, self.root / "calib"]
            if subset not in ("train", "test"):
                w = subset.removesuffix("_half")
                cands += [self.root / w / "calib" / tag, self.root / w / tag, self.root / w / "calib"]
            for c in cands:
                if (c / f"{seq}.txt").is_file():
                    self._calibs[key] = CalibFile(c / f"{seq}.txt")
                    break
            else:
                self._calibs[key] = CalibFile(self.root / "calib" / tag / f"{seq}.txt")  # reports "not found"
        return self._calibs[key]

    # ------------------------------------------------------------------ StereoFrameDataset hooks
    def _native_size(self, fr: Frame) -> tuple[int, int]:
        subset, seq = self._parts(fr)
        if (subset, seq) not in self._sizes:
            path = self.file_path(fr, "left")
            try:
                info = image_info(path)
            except (OSError, ValueError) as exc:
                raise HarnessError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
            self._sizes[(subset, seq)] = (info.height, info.width)
        return self._sizes[(subset, seq)]

    def _image(self, fr: Frame, side: str, offset: int) -> np.ndarray:
        return read_rgb(self._image_path(fr, side, offset))

    def _K(self, fr: Frame, side: str) -> np.ndarray:
        cal = self.calib(fr)
        cam = "101" if side == "l" else "103"
        K = cal.numbers(f"P_rect_{cam}", 12).reshape(3, 4)[:, :3].copy()
        # calibration of another size than the images: scale exactly (pixel centres at integers)
        if f"S_rect_{cam}" in cal.data:
            ch, cw = cal.size(f"S_rect_{cam}")
            h, w = self._native_size(fr)
            if (ch, cw) != (h, w):
                K = scaled_intrinsics(K, (ch, cw), (h, w), False)
        return K

    def _cam_x(self, fr: Frame) -> dict[str, float]:
        return {"l": 0.0, "r": float(np.linalg.norm(self.calib(fr).numbers("T_103", 3)))}

    def _left_gt(self, fr: Frame) -> np.ndarray:
        subset, _ = self._parts(fr)
        if self.gt_source == "depth":
            return read_depth_png(self.file_path(fr, "depth"))
        full = SUBSETS[subset].resolution == "full"
        disp = read_depth_png(self.file_path(fr, "disparity"), scale=128.0 if full else 256.0)
        fb = self._fx_baseline(fr, disp.shape)
        out = np.zeros_like(disp)
        valid = disp > 0
        out[valid] = fb / disp[valid]
        return out

    def _fx_baseline(self, fr: Frame, shape) -> float:
        K = self._K(fr, "l")
        h, w = self._native_size(fr)
        fx = K[0, 0] * shape[1] / w  # a map of another size than the image
        return float(fx * self._cam_x(fr)["r"])

    def _gt(self, fr: Frame, side: str) -> np.ndarray:
        gt = self._left_gt(fr)
        if side == "l":
            return gt
        return forward_warp_depth(gt, self._fx_baseline(fr, gt.shape), -1.0)

    def _meta_extra(self, fr: Frame) -> dict:
        return {"stem": self.stem(fr)}
