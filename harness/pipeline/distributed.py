"""Multi-process training: launcher settings, rank queries and exact gathering of results.

``harness run --launcher pytorch`` under ``torchrun`` trains with mmengine's launcher: one
process per device, :class:`~mmengine.model.MMDistributedDataParallel`, gloo on CPU and NCCL on
CUDA, ``DefaultSampler`` shards every epoch over the ranks. Everything here also works in a
single process (``launcher="none"``): the queries answer rank 0 of 1 and the collectives are
no-ops, so callers need no special case.

Only rank 0 writes files (checkpoints through mmengine's hooks, the teacher cache, the result
file); the other ranks train and evaluate with it and wait at the collectives.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
from mmengine import dist as mmdist

from harness.errors import HarnessError

LAUNCHERS = ("none", "pytorch")
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def backend_for(device: str) -> str:
    """NCCL for CUDA devices, gloo otherwise."""
    return "nccl" if device.startswith("cuda") else "gloo"


def init(launcher: str, device: str) -> None:
    """Join the process group ``torchrun`` describes (idempotent; ``"none"`` does nothing)."""
    if launcher not in LAUNCHERS:
        raise HarnessError(f"option --launcher {launcher!r}: must be one of {', '.join(LAUNCHERS)}")
    if launcher == "none" or is_distributed():
        return
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise HarnessError(f"option --launcher pytorch: {', '.join(missing)} not set; start the run with "
                           "torchrun --nproc_per_node N -m harness.cli run ... --launcher pytorch")
    if device.startswith("cuda"):
        mmdist.init_dist("pytorch", backend="nccl")  # also makes cuda:LOCAL_RANK the current device
    else:  # mmengine's init_dist would call torch.cuda.set_device, which CPU builds lack
        torch.distributed.init_process_group(backend="gloo", init_method="env://")


def is_distributed() -> bool:
    return mmdist.is_distributed()


def rank() -> int:
    return mmdist.get_rank()


def world_size() -> int:
    return mmdist.get_world_size()


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        mmdist.barrier()


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not is_distributed():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. generates data into a shared cache), then the others."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def shard(n: int) -> range:
    """The indices ``0 .. n-1`` this rank handles (strided, so shards differ by at most one)."""
    return range(rank(), n, world_size())


def gather_ordered(items: list[tuple[Any, Any]]) -> list[Any]:
    """Every rank's ``(key, value)`` pairs, on every rank, as values sorted by key (keys unique)."""
    if not is_distributed():
        return [v for _, v in sorted(items, key=lambda kv: kv[0])]
    parts: list[list[tuple[Any, Any]]] = [[] for _ in range(world_size())]
    torch.distributed.all_gather_object(parts, items)
    return [v for _, v in sorted((kv for part in parts for kv in part), key=lambda kv: kv[0])]


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank; parameters are
    already equal under DDP. Afterwards every rank evaluates the network rank 0 saved."""
    if not is_distributed():
        return
    nccl = torch.distributed.get_backend() == "nccl"
    for buf in module.buffers():
        if nccl and not buf.is_cuda:  # NCCL moves CUDA tensors only
            staged = buf.cuda()
            torch.distributed.broadcast(staged, src=0)
            buf.copy_(staged.cpu())
        else:
            torch.distributed.broadcast(buf, src=0)


def runner_settings(launcher: str, device: str, dist_cfg: dict | None = None) -> dict[str, Any]:
    """``launcher``, ``env_cfg`` and ``cfg_extra`` (keys of the Runner's ``cfg``: the DDP wrapper
    settings ``model_wrapper_cfg`` and ``sync_bn``) of mmengine's ``Runner`` for ``launcher``.

    ``dist_cfg``: ``find_unused_parameters`` (default True: a strategy may leave parameters
    without gradient in a step, e.g. decoder scales it does not supervise; without it DDP
    silently skips the gradient all-reduce of their buckets and fails one step later) and ``sync_bn`` (``"torch"``: SyncBatchNorm, CUDA only; None keeps per-rank
    BatchNorm statistics).
    """
    dist_cfg = dict(dist_cfg or {})
    distributed = launcher != "none"
    extra: dict[str, Any] = {}
    if distributed:
        # BatchNorm statistics stay per rank during training (as mmengine's default wrapper);
        # sync_buffers() hands rank 0's to every rank before evaluation
        wrapper = dict(type="MMDistributedDataParallel", forward_sync_buffers=False,
                       find_unused_parameters=bool(dist_cfg.get("find_unused_parameters", True)))
        if not device.startswith("cuda"):
            wrapper["device_ids"] = None  # CPU modules take no device ids
        extra["model_wrapper_cfg"] = wrapper
        if dist_cfg.get("sync_bn"):
            if not device.startswith("cuda"):
                raise HarnessError("config dist.sync_bn: SyncBatchNorm needs --device cuda (use None on CPU)")
            extra["sync_bn"] = dist_cfg["sync_bn"]
    return dict(
        launcher=launcher,
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend=backend_for(device))),
        cfg_extra=extra,
    )
