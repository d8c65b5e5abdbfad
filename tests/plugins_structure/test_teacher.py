"""The semantic teacher: outputs, loss, checkpoint, and that it only ever sees clean images and
never receives a gradient during student training."""
import pytest
import torch
import torch.nn.functional as F

from harness import StepContext
from stereodistill_plugins.structure.modules import SemanticTeacher

from .conftest import build


def test_teacher_outputs_features_and_logits_but_no_depth():
    t = SemanticTeacher(num_classes=7, base_width=8, feat_channels=16).eval()
    x = torch.rand(2, 3, 64, 96)
    out = t({"image": x})  # the image alone is enough
    assert out.depth == {} and out.disp == {}
    assert t.outputs == frozenset({"semantic_features"}) and t.mode == "frozen"
    assert {"image", "semantic"} <= set(t.input_keys)
    for spec in t.feature_specs():
        f = out.features[spec.name]
        assert f.shape == (2, spec.channels, 64 // spec.stride, 96 // spec.stride)
    assert {s.name for s in t.feature_specs()} == {"sem_s8", "sem_s16", "sem_s32"}
    assert out.aux["semantic_logits"].shape == (2, 7, 64, 96)


def test_teacher_forward_ignores_labels():
    t = SemanticTeacher(base_width=8, feat_channels=16).eval()
    x = torch.rand(1, 3, 64, 64)
    a = t({"image": x}).aux["semantic_logits"]
    b = t({"image": x, "semantic": torch.zeros(1, 64, 64, dtype=torch.long)}).aux["semantic_logits"]
    assert torch.equal(a, b)


def test_self_loss_is_cross_entropy_with_ignored_255():
    t = SemanticTeacher(num_classes=3, base_width=8, feat_channels=16)
    logits = torch.randn(1, 3, 2, 2)
    labels = torch.tensor([[[0, 2], [255, 1]]])
    loss = t.self_loss({"semantic": labels}, type("O", (), {"aux": {"semantic_logits": logits}})())["ce"]
    logp = F.log_softmax(logits, dim=1)[0]
    expected = -(logp[0, 0, 0] + logp[2, 0, 1] + logp[1, 1, 1]) / 3  # the 255 pixel is ignored
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    none = t.self_loss({"semantic": torch.full((1, 2, 2), 255)}, type("O", (), {"aux": {"semantic_logits": logits}})())
    assert none["ce"].item() == 0.0


def test_local_checkpoint_is_loaded_and_not_retrained(tmp_path):
    src = SemanticTeacher(base_width=8, feat_channels=16)
    path = tmp_path / "sem.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    t = SemanticTeacher(base_width=8, feat_channels=16, checkpoint=str(path))
    assert t.trainable is False and SemanticTeacher.trainable is True
    for (k, a), (_, b) in zip(src.state_dict().items(), t.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(FileNotFoundError):
        SemanticTeacher(checkpoint=str(tmp_path / "missing.pth"))


def test_teacher_sees_only_clean_images_and_gets_no_gradient(models, batch):
    student, teacher = models
    teacher.requires_grad_(True)  # even if its parameters were trainable, nothing may reach them
    seen = []
    teacher.register_forward_pre_hook(lambda mod, args: seen.append((dict(args[0]), mod.training)))
    st = build(student, teacher)  # split mode: clean, fused and one augmented pass
    s_out = st.student_forward(student, batch)
    t_out = st.teacher_forward(teacher, batch, s_out)
    loss = st.compute_loss(batch, s_out, t_out, StepContext())
    loss.total.backward()

    assert set(loss.terms) == {"photo", "smooth", "dsc", "ltd", "graph"}
    assert len(seen) == 1, "the teacher runs once per step"
    inputs, training = seen[0]
    assert set(inputs) == {"image"} and torch.equal(inputs["image"], batch["image"])
    assert training is False
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(f.requires_grad for f in t_out.features.values())
    # the student and the graph modules did get gradients from the graph term
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is not None for p in st.graphs.parameters())


def test_teacher_only_sees_clean_images_in_separate_mode_and_at_inference(models, batch):
    student, teacher = models
    seen = []
    teacher.register_forward_pre_hook(lambda mod, args: seen.append(args[0]["image"]))
    st = build(student, teacher, aug_mode="separate", ssc_fuse_at_inference=True)
    s_out = st.student_forward(student, batch)
    assert {"clean", "fused", "perturbed", "masked", "teacher", "graph"} <= set(s_out)
    depth = st.predict(student, batch["image"])
    assert depth.shape == (4, 1, 64, 96)
    assert len(seen) == 2 and all(torch.equal(x, batch["image"]) for x in seen)
