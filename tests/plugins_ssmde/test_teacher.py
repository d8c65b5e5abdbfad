"""The self-distillation teacher: a frozen snapshot stays fixed in stage B, an EMA teacher moves."""
from __future__ import annotations

import pytest
import torch

from harness import StepContext
from stereodistill_plugins.ssmde import ema_update, snapshot_teacher

from .helpers import make, tiny_batch


def train_stage_b(teacher_update, steps=3):
    student, s = make(teacher_update=teacher_update, scales=(0,), pseudo=False)
    stage_b = s.stages()[1]
    teacher = s.on_stage_start(stage_b, student, None)
    start = {k: v.clone() for k, v in teacher.state_dict().items()}
    params = [p for p in student.parameters() if p.requires_grad] + list(s.pose_net.parameters())
    opt = torch.optim.SGD(params, lr=0.5)
    batch = tiny_batch()
    history = []
    for i in range(steps):
        s_out = s.student_forward(student, batch)
        t_out = s.teacher_forward(teacher, batch, s_out)
        loss = s.compute_loss(batch, s_out, t_out, StepContext(stage="B"))
        opt.zero_grad()
        loss.total.backward()
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        opt.step()
        s.on_step_end(i, student, teacher)
        history.append((before, {k: v.clone() for k, v in student.state_dict().items()}))
    return student, teacher, start, history


def test_snapshot_is_a_frozen_copy():
    student, _ = make()
    teacher = snapshot_teacher(student)
    assert teacher is not student and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), student.state_dict().values()))
    # the strategy never owns the teacher (its params must not reach the optimiser)
    _, s = make()
    t = s.on_stage_start(s.stages()[1], student, None)
    assert not any(p is q for p in s.parameters() for q in t.parameters())


def test_snapshot_teacher_does_not_change_during_stage_b():
    student, teacher, start, _ = train_stage_b("snapshot")
    end = teacher.state_dict()
    assert all(torch.equal(start[k], end[k]) for k in start)
    # ... while the student did move away from it
    moved = [k for k, v in student.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert moved


def test_ema_teacher_follows_the_student():
    student, teacher, start, history = train_stage_b("ema")
    end = teacher.state_dict()
    changed = [k for k in start if start[k].is_floating_point() and not torch.equal(start[k], end[k])]
    assert changed
    # every step is theta_T <- 0.999 theta_T + 0.001 theta_S (parameters and float buffers)
    before, student_after = history[-1]
    for k in changed:
        assert torch.allclose(end[k], 0.999 * before[k] + 0.001 * student_after[k], atol=1e-6), k


def test_ema_update_golden():
    a, b = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(3.0)
        a.running_mean.fill_(0.0)
        b.running_mean.fill_(10.0)
        b.num_batches_tracked.fill_(7)
    ema_update(a, b, 0.75)
    assert a.weight.tolist() == pytest.approx([1.5, 1.5])
    assert a.running_mean.tolist() == pytest.approx([2.5, 2.5])
    assert a.num_batches_tracked.item() == 7
    with pytest.raises(ValueError):
        ema_update(a, b, 1.5)
