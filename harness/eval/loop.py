"""The split-evaluation loop: every evaluation of a split (a run's val/test/teacher/mean-depth rows,
each robustness condition, saved predictions) goes through :func:`score_frames`.

The loop walks the frames in batches (in a multi-process run each rank takes every N-th batch),
scores each batch (consecutive frames whose GT has one size together; a batch mixing GT sizes,
e.g. KITTI dates, frame by frame), gathers the per-image metrics of all ranks in dataset order
and averages them with :class:`~harness.eval.metrics.MetricAccumulator`, so the summary is
exactly the single-process one (no padding, no mean of means).

Public API:

* :func:`evaluate_split` ``(predict, dataset, protocol, ...) -> SplitScore``: a model on a dataset
  (``predict(image) -> depth``, or ``predict_batch(batch) -> depth`` for models that need more
  than the image); predictions are resized to the native GT (``dataset.eval_gt(i)``) the
  Monodepth2 way and scored densely (:func:`~harness.eval.metrics.compute_metrics`).
* :func:`score_frames` ``(score_batch, n, ...) -> SplitScore``: the loop itself, for any source of
  per-image metrics (:func:`harness.eval.predictions.score` passes saved predictions).
* :class:`SplitScore`: ``summary`` (unrounded; :func:`~harness.eval.metrics.rounded` gives the
  result-file form) and the PER-FRAME metrics of the scored images (those with a valid GT
  pixel), in dataset order: ``per_image`` (``{metric: [values]}``, ``scale`` included) and
  ``frames`` (their ids, aligned). A result file stores them as ``per_frame.<split>.frames`` /
  ``per_frame.<split>.<metric>`` (:func:`harness.pipeline.run.score_split`).
* :func:`frame_id` ``(meta, index)``: ``"<drive folder>/<frame:010d>"`` from a sample's ``meta``
  (``folder`` and ``frame``), e.g. ``2011_09_26/2011_09_26_drive_0040_sync/0000000012``; else
  ``"?/<index:010d>"``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.eval.metrics import MetricAccumulator, compute_metrics
from harness.eval.protocol import Protocol, flip_post_process, resize_prediction, valid_mask
from harness.pipeline import distributed

__all__ = ["SplitScore", "evaluate_split", "frame_id", "gt_size_groups", "score_frames"]

#: per-image metrics of some frames and those frames' ids
Scored = tuple[Mapping[str, Tensor], list[str]]


@dataclass
class SplitScore:
    """What one evaluation of a split gives (module docstring)."""

    summary: dict[str, Any]
    per_image: dict[str, list[float]]
    frames: list[str]


def frame_id(meta: Mapping[str, Any] | None, index: int) -> str:
    """``"<drive folder>/<frame:010d>"`` from a sample's ``meta``, else ``"?/<index:010d>"``."""
    if isinstance(meta, Mapping) and "folder" in meta and "frame" in meta:
        return f"{meta['folder']}/{int(meta['frame']):010d}"
    return f"?/{index:010d}"


def gt_size_groups(gts: list[np.ndarray]) -> list[list[int]]:
    """Positions scored together: all of them when every GT has one size, else one by one."""
    if all(g.shape == gts[0].shape for g in gts):
        return [list(range(len(gts)))]
    return [[i] for i in range(len(gts))]


def score_frames(score_batch: Callable[[list[int]], Iterable[Scored]], n: int, *, batch_size: int,
                 protocol: Protocol | None = None, progress: Callable[[int, int], None] | None = None) -> SplitScore:
    """Run ``score_batch(indices)`` (yielding ``(per-image metrics, frame ids)`` parts) over the
    frames ``0..n-1`` in batches of ``batch_size``, sharded over the ranks, and average.

    ``protocol`` is the accumulator's (scale statistics only under median scaling); ``None``
    reports them always. ``progress(done, n)`` is called after every batch."""
    per_batch: list[tuple[tuple[int, int], Scored]] = []
    for batch_no in distributed.shard(math.ceil(n / batch_size)):
        start = batch_no * batch_size
        idx = list(range(start, min(n, start + batch_size)))
        for part, scored in enumerate(score_batch(idx)):
            per_batch.append(((start, part), scored))
        if progress:
            progress(idx[-1] + 1, n)
    acc = MetricAccumulator(protocol)
    frames: list[str] = []
    for metrics, ids in distributed.gather_ordered(per_batch):
        acc.update(metrics)  # keeps the images with a valid GT pixel
        frames += [f for f, px in zip(ids, torch.as_tensor(metrics["valid_px"]).reshape(-1).tolist()) if px > 0]
    return SplitScore(acc.summary(), acc.per_image(), frames)


@torch.no_grad()
def evaluate_split(predict, dataset, protocol: Protocol, *, device: str = "cpu", batch_size: int = 8,
                   predict_batch=None, extra_metrics: Mapping[str, Callable] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> SplitScore:
    """Score ``predict(image) -> depth`` (or ``predict_batch(batch) -> depth``) on every sample of
    ``dataset`` (images at ``protocol.resolution``; native GT from ``dataset.eval_gt(i)``).

    With ``protocol.flip_pp`` the mirrored image is predicted too and the two disparities are
    fused (:func:`~harness.eval.protocol.flip_post_process`) before resizing. ``extra_metrics``
    (plugin metrics, ``fn(scaled_pred, gt, valid) -> B-vector``) see the prediction after the
    protocol's scaling and clamping."""

    def score_batch(idx: list[int]):
        samples = [dataset[i] for i in idx]
        ids = [frame_id(s.get("meta"), i) for s, i in zip(samples, idx)]
        batch = torch.utils.data.default_collate(samples)
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        if predict_batch is not None:
            depth = predict_batch(batch)
        else:
            img = batch["image"]
            if tuple(img.shape[-2:]) != tuple(protocol.resolution):
                raise ValueError(f"image size {tuple(img.shape[-2:])} does not match protocol.resolution "
                                 f"{protocol.resolution} (protocol {protocol.name!r})")
            depth = predict(img)
            if protocol.flip_pp:
                d_f = predict(torch.flip(img, dims=[-1]))
                depth = 1.0 / flip_post_process(1.0 / depth, 1.0 / d_f)
        depth = depth.float().cpu()
        gts = [dataset.eval_gt(i) for i in idx]
        for sel in gt_size_groups(gts):
            gt = torch.from_numpy(np.stack([gts[j] for j in sel])).float().unsqueeze(1)
            pred = resize_prediction(depth[sel], tuple(gt.shape[-2:]))
            metrics = compute_metrics(pred, gt, protocol)
            if extra_metrics:
                metrics.update(_extra_metrics(extra_metrics, pred, gt, metrics, protocol))
            yield metrics, [ids[j] for j in sel]

    return score_frames(score_batch, len(dataset), batch_size=batch_size, progress=progress)


def _extra_metrics(fns: Mapping[str, Callable], pred: Tensor, gt: Tensor, metrics: dict, protocol: Protocol) -> dict:
    """Plugin metrics on the prediction after the protocol's scaling and clamping."""
    scale = metrics["scale"].nan_to_num(1.0).view(-1, 1, 1, 1).to(pred.dtype)
    scaled = (pred * scale).clamp(protocol.min_depth, protocol.max_depth)
    valid = valid_mask(gt, protocol)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return {name: torch.as_tensor(fn(scaled, gt, valid), dtype=torch.float64).where(metrics["valid_px"] > 0, nan)
            for name, fn in fns.items()}
