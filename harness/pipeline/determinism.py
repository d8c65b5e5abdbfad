"""Seeding that makes a run a function of (config, seed), also across ``--resume``.

* :func:`seed_everything` seeds Python's, NumPy's and torch's global generators. ``run()``
  calls it with :func:`derived_seed` of the run seed before each model is built, so the
  student's initial weights (and a strategy's own modules) do not depend on whether the
  teacher came from the cache or was trained in this process.
* :class:`EpochSeedHook` reseeds the global generators at the start of every training epoch
  from ``(seed, stage, epoch)``. mmengine checkpoints hold no RNG state; with this hook, epoch
  ``k`` draws the same dropout masks and random augmentations whether the process started at
  epoch 0 or resumed at epoch ``k``. (Sampler order already depends only on seed and epoch:
  mmengine's ``DefaultSampler`` + ``DistSamplerSeedHook``; the harness datasets draw flips from
  ``default_rng([seed, index, epoch])``.)
* :func:`set_deterministic` switches torch to deterministic algorithms (config key
  ``deterministic``); on CPU it costs little. On CUDA it also needs
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before the process starts (see docs/reliability.md).
"""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch
from mmengine.hooks import Hook


def derived_seed(seed: int, *keys: object) -> int:
    """A 31-bit seed that depends only on ``seed`` and ``keys`` (stable across processes)."""
    blob = ":".join(str(k) for k in (int(seed), *keys)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def set_deterministic(enabled: bool) -> None:
    """Deterministic torch kernels (raise on ops that have none) and no cuDNN autotuning."""
    torch.use_deterministic_algorithms(bool(enabled), warn_only=False)
    torch.backends.cudnn.deterministic = bool(enabled)
    if enabled:
        torch.backends.cudnn.benchmark = False
        if torch.cuda.is_available():
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class EpochSeedHook(Hook):
    """Before every training epoch: reseed the global generators from ``(seed, stage, epoch)`` and
    tell the training set its epoch (``set_epoch``: per-sample flips/augmentations are drawn from
    (seed, index, epoch)), for every stage, the teacher's included."""

    priority = "VERY_HIGH"

    def __init__(self, seed: int, stage: str):
        self.seed = int(seed)
        self.stage = stage

    def before_train_epoch(self, runner) -> None:
        seed_everything(derived_seed(self.seed, self.stage, "epoch", runner.epoch))
        dataset = runner.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(runner.epoch)
