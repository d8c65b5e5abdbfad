"""``harness predict``: run a trained student on your own images, or a stereo teacher on a pair.

Student (``predict_images``): the student network alone is rebuilt from a run's recorded
config (``<work_dir>/run_config.json``, see :func:`harness.pipeline.run.write_run_record`) through the
public registries and filled with the ``student.*`` weights of the run's last checkpoint
(strategy modules and teachers in the checkpoint are ignored). Each image is resized to the
training resolution, predicted, and the depth resized back to the image's own size.

Teacher (``predict_pair``): a registered teacher that needs no training (``sgbm``), or a
cached trained teacher (a ``<cache>/teachers/<key>`` entry, its key, or its ``teacher.pth``),
runs on a rectified pair. Learned teachers run at their training resolution (disparities are
rescaled to the input width); SGBM runs at the input's own size.

Outputs per input ``<stem>``: ``<stem>_depth.png`` (uint16, metres x 256, 0 = invalid, KITTI
convention), ``<stem>_depth_color.png`` (near = bright), optionally ``<stem>_depth.npy``
(float32 metres); for pairs ``<stem>_disp.png`` (uint16, px x 256), ``<stem>_disp_color.png``,
``<stem>_disp.npy`` and, given focal length and baseline, the depth files.
"""
from __future__ import annotations

import glob
import io
import json
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from harness.pipeline import checkpoint
from harness.report.colormap import colorize
from harness.data import formats
from harness.errors import HarnessError, HarnessWarning
from harness.pipeline.run import RUN_RECORD

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
WRAPPER_PREFIX = "student."


# ----------------------------------------------------------------------------- images
def find_images(spec: str) -> list[Path]:
    """An image file, a folder (its images, sorted, not recursive) or a glob pattern."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise HarnessError(f"option --input {spec}: folder has no image files ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if path.is_file():
        return [path]
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
        if not files:
            raise HarnessError(f"option --input {spec}: the pattern matches no file")
        return files
    raise HarnessError(f"option --input {spec}: no such file or folder")


def read_rgb(path: Path, what: str = "option --input") -> np.ndarray:
    """``uint8 HxWx3`` RGB; RGBA drops its alpha, 16-bit images are scaled to 8 bits.

    Anything else (unreadable, grey, two channels) is one :class:`HarnessError` line."""
    img = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise HarnessError(f"{what} {path}: not a readable image file")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels not in (3, 4):
        raise HarnessError(f"{what} {path}: expected a colour image with 3 channels (RGB) or 4 (RGBA), "
                           f"got {channels} channel(s)")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise HarnessError(f"{what} {path}: expected 8- or 16-bit pixels, got {img.dtype}")
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if channels == 4 else cv2.COLOR_BGR2RGB)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``uint8 HxWx3`` -> ``1 x 3 x H x W`` float in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``B x C x H x W`` (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def write_map(out_dir: Path, stem: str, kind: str, values: np.ndarray, *, npy: bool) -> list[Path]:
    """``<stem>_<kind>.png`` (uint16 x 256), ``<stem>_<kind>_color.png`` and optionally ``.npy``.

    ``kind`` is ``depth`` (metres; colourised as depth, near = bright) or ``disp`` (px;
    colourised as inverse depth, large = bright)."""
    paths = [out_dir / f"{stem}_{kind}.png", out_dir / f"{stem}_{kind}_color.png"]
    formats.write_png16(paths[0], values)
    formats.write_image(paths[1], colorize(values, inverse=kind == "disp"))
    if npy:
        paths.append(out_dir / f"{stem}_{kind}.npy")
        _write_npy(paths[-1], values.astype(np.float32))
    return paths


def _write_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    formats.atomic_write_bytes(path, buf.getvalue())


def check_out_dir(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise HarnessError(f"option --out {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"option --out {path}: cannot create the folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise HarnessError(f"option --out {path}: folder is not writable")
    return path


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class LoadedStudent:
    """A student rebuilt from a run's config with its trained weights, in eval mode."""

    model: torch.nn.Module
    student_type: str
    method: str
    input_size: tuple[int, int]
    checkpoint: Path


def find_run_record(start: Path) -> Path | None:
    """``run_config.json`` in ``start`` or one of its two parents (a run dir, stage dir or file)."""
    for folder in [start, *list(start.parents)[:2]]:
        if (folder / RUN_RECORD).is_file():
            return folder / RUN_RECORD
    return None


def read_run_record(path: Path, what: str) -> dict[str, Any]:
    """A ``run_config.json`` or a result JSON (both carry ``config``); ``method`` is taken from
    the record or the config."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{what} {path}: cannot be read as JSON ({exc})") from None
    cfg = record.get("config") if isinstance(record, dict) else None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("student"), dict) or "type" not in cfg["student"]:
        raise HarnessError(f"{what} {path}: has no run config with a student (expected {RUN_RECORD} "
                           "of a work dir or a result JSON)")
    record.setdefault("method", (cfg.get("method") or {}).get("type", "?"))
    return record


def resolve_checkpoint(target: str, config: str | None) -> tuple[Path, dict[str, Any]]:
    """(checkpoint file, run record) for ``--checkpoint``/``--run`` (a run dir or a file).

    A run dir resolves to the latest checkpoint of its last recorded stage that has one (without
    recorded stages, e.g. with a result JSON: the most recently written checkpoint)."""
    path = Path(target)
    if not path.exists():
        raise HarnessError(f"option --checkpoint {target}: no such file or folder")
    record_path = Path(config) if config else find_run_record(path if path.is_dir() else path.parent)
    if record_path is None:
        raise HarnessError(f"option --checkpoint {target}: no {RUN_RECORD} in the run folder "
                           "(a run from an older version?); pass --config RESULT.json of that run")
    if not record_path.is_file():
        raise HarnessError(f"option --config {record_path}: no such file")
    record = read_run_record(record_path, "option --config" if config else "run record")
    if path.is_file():
        return path, record
    stages = record.get("stages") or sorted(
        (p.name for p in path.iterdir() if checkpoint.latest_checkpoint(p)),
        key=lambda name: checkpoint.latest_checkpoint(path / name).stat().st_mtime)
    for stage in reversed(stages):
        ckpt = checkpoint.latest_checkpoint(path / stage)  # this folder's own files, also when copied
        if ckpt is not None:
            return ckpt, record
    raise HarnessError(f"option --checkpoint {target}: the run folder has no checkpoint "
                       f"(stages looked at: {', '.join(stages) or 'none'})")


def load_state_dict(ckpt: Path, trusted_root: Path | None) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file. Files inside a harness run folder (``trusted_root``) may hold
    mmengine's pickled training state; any other file must load with ``weights_only=True``."""
    if trusted_root is not None:
        checkpoint.trust_directory(trusted_root)
    try:
        obj = checkpoint.load_local(str(ckpt), map_location="cpu")
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise HarnessError(f"checkpoint {ckpt}: cannot be read as a torch checkpoint ({exc})") from None
        raise HarnessError(f"checkpoint {ckpt}: holds pickled objects besides tensors and is not inside a harness "
                           f"run folder (no {RUN_RECORD} beside it or above); not loaded") from None
    except Exception as exc:  # corrupt zip, truncated pickle, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"checkpoint {ckpt}: cannot be read as a torch checkpoint ({reason[:160]})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HarnessError(f"checkpoint {ckpt}: holds no state dict of tensors")
    return state


def student_weights(state: dict[str, torch.Tensor], ckpt: Path) -> dict[str, torch.Tensor]:
    """The ``student.*`` entries without the prefix (a bare state dict is taken as it is)."""
    if any(k.startswith(WRAPPER_PREFIX) for k in state):
        return {k[len(WRAPPER_PREFIX):]: v for k, v in state.items() if k.startswith(WRAPPER_PREFIX)}
    if any(k.startswith(("teacher.", "strategy.")) for k in state):
        raise HarnessError(f"checkpoint {ckpt}: has no student weights (a teacher or strategy checkpoint?)")
    return state


def load_student(host, target: str, config: str | None = None) -> LoadedStudent:
    """Rebuild the run's student through the registry and load its trained weights."""
    ckpt, record = resolve_checkpoint(target, config)
    cfg = record["config"]
    spec = dict(cfg["student"])
    name = spec.pop("type")
    try:
        model = host.catalog.build("students", name, **spec)
    except HarnessError:  # unknown student: the registry's own line
        raise
    except Exception as exc:
        raise HarnessError(f"run config: cannot build student {name!r} ({exc})") from None
    own_record = find_run_record(ckpt.parent)  # a folder the harness wrote: its pickles are trusted
    weights = student_weights(load_state_dict(ckpt, own_record.parent if own_record else None), ckpt)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(f"{what} {len(keys)} (e.g. {keys[0]})" for what, keys in
                           (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)) if keys)
        raise HarnessError(f"checkpoint {ckpt}: its student weights do not fit student {name!r} of method "
                           f"{record['method']!r} ({detail}); a checkpoint of another method, or a student "
                           "that needs its strategy's modules at test time?")
    model.load_state_dict(weights)
    model.eval().requires_grad_(False)
    size = tuple(int(v) for v in cfg["data"]["input_size"])
    return LoadedStudent(model, name, str(record["method"]), size, ckpt)


# ----------------------------------------------------------------------------- student
@torch.no_grad()
def predict_depth(student: LoadedStudent, rgb: np.ndarray, *, post_process: bool = False) -> np.ndarray:
    """Metric depth ``float32 HxW`` at the image's own size (via the training resolution).
    ``post_process``: Monodepth2's flip fusion: the student also sees the mirrored image and the
    two disparities (``1 / depth``) are fused by :func:`harness.eval.protocol.flip_post_process`."""
    from harness.eval.protocol import flip_post_process

    x = resize(to_tensor(rgb), student.input_size)
    depth = student.model.predict(x)
    if post_process:
        mirrored = student.model.predict(torch.flip(x, dims=[-1]))
        depth = 1.0 / flip_post_process(1.0 / depth.clamp(min=1e-6), 1.0 / mirrored.clamp(min=1e-6))
    return resize(depth, rgb.shape[:2])[0, 0].numpy().astype(np.float32)


def predict_images(student: LoadedStudent, inputs: list[Path], out_dir: Path, *, npy: bool = False,
                   progress: Callable[[int, int], None] | None = None, post_process: bool = False) -> list[Path]:
    """Predict every input and write its files; returns the written paths."""
    written: list[Path] = []
    for i, path in enumerate(inputs):
        depth = predict_depth(student, read_rgb(path), post_process=post_process)
        written += write_map(out_dir, path.stem, "depth", depth, npy=npy)
        if progress is not None:
            progress(i + 1, len(inputs))
    return written


# ----------------------------------------------------------------------------- teacher
@dataclass
class LoadedTeacher:
    """A frozen stereo teacher and the resolution it runs at."""

    model: torch.nn.Module
    name: str
    input_size: tuple[int, int] | None  # None: runs at the input's own size (rounded to ``align``)
    align: int = 1


def load_teacher(host, spec: str, cache_dir: Path, max_disp: int | None = None) -> LoadedTeacher:
    """``sgbm`` (or any registered teacher that needs no training), a cache key, a cache entry
    folder or its ``teacher.pth``."""
    names = host.catalog.names("teachers")
    if spec in names:
        cls = host.catalog.get("teachers", spec).obj
        if getattr(cls, "trainable", True):
            raise HarnessError(f"option --teacher {spec}: a trained teacher needs its weights; pass its cache "
                               f"entry ({cache_dir / 'teachers'}/<key>) or key")
        kwargs = {"max_disp": max_disp} if max_disp else {}
        return LoadedTeacher(host.catalog.build("teachers", spec, **kwargs), spec, None)
    if max_disp:
        raise HarnessError("option --max-disp: only for a teacher built by name (e.g. sgbm); a trained "
                           "teacher keeps its own range")
    path = Path(spec)
    if not path.exists() and (cache_dir / "teachers" / spec).is_dir():
        path = cache_dir / "teachers" / spec
    entry = path if path.is_dir() else path.parent
    if not path.exists():
        raise HarnessError(f"option --teacher {spec}: not a teacher name ({', '.join(names)}), a cache key "
                           f"under {cache_dir / 'teachers'} or a file/folder")
    meta_file, weights_file = entry / "meta.json", (path if path.is_file() else entry / "teacher.pth")
    if not meta_file.is_file() or not weights_file.is_file():
        raise HarnessError(f"option --teacher {spec}: not a teacher cache entry (needs meta.json and teacher.pth)")
    try:
        meta = json.loads(meta_file.read_text())
        tcfg = dict(meta["teacher"])
        name = tcfg.pop("type")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"teacher cache {meta_file}: unreadable or has no teacher config ({exc})") from None
    model = host.catalog.build("teachers", name, **tcfg)
    state = load_state_dict(weights_file, None)  # plain tensors: weights_only=True
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise HarnessError(f"checkpoint {weights_file}: does not fit teacher {name!r} "
                           f"({str(exc).splitlines()[0][:160]})") from None
    # the training resolution (entries written before it was recorded: the input's size, to /32)
    size = tuple(int(v) for v in meta["input_size"]) if meta.get("input_size") else None
    return LoadedTeacher(model.eval().requires_grad_(False), name, size, align=32)


@torch.no_grad()
def predict_pair(teacher: LoadedTeacher, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Left-view disparity ``float32 HxW`` in px of the input resolution."""
    if left.shape != right.shape:
        raise HarnessError(f"options --left/--right: the images differ in size "
                           f"({left.shape[1]}x{left.shape[0]} vs {right.shape[1]}x{right.shape[0]})")
    h, w = left.shape[:2]
    a = teacher.align
    size = teacher.input_size or (max(a, round(h / a) * a), max(a, round(w / a) * a))
    batch = {
        "image": resize(to_tensor(left), size),
        "image_right": resize(to_tensor(right), size),
        "K": torch.eye(3)[None],  # depth comes from focal x baseline / disparity afterwards
        "baseline": torch.ones(1),
    }
    try:
        out = teacher.model(batch)
    except ValueError as exc:  # e.g. a learned teacher given a size it cannot take
        raise HarnessError(f"teacher {teacher.name}: {exc}") from None
    disp = out.disp[0]
    warn_if_clipped(teacher, disp[0, 0].numpy(), (out.aux or {}).get("confidence"), size[1])
    disp = resize(disp, (h, w)) * (w / size[1])
    return disp[0, 0].numpy().astype(np.float32)


def warn_if_clipped(teacher: LoadedTeacher, disp: np.ndarray, confidence, width: int) -> float:
    """One warning line naming ``--max-disp`` when more than :data:`CLIPPED_SHARE` of the valid
    disparities sit at the top of the teacher's search range (nearer surfaces are then clipped);
    returns that share. SGBM's range is ``--max-disp`` (default: scaled with the width); a
    trained teacher's is its ``max_disp`` at its training resolution."""
    from harness.models.sgbm import CLIPPED_SHARE, top_of_range_share

    model = teacher.model
    top = model.search_range(width) if hasattr(model, "search_range") else getattr(model, "max_disp", None)
    if not top:
        return 0.0
    valid = np.ones(disp.shape, bool) if confidence is None else confidence[0, 0].numpy() > 0
    share = top_of_range_share(disp, valid, top)
    if share > CLIPPED_SHARE:
        fix = (f"pass a larger --max-disp (now {top} px)" if hasattr(model, "search_range") else
               f"--max-disp does not apply to a trained teacher: retrain it with a larger teacher.max_disp (now {top} px "
               f"at {width} px width)")
        warnings.warn(f"teacher {teacher.name}: {100 * share:.1f} % of the valid disparities are at the top of the "
                      f"search range, so nearer surfaces are clipped; {fix}", HarnessWarning, 2)
    return share


def disparity_to_depth(disp: np.ndarray, focal: float, baseline: float) -> np.ndarray:
    """``focal x baseline / disp`` (0 where the disparity is not positive)."""
    valid = disp > 0
    return np.where(valid, focal * baseline / np.where(valid, disp, 1.0), 0.0).astype(np.float32)


def bad_pixel_rate(disp: np.ndarray, gt: np.ndarray, threshold: float = 3.0) -> float:
    """Fraction of pixels with finite, positive GT where ``|disp - gt| > threshold`` px."""
    valid = np.isfinite(gt) & (gt > 0)
    if not valid.any():
        raise ValueError("bad_pixel_rate: the GT has no valid pixel")
    return float((np.abs(disp[valid] - gt[valid]) > threshold).mean())
