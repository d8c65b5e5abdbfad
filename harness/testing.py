"""Helpers for testing a plugin: a host with it loaded, a tiny batch, a quick run.

::

    from harness.testing import host_with, quick_run, tiny_batch

    host = host_with(my_plugin)                      # the built-in plugin + yours, nothing else
    strategy = host.catalog.build("methods", "mymethod")
    batch = tiny_batch(2, flipped=[True, False])     # every stereo batch key, a known scene
    result, path = quick_run(host, "mymethod", tmp_path)   # harness run --quick, in process

``tiny_batch`` is a consistent stereo scene, not noise: each sample is a textured fronto-parallel
plane at depth ``fx * baseline / d`` for an integer disparity ``d``, so ``image_right`` is
``image`` shifted by ``d`` pixels (``image(x) = image_right(x - d)``) and a photometric loss
with the true depth is zero away from the left border (where the right view cannot see).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from harness.config.loader import build_run_config
from harness.host import core
from harness.host.manager import PluginHost
from harness.pipeline.run import run

__all__ = ["host_with", "quick_run", "tiny_batch"]

BASELINE = 0.54


def host_with(*plugins: Any, autoload: bool = False) -> PluginHost:
    """A plugin host with the built-in plugin (``core``: synth, resnet, stereo, metrics) and
    ``plugins`` (modules or objects with hook implementations); installed plugins and
    ``$STEREODISTILL_PLUGINS`` are loaded too only with ``autoload=True``."""
    extra = list(plugins) if autoload else [core, *plugins]
    return PluginHost(autoload=autoload, extra_plugins=extra)


def tiny_batch(
    batch_size: int = 2,
    height: int = 32,
    width: int = 64,
    *,
    flipped: Sequence[bool] | None = None,
    swapped: Sequence[bool] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A collated batch as a stereo dataset gives it: ``image``, ``image_right`` (``B x 3 x H x W``
    in [0, 1]), ``K``, ``K_inv``, ``baseline`` (0.54 m), ``T_l2r``, ``depth_gt``,
    ``depth_gt_mask`` and ``meta`` (``index``, ``side``, ``flipped``, ``swapped``).

    ``flipped``/``swapped`` mirror samples the way a dataset's ``flip_mode`` does: mirrored only
    (``"mirror"``: the partner view then lies on the left, ``T_l2r`` x = +baseline) or mirrored
    and swapped (``"swap"``: a canonical pair again).
    """
    b = batch_size
    g = torch.Generator().manual_seed(seed)
    flipped = torch.tensor(list(flipped) if flipped is not None else [False] * b, dtype=torch.bool)
    swapped = torch.tensor(list(swapped) if swapped is not None else [False] * b, dtype=torch.bool)
    if flipped.shape != (b,) or swapped.shape != (b,) or bool((swapped & ~flipped).any()):
        raise ValueError("flipped/swapped need one value per sample, and a swapped sample is flipped")
    fx = 0.6 * width
    disp = torch.randint(2, max(3, width // 8), (b,), generator=g)
    # smooth texture: a low-resolution random image upsampled, so shifts are learnable
    coarse = torch.rand(b, 3, max(2, height // 4), max(2, width // 4) + 1, generator=g)
    wide = torch.nn.functional.interpolate(coarse, size=(height, width + int(disp.max())), mode="bilinear",
                                           align_corners=False)
    left = torch.stack([wide[i, :, :, :width] for i in range(b)])
    right = torch.stack([wide[i, :, :, int(disp[i]): int(disp[i]) + width] for i in range(b)])
    # left(x) = right(x - d): the right camera sees the plane d pixels further left
    depth = (fx * BASELINE / disp.float()).view(b, 1, 1, 1).expand(b, 1, height, width).clone()
    # a swapped sample targets the right camera: its depth is the same plane's
    image = torch.where(swapped.view(b, 1, 1, 1), right, left)
    partner = torch.where(swapped.view(b, 1, 1, 1), left, right)
    sel = flipped.view(b, 1, 1, 1)
    image, partner = torch.where(sel, image.flip(-1), image), torch.where(sel, partner.flip(-1), partner)
    K = torch.tensor([[fx, 0.0, (width - 1) / 2], [0.0, fx, (height - 1) / 2], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    T = torch.eye(4).expand(b, 4, 4).clone()
    T[:, 0, 3] = torch.where(flipped & ~swapped, BASELINE, -BASELINE)
    return {
        "image": image.contiguous(),
        "image_right": partner.contiguous(),
        "K": K,
        "K_inv": torch.linalg.inv(K),
        "baseline": torch.full((b,), BASELINE),
        "T_l2r": T,
        "depth_gt": depth,
        "depth_gt_mask": torch.ones(b, 1, height, width, dtype=torch.bool),
        "meta": {"index": torch.arange(b), "side": ["l"] * b, "flipped": flipped, "swapped": swapped},
    }


def quick_run(
    host: PluginHost,
    method: str,
    tmp_path: str | Path,
    *,
    dataset: str | None = None,
    cfg_options: Sequence[str] = (),
) -> tuple[dict, Path]:
    """``harness run --method METHOD [--dataset DATASET] --quick`` in process, with its work dir,
    results and caches under ``tmp_path``; returns the result dict and the result file's path."""
    tmp = Path(tmp_path)
    catalog = host.catalog
    cfg = build_run_config(
        method=method,
        method_config=catalog.get("methods", method).extra.get("config"),
        dataset_config=catalog.get("datasets", dataset).extra.get("config") if dataset else None,
        quick=True,
        cfg_options=[f"cache_dir={tmp / 'cache'}", "progress=False", *cfg_options],
    )
    if dataset:
        cfg.data["dataset"] = dataset
    (tmp / "results").mkdir(parents=True, exist_ok=True)
    return run(cfg, host, work_dir=tmp / "work", results_dir=tmp / "results")
