"""``planes``: stereo scenes of a ground plane, a back wall and a box front, rendered exactly.

Every sample is rendered on the fly from its index (no files): a rectified pair with baseline
0.54 m and the principal point at the image centre, dense metric depth of the target view, and
the textures fixed to the world, so the right view is exactly the left one's scene seen from
0.54 m to the right. Scenes depend only on ``(scene_seed, split, index)``; the run's ``seed``
only draws the flips, as the dataset contract asks (``docs/plugins.md``, "The dataset
contract").
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch.utils.data import Dataset

from harness import HarnessError
from harness.data.sample_ops import draw_flip

BASELINE = 0.54
FLIP_MODES = (None, "mirror", "swap")
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}


class PlanesDataset(Dataset):
    """Args: ``root`` (unused), ``split`` (train/val/test), ``height``/``width`` (the network
    input), ``need`` (the batch keys the run needs; None: all), ``seed`` (the run's: flips only),
    ``frames`` (samples in the split), ``flip_mode``/``flip_prob``, ``scene_seed``."""

    provides = frozenset({"image", "image_right", "K", "baseline", "depth_gt", "depth_gt_mask", "meta"})
    gt_source = "rendered"

    def __init__(self, root, split: str = "train", height: int = 64, width: int = 192, need=None, seed: int = 0,
                 frames: int = 32, flip_mode: str | None = None, flip_prob: float = 0.5, scene_seed: int = 0):
        if split not in _SPLIT_ID:
            raise HarnessError(f"planes: split {split!r} is not one of {sorted(_SPLIT_ID)}")
        if flip_mode not in FLIP_MODES:
            raise HarnessError(f"planes: flip_mode {flip_mode!r} is not one of {list(FLIP_MODES)}")
        self.split, self.frames = split, int(frames)
        self.size = (int(height), int(width))
        self.need = frozenset(need) if need is not None else self.provides
        self.seed, self.flip_mode, self.flip_prob = int(seed), flip_mode, float(flip_prob)
        self.scene_seed = int(scene_seed)
        self._epoch = 0
        self._mean: np.ndarray | None = None
        ident = {"split": split, "frames": self.frames, "scene_seed": self.scene_seed}
        self.split_hash = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        # what the teacher cache keys on: the training data, never the run's seed
        self.fingerprint = {"dataset": "planes", **ident, "size": list(self.size)}
        h, w = self.size
        f = 0.6 * w
        self.K = np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])

    def __len__(self) -> int:
        return self.frames

    def set_epoch(self, epoch: int) -> None:
        """The harness calls this every epoch: flips are drawn per (seed, index, epoch)."""
        self._epoch = int(epoch)

    # -- rendering -------------------------------------------------------------------------
    def _scene(self, index: int) -> dict:
        rng = np.random.default_rng([self.scene_seed, _SPLIT_ID[self.split], int(index)])
        x0 = rng.uniform(-3.0, 1.0)
        return dict(cam_h=rng.uniform(1.2, 1.8), wall=rng.uniform(15.0, 40.0), box_z=rng.uniform(4.0, 12.0),
                    box_x=(x0, x0 + rng.uniform(1.0, 3.0)), box_top=-rng.uniform(0.0, 1.5),
                    freq=rng.uniform(0.8, 2.5, size=(3, 2)), phase=rng.uniform(0, 2 * np.pi, size=(3, 2)))

    def _render(self, scene: dict, cam_x: float) -> tuple[np.ndarray, np.ndarray]:
        """``(3 x H x W`` image in [0, 1], ``H x W`` depth) of a camera at ``(cam_x, 0, 0)``."""
        h, w = self.size
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        rx, ry = (u - self.K[0, 2]) / self.K[0, 0], (v - self.K[1, 2]) / self.K[1, 1]  # ray (rx, ry, 1)
        t = np.full((h, w), scene["wall"])  # the back wall z = wall (depth = t since r_z = 1)
        with np.errstate(divide="ignore"):
            t_ground = np.where(ry > 0, scene["cam_h"] / ry, np.inf)  # the ground y = cam_h
        t = np.minimum(t, t_ground)
        bx, by = cam_x + rx * scene["box_z"], ry * scene["box_z"]  # the box front z = box_z
        on_box = (bx >= scene["box_x"][0]) & (bx <= scene["box_x"][1]) & (by >= scene["box_top"]) & (scene["box_z"] < t)
        t = np.where(on_box, scene["box_z"], t)
        X, Y, Z = cam_x + rx * t, ry * t, t
        # textures fixed to the world: (x, z) on the ground, (x, y) on the fronts
        b = np.where((t == t_ground) & ~on_box, Z, Y)
        img = np.stack([0.5 + 0.25 * np.sin(scene["freq"][c, 0] * X + scene["phase"][c, 0])
                        + 0.25 * np.sin(scene["freq"][c, 1] * b + scene["phase"][c, 1]) for c in range(3)])
        img = np.where(on_box[None], 1.0 - img, img)
        return img.astype(np.float32), Z.astype(np.float32)

    # -- samples ---------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        flip = draw_flip(self.flip_mode, self.flip_prob, self.seed, index, self._epoch)
        swap = flip and self.flip_mode == "swap"
        scene = self._scene(index)
        target_x, partner_x = (BASELINE, 0.0) if swap else (0.0, BASELINE)
        image, depth = self._render(scene, target_x)
        out: dict = {}
        if "image" in self.need:
            out["image"] = torch.from_numpy(np.ascontiguousarray(image[..., ::-1] if flip else image))
        if "image_right" in self.need:
            right, _ = self._render(scene, partner_x)
            out["image_right"] = torch.from_numpy(np.ascontiguousarray(right[..., ::-1] if flip else right))
        if "K" in self.need:
            out["K"] = torch.from_numpy(self.K.astype(np.float32))  # centred: mirroring keeps it
        if "baseline" in self.need:
            out["baseline"] = torch.tensor(BASELINE)
        if self.need & {"depth_gt", "depth_gt_mask"}:
            gt = torch.from_numpy(np.ascontiguousarray(depth[:, ::-1] if flip else depth))[None]
            out["depth_gt"], out["depth_gt_mask"] = gt, gt > 0
        out["meta"] = dict(dataset="planes", index=int(index), folder=f"planes/{self.split}", frame=int(index),
                           side="l", flipped=bool(flip), swapped=bool(swap))
        return out

    # -- evaluation ------------------------------------------------------------------------
    def eval_gt(self, index: int) -> np.ndarray:
        """``H x W`` float32 metric depth of sample ``index``'s left view (never flipped)."""
        return self._render(self._scene(index), 0.0)[1]

    def mean_depth_map(self) -> np.ndarray:
        """Per-pixel mean GT depth over (at most 32 of) the split's samples."""
        if self._mean is None:
            picks = np.unique(np.linspace(0, len(self) - 1, min(len(self), 32)).round().astype(int))
            self._mean = np.mean([self.eval_gt(int(i)) for i in picks], axis=0).astype(np.float32)
        return self._mean.copy()
