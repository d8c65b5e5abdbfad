"""Two gloo processes with batch b each == one process with the combined batch 2b.

Each spawned rank joins a localhost process group, wraps the harness's ``DistillModel``
(student + strategy) in mmengine's ``MMDistributedDataParallel`` as ``harness run --launcher
pytorch`` does, takes its shard from mmengine's ``DefaultSampler`` and runs one backward pass
(DDP averages the gradients), then scores a 5-sample validation set (unequal shards; the
sampler pads rank 1 with a repeated sample) with the harness's ``DepthValMetric`` through
mmengine's ``Evaluator`` and with :func:`harness.pipeline.run.evaluate_split`. The single-process
reference does the same without a process group. Gradients must be allclose, metrics equal.

Two facts of data parallelism, not of the harness, shape the set-up: the loss is a mean of
per-image terms (a batch-level SILog, BTS form, is not a mean over images, so no data-parallel
split reproduces it exactly) and BatchNorm uses its running statistics (train-mode BN
normalises each rank's batch by itself; SyncBatchNorm, ``dist.sync_bn``, needs CUDA).
"""
from __future__ import annotations

import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.dataset import DefaultSampler
from mmengine.evaluator import Evaluator

from harness.pipeline import distributed
from harness.distill.losses import silog
from harness.distill.strategy import Strategy
from harness.eval.protocol import Protocol
from harness.models.student import MonoStudent
from harness.pipeline.train import DepthValMetric, DistillModel
from harness.types import LossDict, Stage, StepContext

B, H, W = 2, 64, 96  # per-rank batch; the single process takes 2 * B
N_VAL = 5


class PerImageSILog(Strategy):
    """SILog per image, averaged over the batch (a data-parallel-decomposable loss)."""

    eval_scale_policy = "none"

    def compute_loss(self, batch, s_out, t_out, ctx) -> LossDict:
        depth = s_out["clean"].depth[0]
        per_image = [silog(depth[i:i + 1], batch["depth_gt"][i:i + 1], batch["depth_gt_mask"][i:i + 1])
                     for i in range(depth.shape[0])]
        return LossDict.weighted({"gt": torch.stack(per_image).mean()}, {"gt": 1.0})


class Frames(torch.utils.data.Dataset):
    """Deterministic random frames; frame 3 has no valid GT (skipped by the metrics)."""

    split = "val"

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, H, W, generator=g)
        self.depth = 1.0 + 40.0 * torch.rand(n, 1, H, W, generator=g)
        if n > 3:
            self.depth[3] = 0.0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "depth_gt": self.depth[i], "depth_gt_mask": self.depth[i] > 0}

    def eval_gt(self, i):
        return self.depth[i, 0].numpy()


def _protocol() -> Protocol:
    return Protocol(name="ddp-test", dataset="synth", split="val", split_hash="x", gt_source="dense",
                    crop="none", scale="none", min_depth=1e-3, max_depth=80.0, resolution=(H, W))


def _model() -> DistillModel:
    torch.manual_seed(0)
    student = MonoStudent(num_layers=18, base_width=8)
    model = DistillModel(student, None, PerImageSILog(), Stage("student"), StepContext())
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def _collate(ds, indices):
    return torch.utils.data.default_collate([ds[i] for i in indices])


def _run(model, wrapped) -> dict:
    """One backward pass on this rank's shard, then the validation metrics."""
    train = Frames(2 * B, seed=1)
    batch = _collate(train, list(DefaultSampler(train, shuffle=False)))
    losses = wrapped(mode="loss", **batch)
    total, _ = model.parse_losses(losses)
    total.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    val = Frames(N_VAL, seed=2)
    evaluator = Evaluator(DepthValMetric(_protocol()))
    model.eval()
    with torch.no_grad():
        shard = list(DefaultSampler(val, shuffle=False, round_up=True))
        for start in range(0, len(shard), 2):
            data = _collate(val, shard[start:start + 2])
            evaluator.process(data_samples=model(mode="predict", **data), data_batch=data)
        val_metrics = evaluator.evaluate(len(val))
        from harness.pipeline.run import evaluate_split

        ctx = SimpleNamespace(cfg=SimpleNamespace(evaluate={"batch_size": 2}), progress=False, device="cpu",
                              extra_metrics={})
        test_metrics = evaluate_split(lambda x: model.strategy.predict(model.student, x), val, _protocol(), ctx)
    return {"grads": grads, "val": val_metrics, "test": test_metrics, "shard": shard}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world)
    try:
        from mmengine.registry import MODEL_WRAPPERS

        model = _model()
        # the wrapper harness run --launcher pytorch builds (through mmengine's Runner) on CPU
        settings = distributed.runner_settings("pytorch", "cpu", {"find_unused_parameters": True})
        wrapped = MODEL_WRAPPERS.build(settings["cfg_extra"]["model_wrapper_cfg"], default_args=dict(module=model))
        res = _run(model, wrapped)
        res["world"] = distributed.world_size()
        torch.save(res, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def one_process():
    model = _model()
    return _run(model, model)


@pytest.mark.slow
def test_ranks_see_disjoint_halves_of_the_batch(two_ranks, one_process):
    assert [r["world"] for r in two_ranks] == [2, 2]
    # DefaultSampler: strided shards; rank 1 of the 5-sample set is padded with sample 0
    assert two_ranks[0]["shard"] == [0, 2, 4] and two_ranks[1]["shard"] == [1, 3, 0]
    assert one_process["shard"] == list(range(N_VAL))


@pytest.mark.slow
def test_two_processes_give_the_gradients_of_the_combined_batch(two_ranks, one_process):
    ref = one_process["grads"]
    assert len(ref) > 20
    for rank in two_ranks:
        assert rank["grads"].keys() == ref.keys()
        for name, g in ref.items():
            torch.testing.assert_close(rank["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_two_processes_give_the_metrics_of_one(two_ranks, one_process):
    for rank in two_ranks:
        assert rank["val"] == pytest.approx(one_process["val"], rel=1e-6)
        assert rank["test"] == pytest.approx(one_process["test"], rel=1e-6)
    assert one_process["test"]["num_images"] == N_VAL - 1  # frame 3 has no valid GT
    assert one_process["test"]["skipped_images"] == 1


def test_val_metric_averages_over_samples_not_batches():
    """Per-sample entries: a mean over unequal batches would weight the lone sample double."""
    metric = DepthValMetric(_protocol())
    gt = torch.full((3, 1, 4, 4), 10.0)
    pred = gt.clone()
    pred[2] *= 2.0  # abs_rel 1.0 for the third image, 0 for the others
    metric.process({}, [{"pred": pred[i], "gt": gt[i]} for i in range(2)])
    metric.process({}, [{"pred": pred[2], "gt": gt[2]}, {"pred": pred[0], "gt": torch.zeros(1, 4, 4)}])
    assert len(metric.results) == 4 and metric.results[3] == {}
    assert metric.compute_metrics(metric.results)["abs_rel"] == pytest.approx(1.0 / 3.0)


def test_gather_ordered_and_shard_in_one_process():
    assert list(distributed.shard(3)) == [0, 1, 2]
    assert distributed.gather_ordered([((2, 0), "c"), ((0, 1), "b"), ((0, 0), "a")]) == ["a", "b", "c"]
    assert distributed.broadcast_object({"x": 1}) == {"x": 1}
    assert distributed.is_main_process() and not distributed.is_distributed()
    np.testing.assert_equal(distributed.world_size(), 1)
