"""harness.distill.flips and the default Strategy.teacher_forward on mirrored samples."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from harness import DepthOutput, Strategy
from harness.data import synth
from harness.data.synth_dataset import SynthDataset
from harness.distill.flips import canonical, flip_where, mirror_back, mirror_intrinsics, partner_on_left, run_canonical
from harness.models.stereo_teacher import StereoTeacher

H, W = 64, 96


def meta(flipped, swapped, side=None):
    m = {"flipped": torch.tensor(flipped), "swapped": torch.tensor(swapped)}
    if side is not None:
        m["side"] = list(side)
    return m


def test_partner_side_truth_table():
    img = torch.zeros(6, 3, 2, 2)
    batch = {"image": img, "meta": meta([False, True, True, False, True, True],
                                        [False, False, True, False, False, True], "lllrrr")}
    # left camera: mirrored-only -> left; right camera: unflipped and mirrored-and-swapped -> left
    assert partner_on_left(batch).tolist() == [False, True, False, True, False, True]
    assert partner_on_left({"image": img}).tolist() == [False] * 6
    assert partner_on_left({"meta": meta([True], [False])}, 1).tolist() == [True]


def test_flip_where_and_intrinsics_are_their_own_inverse():
    x = torch.arange(12.0).view(2, 1, 2, 3)
    mask = torch.tensor([False, True])
    y = flip_where(x, mask)
    assert torch.equal(y[0], x[0]) and torch.equal(y[1], x[1].flip(-1))
    assert torch.equal(flip_where(y, mask), x)
    K = torch.tensor([[50.0, 0.5, 40.0], [0, 50, 30], [0, 0, 1]]).expand(2, 3, 3)
    K2 = mirror_intrinsics(K, mask, W)
    assert K2[1, 0, 2].item() == W - 1 - 40.0 and K2[1, 0, 1].item() == -0.5
    assert torch.equal(K2[0], K[0]) and torch.equal(mirror_intrinsics(K2, mask, W), K)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("flips_synth")
    synth.generate(root, frames=8, seed=3, height=H, width=W, frames_per_drive=4)
    return root


def samples(root, flip_mode):
    ds = SynthDataset(root, "train", height=H, width=W, flip_mode=flip_mode, flip_prob=1.0)
    return default_collate([ds[0], ds[1]])


def test_canonical_of_a_mirrored_batch_is_the_unflipped_batch(root):
    plain, mirrored = samples(root, None), samples(root, "mirror")
    canon, mask = canonical(mirrored)
    assert mask.tolist() == [True, True]
    for key in ("image", "image_right", "depth_gt", "depth_gt_mask", "semantic", "K", "K_inv", "T_l2r"):
        torch.testing.assert_close(canon[key], plain[key], atol=1e-5, rtol=0, msg=key)
    for s in (-1, 1):
        torch.testing.assert_close(canon["frames"][s], plain["frames"][s])
        torch.testing.assert_close(canon["T_t2s"][s], plain["T_t2s"][s], atol=1e-5, rtol=0)
    assert not partner_on_left(canon).any()  # canonical of canonical masks nothing
    assert mirrored["meta"]["flipped"].tolist() == [True, True]  # the input is left alone
    swapped = samples(root, "swap")
    canon, mask = canonical(swapped)
    assert mask.tolist() == [False, False] and canon["image"] is swapped["image"]


def test_mirror_back_maps_and_keeps_vectors():
    mask = torch.tensor([True, False])
    out = DepthOutput(depth={0: torch.arange(12.0).view(2, 1, 2, 3)}, aux={"scale": torch.tensor([1.0, 2.0])})
    back = mirror_back(out, mask)
    assert torch.equal(back.depth[0][0], out.depth[0][0].flip(-1)) and torch.equal(back.depth[0][1], out.depth[0][1])
    assert torch.equal(back.aux["scale"], out.aux["scale"])
    assert torch.equal(mirror_back(out.depth[0], mask), back.depth[0])


class MinimalMethod(Strategy):
    """The minimal method of docs/plugins.md: a frozen teacher, the default teacher_forward."""

    teacher_mode = "frozen"

    def compute_loss(self, batch, s_out, t_out, ctx):
        return self.weighted({})


class Recorder(torch.nn.Module):
    def __init__(self, teacher):
        super().__init__()
        self.teacher, self.seen = teacher, []
        self.input_keys = teacher.input_keys

    def forward(self, batch, student_out=None):
        self.seen.append(batch)
        return self.teacher(batch)


def test_default_teacher_forward_runs_a_frozen_stereo_teacher_on_canonical_pairs(root):
    torch.manual_seed(0)
    teacher = StereoTeacher(max_disp=16, base_width=8).eval()
    plain, mirrored = samples(root, None), samples(root, "mirror")
    rec = Recorder(teacher)
    out = MinimalMethod().teacher_forward(rec, mirrored, {})
    seen = rec.seen[0]
    # the teacher got the canonical (un-mirrored) pair with its own intrinsics
    torch.testing.assert_close(seen["image"], plain["image"])
    torch.testing.assert_close(seen["image_right"], plain["image_right"])
    torch.testing.assert_close(seen["K"], plain["K"])
    # ... and its output comes back in the mirrored frame of the batch, without gradients
    with torch.no_grad():
        ref = teacher(plain)
    torch.testing.assert_close(out.depth[0], ref.depth[0].flip(-1))
    torch.testing.assert_close(out.disp[0], ref.disp[0].flip(-1))
    assert not out.depth[0].requires_grad
    torch.testing.assert_close(run_canonical(teacher, mirrored).depth[0], out.depth[0])


def test_default_teacher_forward_leaves_mono_and_online_teachers_alone(root):
    mirrored = samples(root, "mirror")

    class Mono(torch.nn.Module):
        input_keys = frozenset({"image"})

        def forward(self, batch, student_out=None):
            return DepthOutput(depth={0: batch["image"][:, :1]})

    out = MinimalMethod().teacher_forward(Mono(), mirrored, {})
    assert torch.equal(out.depth[0], mirrored["image"][:, :1])
    online = MinimalMethod()
    online.teacher_mode = "online"
    teacher = StereoTeacher(max_disp=16, base_width=8)
    rec = Recorder(teacher)
    online.teacher_forward(rec, mirrored, {})
    assert rec.seen[0] is mirrored  # an online teacher is the strategy's to run
