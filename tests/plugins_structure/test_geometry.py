"""The video photometric loss on real synthetic frames: with ground-truth depth and the
ground-truth target->source motion (used in tests only, never in training) the warped sources
reproduce the target, so the loss is far below that of a wrong pose or a wrong depth."""
import pytest
import torch

from harness import DepthOutput, HarnessError
from harness.data import synth
from harness.data.synth_dataset import SynthDataset
from stereodistill_plugins.structure.strategy import StructureStrategy


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth.generate(root, frames=8, seed=2, height=64, width=96, frames_per_drive=8)
    ds = SynthDataset(root, "train", need={"image", "frames", "K", "T_t2s", "depth_gt"})
    return torch.utils.data.default_collate([ds[0], ds[1]])


def test_gt_depth_and_gt_pose_reconstruct_the_target(sample):
    st = StructureStrategy(scales=(0,), automask=False)
    img, frames, K = sample["image"], sample["frames"], sample["K"]
    gt = sample["depth_gt"]
    depth = torch.where(gt > 0, gt, torch.full_like(gt, 200.0))  # sky: far away
    view = DepthOutput(depth={0: depth})
    good = st.view_photometric(img, frames, sample["T_t2s"], K, view, None)
    eye = {s: torch.eye(4).expand(2, 4, 4) for s in (-1, 1)}
    no_motion = st.view_photometric(img, frames, eye, K, view, None)
    swapped = st.view_photometric(img, frames, {-1: sample["T_t2s"][1], 1: sample["T_t2s"][-1]}, K, view, None)
    wrong_depth = st.view_photometric(img, frames, sample["T_t2s"], K, DepthOutput(depth={0: depth * 0.5}), None)
    assert good < 0.5 * no_motion and good < 0.5 * swapped and good < 0.7 * wrong_depth
    assert good.item() < 0.05


@pytest.mark.parametrize("baseline_norm", [None, 0.1])
@pytest.mark.parametrize("flip", [None, "mirror"])
def test_stereo_source_uses_T_l2r_with_its_mirror_convention(tmp_path_factory, flip, baseline_norm):
    """The right view warps with ``T_l2r`` (metric) or with its translation rescaled to the
    normalised baseline, where the depth that reconstructs the target is ``GT * b_norm / b``."""
    root = tmp_path_factory.mktemp("synth_lr")
    synth.generate(root, frames=8, seed=3, height=64, width=96, frames_per_drive=8)
    ds = SynthDataset(root, "train", need={"image", "image_right", "T_l2r", "baseline", "frames", "K", "depth_gt",
                                           "meta"}, flip_mode=flip, flip_prob=1.0)
    b = torch.utils.data.default_collate([ds[0], ds[1]])
    st = StructureStrategy(scales=(0,), stereo_source=True, baseline_norm=baseline_norm)
    assert {"image_right", "T_l2r", "baseline"} <= st.required_batch_keys
    frames, fixed = st.sources(b)
    scale = 1.0 if baseline_norm is None else baseline_norm / 0.54
    assert set(frames) == {-1, 1, "r"}
    assert torch.allclose(fixed["r"][:, :3, :3], b["T_l2r"][:, :3, :3])
    assert torch.allclose(fixed["r"][:, :3, 3], b["T_l2r"][:, :3, 3] * scale)
    gt = b["depth_gt"]
    depth = torch.where(gt > 0, gt, torch.full_like(gt, 200.0)) * scale
    right_only = {"r": frames["r"]}
    good = st.view_photometric(b["image"], right_only, fixed, b["K"], DepthOutput(depth={0: depth}), None)
    flipped_sign = {"r": fixed["r"].clone()}
    flipped_sign["r"][:, 0, 3] *= -1
    bad = st.view_photometric(b["image"], right_only, flipped_sign, b["K"], DepthOutput(depth={0: depth}), None)
    metric_depth = st.view_photometric(b["image"], right_only, fixed, b["K"],
                                       DepthOutput(depth={0: depth / scale * 2.0}), None)
    assert good < 0.5 * bad and good < metric_depth


def test_stereo_factor_at_evaluation_and_baseline_check(tmp_path_factory):
    st = StructureStrategy(stereo_source=True, eval_scale="none")
    student = type("S", (), {"predict": lambda self, x: torch.ones(1, 1, 2, 2)})()
    assert torch.allclose(st.predict(student, torch.zeros(1, 3, 2, 2)), torch.full((1, 1, 2, 2), 5.4))
    assert torch.equal(StructureStrategy(stereo_source=True, baseline_norm=None).predict(student, None),
                       torch.ones(1, 1, 2, 2))
    batch = {"image": torch.zeros(1, 3, 2, 2), "frames": {}, "image_right": torch.zeros(1, 3, 2, 2),
             "K": torch.eye(3).unsqueeze(0), "baseline": torch.tensor([0.3]), "T_l2r": torch.eye(4).unsqueeze(0)}
    with pytest.raises(HarnessError, match="eval_baseline"):
        st.sources(batch)
    with pytest.raises(HarnessError, match="baseline_norm"):
        StructureStrategy(stereo_source=True, baseline_norm=0)
