"""``harness eval``: score saved predictions of any model under a dataset's protocol.

Predictions: a ``.npz`` file (read with ``allow_pickle=False``) holding ONE of

* ``depth`` — depth in metres, or
* ``disparity`` — a disparity-like map, converted as ``depth = 1 / disparity`` (Monodepth2's
  convention: its sigmoid-scaled "disparity" is inverse depth up to scale, which median
  scaling or the stereo factor then fixes; for pixel disparities of a stereo network convert
  to metres yourself, ``depth = fx * baseline / disparity``),

shaped ``N x H x W`` or ``N x 1 x H x W`` with ``N`` = the number of frames of the split, in
split order. An optional second array ``depth_flipped`` / ``disparity_flipped`` (same key kind,
same shape: the predictions for the horizontally mirrored images, still mirrored) switches on
Monodepth flip post-processing (:func:`harness.eval.protocol.flip_post_process`, on disparities,
before resizing; recorded as ``flip_pp`` in the protocol).

A ``.npy`` file (one array, ``allow_pickle=False``) is read as Monodepth2's
``evaluate_depth.py --ext_disp_to_eval`` reads one: ``disparity``, ``N x H x W``; with
``--post_process`` (Monodepth2's flag) it holds ``2N`` maps, the predictions of the ``N`` frames
followed by those of their mirrored images (still mirrored), and they are flip-fused. An
``.npz`` with ``*_flipped`` is fused either way; ``--post_process`` without mirrored predictions
is refused.

A prediction of another size than a frame's GT is resized the Monodepth2 way:
its disparity ``1 / depth`` bilinearly (half-pixel centres), then inverted; only the valid GT
pixels are interpolated (:func:`harness.eval.sparse.compute_metrics_sparse`).

Values must be finite and positive: NaN, infinite, zero or negative predictions are refused
with one line giving their count and the first frame (``depth = 0`` has no meaning and
``disparity = 0`` is infinitely far; mask or fill them before saving).
"""
from __future__ import annotations

import json
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data.access import OpenSplit, open_split, split_protocol
from harness.errors import HarnessError
from harness.eval.loop import frame_id, gt_size_groups, score_frames
from harness.eval.metrics import rounded
from harness.eval.protocol import Protocol, flip_post_process
from harness.eval.sparse import compute_metrics_sparse

__all__ = ["Predictions", "load_predictions", "score", "evaluate_predictions", "format_table"]

KEYS = ("depth", "disparity")
EVAL_SCHEMA = "stereodistill.eval/1"


@dataclass
class Predictions:
    path: Path
    key: str  # "depth" | "disparity"
    values: np.ndarray  # N x H x W float32
    flipped: np.ndarray | None = None  # predictions of the mirrored inputs (still mirrored)

    def disparity(self, i: int, j: int) -> np.ndarray:
        """Disparity-like maps (``1 / depth``) of frames ``i..j-1`` as ``float32``, flip
        post-processed when mirrored predictions were given."""
        x = self._disp(self.values[i:j])
        if self.flipped is None:
            return x
        fused = flip_post_process(torch.from_numpy(x), torch.from_numpy(self._disp(self.flipped[i:j])))
        return fused.numpy()

    def _disp(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32, copy=False)
        return x if self.key == "disparity" else np.float32(1.0) / x


def load_predictions(path: str | Path, *, post_process: bool = False) -> Predictions:
    """Read and validate a predictions ``.npz`` or Monodepth2 ``.npy`` (module docstring); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"option --predictions {path}: no such file")
    if path.suffix.lower() == ".npy":
        return _load_npy(path, post_process)
    preds = _load_npz(path)
    if post_process and preds.flipped is None:
        raise HarnessError(f"option --post_process: {path} holds no mirrored predictions "
                           f"('{preds.key}_flipped'), so there is nothing to fuse")
    return preds


def _load_npy(path: Path, post_process: bool) -> Predictions:
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "allow_pickle" in msg:
            msg = "it holds object arrays (pickled data), which are not read"
        raise HarnessError(f"{path}: not a readable NumPy .npy file ({msg})") from None
    values = _as_maps(path, "disparity", values)
    if not post_process:
        return Predictions(path, "disparity", values)
    if values.shape[0] % 2:
        raise HarnessError(f"option --post_process: {path} has {values.shape[0]} maps; it needs 2N (the N frames, "
                           "then their mirrored images)")
    half = values.shape[0] // 2
    return Predictions(path, "disparity", values[:half], values[half:])


def _load_npz(path: Path) -> Predictions:
    try:
        with np.load(path, allow_pickle=False) as npz:
            present = [k for k in KEYS if k in npz.files]
            if len(present) != 1:
                have = ", ".join(npz.files) or "nothing"
                what = "both" if len(present) == 2 else "neither"
                raise HarnessError(f"{path}: expected exactly one array named 'depth' or 'disparity', found {what} "
                                   f"(it holds: {have})")
            key = present[0]
            values = npz[key]
            flipped = npz[f"{key}_flipped"] if f"{key}_flipped" in npz.files else None
    except HarnessError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "allow_pickle" in msg:
            msg = "it holds object arrays (pickled data), which are not read"
        raise HarnessError(f"{path}: not a readable NumPy .npz file ({msg})") from None
    values = _as_maps(path, key, values)
    if flipped is not None:
        flipped = _as_maps(path, f"{key}_flipped", flipped)
        if flipped.shape != values.shape:
            raise HarnessError(f"{path}: '{key}_flipped' has shape {flipped.shape}, '{key}' has {values.shape}")
    return Predictions(path, key, values, flipped)


def _as_maps(path: Path, key: str, values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "fiu":
        raise HarnessError(f"{path}: '{key}' has dtype {values.dtype}, expected numbers")
    if values.ndim == 4 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 3 or min(values.shape) == 0:
        raise HarnessError(f"{path}: '{key}' has shape {tuple(values.shape)}, expected N x H x W or N x 1 x H x W")
    values = values.astype(np.float32, copy=False)
    _check_values(path, key, values)
    return values


def _check_values(path: Path, key: str, values: np.ndarray) -> None:
    bad_frames = []
    n_bad = 0
    for i in range(0, values.shape[0], 64):  # chunks: no full-size temporaries
        chunk = values[i:i + 64]
        bad = ~(np.isfinite(chunk) & (chunk > 0))
        per = bad.reshape(chunk.shape[0], -1).sum(axis=1)
        if per.any():
            n_bad += int(per.sum())
            bad_frames += (np.flatnonzero(per) + i).tolist()
    if n_bad:
        kinds = []
        if np.isnan(values).any():
            kinds.append("NaN")
        if np.isinf(values).any():
            kinds.append("infinite")
        with np.errstate(invalid="ignore"):
            if (values <= 0).any():
                kinds.append("zero/negative")
        raise HarnessError(
            f"{path}: '{key}' has {n_bad} {'/'.join(kinds)} value(s) in {len(bad_frames)} frame(s), first in frame "
            f"{bad_frames[0]}; predictions must be finite and > 0 (fill or mask them before saving)"
        )


def score(
    preds: Predictions,
    gt_of,  # callable: index -> float32 HxW GT
    n: int,
    protocol: Protocol,
    *,
    chunk: int = 16,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Score frames ``0..n-1`` in the split-evaluation loop (:func:`harness.eval.loop.score_frames`,
    ``chunk`` frames a batch) on the sparse path. Returns ``(summary, per_image)``."""

    def score_batch(idx: list[int]):
        gts = [gt_of(i) for i in idx]
        for sel in gt_size_groups(gts):
            first, last = idx[sel[0]], idx[sel[-1]]
            metrics = compute_metrics_sparse(preds.disparity(first, last + 1), [gts[j] for j in sel], protocol)
            yield metrics, [frame_id(None, idx[j]) for j in sel]

    result = score_frames(score_batch, n, batch_size=chunk, protocol=protocol)
    return result.summary, result.per_image


def _scale_options(median_scaling: bool | None, stereo_factor: float | None) -> dict[str, Any]:
    if stereo_factor is not None:
        if median_scaling:
            raise HarnessError("options --median-scaling and --stereo-factor: choose one scaling policy")
        if not (math.isfinite(stereo_factor) and stereo_factor > 0):
            raise HarnessError(f"option --stereo-factor: must be a positive number, got {stereo_factor}")
        return {"scale": "stereo_factor", "stereo_factor": float(stereo_factor)}
    if median_scaling is None:
        return {}
    return {"scale": "median" if median_scaling else "none"}


def evaluate_predictions(
    *,
    predictions: str | Path,
    dataset: str,
    data_root: str | Path,
    split: str | None = None,
    split_file: str | Path | None = None,
    median_scaling: bool | None = None,
    stereo_factor: float | None = None,
    protocol_overrides: dict[str, Any] | None = None,
    host=None,
    post_process: bool = False,
) -> dict[str, Any]:
    """Everything ``harness eval`` does except printing and writing: returns the report dict."""
    t0 = time.perf_counter()
    preds = load_predictions(predictions, post_process=post_process)
    opened: OpenSplit = open_split(dataset, data_root, split=split, split_file=split_file, host=host)
    ds = opened.dataset
    n = len(ds)
    if preds.values.shape[0] != n:
        raise HarnessError(f"{preds.path}: '{preds.key}' has {preds.values.shape[0]} frames, the split "
                           f"{ds.split!r} has {n}")
    overrides = dict(protocol_overrides or {})
    overrides.update(_scale_options(median_scaling, stereo_factor))
    overrides["flip_pp"] = preds.flipped is not None
    protocol = split_protocol(opened, preds.values.shape[1:], **overrides)
    summary, per_image = score(preds, ds.eval_gt, n, protocol)
    seconds = time.perf_counter() - t0
    if summary["num_images"] == 0:
        raise HarnessError(f"split {ds.split!r}: no frame has a valid GT pixel under protocol {protocol.name!r}")
    return {
        "schema": EVAL_SCHEMA,
        "predictions": str(preds.path),
        "prediction_key": preds.key,
        "prediction_shape": list(preds.values.shape),
        "dataset": dataset,
        "data_root": str(opened.root),
        "split": ds.split,
        "protocol": dict(protocol.to_dict(), id=protocol.protocol_id()),
        "metrics": rounded(summary),
        "per_image": {"abs_rel": [round(v, 6) if math.isfinite(v) else v for v in per_image.get("abs_rel", [])]},
        "frames": opened.frames,
        "seconds": round(seconds, 3),
        "created": _now(),
    }


def _now() -> str:
    from harness.report.results import now_iso

    return now_iso()


def format_table(report: dict[str, Any]) -> str:
    """Monodepth2-style table: one header line and one row, 3 decimals, plus the protocol."""
    m = report["metrics"]
    p = report["protocol"]
    names = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "log10", "silog"]
    head = " | ".join(f"{k:>8}" for k in names)
    row = " | ".join(f"{m[k]:8.3f}" if isinstance(m.get(k), float) else f"{'-':>8}" for k in names)
    scale = p["scale"] if p["scale"] != "stereo_factor" else f"stereo_factor x{p['stereo_factor']:g}"
    lines = [
        f"{report['dataset']} {report['split']}: {m['num_images']} frames"
        + (f" ({m['skipped_images']} without valid GT skipped)" if m.get("skipped_images") else ""),
        f"protocol {p['id']}: gt {p['gt_source']}, crop {p['crop']}, gt mask {p['gt_mask']}, depth "
        f"{p['min_depth']:g}..{p['max_depth']:g} m, scale {scale}",
    ]
    if "scale_median" in m:
        lines.append(f"scaling ratios: median {m['scale_median']:.3f}, std {m['scale_std']:.3f}")
    lines += [head, row]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], path: str | Path) -> None:
    from harness.report.results import atomic_write_text

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise HarnessError(f"option --json {path}: cannot write ({exc.strerror or exc})") from None
