"""Where gradients flow: stop-gradients of the consistency and graph losses, the zero-initialised
fusion, the pose net, and a finite-difference check."""
import pytest
import torch

from harness import DepthOutput, StepContext
from harness.distill.geometry import invert_transform, pose_vec_to_mat
from stereodistill_plugins.structure.modules import IsoGraph
from stereodistill_plugins.structure.strategy import structure_consistency

from .conftest import build


def test_consistency_gradcheck_and_clean_side_stop_gradient():
    g = torch.Generator().manual_seed(0)
    aug = (torch.rand(2, 1, 3, 4, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    clean = (torch.rand(2, 1, 3, 4, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: structure_consistency(a, clean, 0.7), (aug,))
    structure_consistency(aug, clean).backward()
    assert clean.grad is None and aug.grad.abs().sum() > 0


def test_graph_relational_loss_moves_only_the_student_graph():
    torch.manual_seed(0)
    graph = IsoGraph(5, 6, dim=8)
    f_s, f_t = torch.randn(2, 5, 4, 6, requires_grad=True), torch.randn(2, 6, 4, 6, requires_grad=True)
    out = graph(f_s, f_t, (2, 3))
    out.rel.backward()
    for name in ("proj_t", "q_t", "k_t", "gcn"):
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in getattr(graph, name).parameters()), name
    assert f_t.grad is None or f_t.grad.abs().sum() == 0
    assert graph.q_s.weight.grad.abs().sum() > 0 and f_s.grad.abs().sum() > 0


@pytest.mark.parametrize("detach", [False, True])
def test_graph_node_loss_reaches_teacher_side_only_through_the_adjacency(detach):
    torch.manual_seed(0)
    graph = IsoGraph(5, 6, dim=8, detach_teacher_adjacency=detach)
    out = graph(torch.randn(2, 5, 4, 6), torch.randn(2, 6, 4, 6), (2, 3))
    out.node.backward()
    assert graph.gcn.weight.grad.abs().sum() > 0 and graph.proj_s.weight.grad.abs().sum() > 0
    teacher_side = [graph.q_t.weight.grad, graph.k_t.weight.grad, graph.proj_t.weight.grad]
    if detach:
        assert all(g is None for g in teacher_side)
    else:
        assert all(g is not None and g.abs().sum() > 0 for g in teacher_side)


def test_fusion_starts_as_identity_and_learns(models, batch):
    student, teacher = models
    st = build(student, teacher, loss_weights=dict(graph=0.0, dsc=0.0, ltd=0.0))  # fusion only
    student.train()
    s_out = st.student_forward(student, batch)
    assert set(s_out) == {"clean", "fused", "teacher", "graph"}
    assert torch.equal(s_out["fused"].depth[0], s_out["clean"].depth[0])  # zero-initialised 1x1 conv
    loss = st.compute_loss(batch, s_out, s_out["teacher"], StepContext())
    assert set(loss.terms) == {"photo", "smooth"}
    loss.total.backward()
    for conv in st.fuse.values():
        assert conv.weight.grad.abs().sum() > 0  # the fused pass's photometric term trains it


def test_photometric_term_trains_depth_and_pose(models, batch):
    student, teacher = models
    st = build(student, None, loss_weights=dict(dsc=0.0, ltd=0.0))
    s_out = st.student_forward(student, batch)
    assert set(s_out) == {"clean"}
    loss = st.compute_loss(batch, s_out, None, StepContext())
    loss.total.backward()
    assert all(p.grad is not None for p in st.pose_net.parameters())
    assert student.disp_heads["0"].conv.weight.grad.abs().sum() > 0


def test_pose_ordering_follows_monodepth2(batch):
    """The pose net sees (I_-1, I_t) and (I_t, I_+1); the earlier frame's motion is inverted."""
    from stereodistill_plugins.structure.strategy import StructureStrategy

    st = StructureStrategy(pose_width=4)
    calls = []
    aa = torch.tensor([[0.01, -0.02, 0.03]] * 8)
    tt = torch.tensor([[0.1, 0.2, -0.3]] * 8) * torch.arange(1, 9).view(8, 1)

    def fake(first, second):
        calls.append((first, second))
        return aa, tt

    st.pose_net.forward = fake
    poses = st.predict_poses(batch["image"], batch["frames"])
    first, second = calls[0]
    assert torch.equal(first[:4], batch["frames"][-1]) and torch.equal(second[:4], batch["image"])
    assert torch.equal(first[4:], batch["image"]) and torch.equal(second[4:], batch["frames"][1])
    assert torch.allclose(poses[1], pose_vec_to_mat(aa[4:], tt[4:]))
    assert torch.allclose(poses[-1], invert_transform(pose_vec_to_mat(aa[:4], tt[:4])), atol=1e-6)


def test_no_augmentation_pass_without_its_loss(models, batch):
    student, teacher = models
    st = build(student, teacher, loss_weights=dict(ltd=0.0), ssc_fuse=False)
    s_out = st.student_forward(student, batch)
    assert "fused" not in s_out and (s_out["aug"].aux["ltd_sample"] == 0).all()
    loss = st.compute_loss(batch, s_out, s_out["teacher"], StepContext())
    assert set(loss.terms) == {"photo", "smooth", "dsc", "graph"}
    st2 = build(student, teacher, loss_weights=dict(graph=0.0), ssc_fuse=False)
    assert st2.teacher_mode == "none" and "teacher" not in st2.student_forward(student, batch)


def test_split_mode_masks_the_configured_fraction(models, batch):
    student, teacher = models
    st = build(student, teacher, ltd_fraction=0.25)
    img = batch["image"]
    aug, is_masked = st.augment(img, st.generator(img.device))
    assert int(is_masked.sum()) == 1 and aug.shape == img.shape
    assert not torch.equal(aug, img)
    # seeded: the same perturb_seed gives the same augmented batch
    st2 = build(student, teacher, ltd_fraction=0.25)
    aug2, m2 = st2.augment(img, st2.generator(img.device))
    assert torch.equal(aug, aug2) and torch.equal(is_masked, m2)


def test_options_are_validated():
    from harness import HarnessError
    from stereodistill_plugins.structure.strategy import StructureStrategy

    with pytest.raises(HarnessError, match="dsc_ops"):
        StructureStrategy(dsc_ops=("hail",))
    with pytest.raises(HarnessError, match="loss_weights"):
        StructureStrategy(loss_weights=dict(depth=1.0))
    with pytest.raises(HarnessError, match="aug_mode"):
        StructureStrategy(aug_mode="both")
    with pytest.raises(HarnessError, match="ltd_fill"):
        StructureStrategy(ltd_fill="noise")
    st = StructureStrategy(graph_grid={"s16": [6, 10], "s32": [3, 5]})
    assert st.graph_grid == {16: (6, 10), 32: (3, 5)}
    assert DepthOutput  # noqa: the record type is what compute_loss consumes


def test_aug_warmup_skips_the_augmented_pass_early(models, batch):
    student, teacher = models
    st = build(student, teacher, aug_warmup=0.5, ssc_fuse=False)
    assert "aug" not in st.student_forward(student, batch)  # first step: no context yet
    ctx = StepContext(step=4, total_steps=10)
    s_out = st.student_forward(student, batch)
    loss = st.compute_loss(batch, s_out, s_out.get("teacher"), ctx)
    assert "dsc" not in loss.terms and "ltd" not in loss.terms
    ctx.step = 5  # the harness updates the shared context after every step
    s_out = st.student_forward(student, batch)
    assert "aug" in s_out
    assert {"dsc", "ltd"} <= set(st.compute_loss(batch, s_out, s_out["teacher"], ctx).terms)
