"""Inference cost of a student or teacher, measured from its recorded config.

Everything comes from what a result file already records (``config.student`` /
``config.teacher`` and ``protocol.resolution``), so old results get cost columns too. The model
is rebuilt through the public registries with random weights (cost does not depend on them):

- ``params``: number of parameters (buffers excluded);
- ``flops``: floating-point operations of one forward pass at batch 1 and the eval resolution,
  counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, one
  multiply-add = 2 FLOPs; element-wise ops are not counted);
- ``latency_ms`` (CPU) and ``latency_gpu_ms`` (when CUDA is available): the median time of one
  forward pass at batch 1 under ``torch.inference_mode``, measured by ``torch.utils.benchmark``
  (``blocked_autorange`` after one warm-up pass, at the process's thread count; CUDA synchronised);
- ``peak_mem_mb``: on CUDA ``torch.cuda.max_memory_allocated`` during one forward pass; on CPU the
  peak of live tensor memory during one forward pass (parameters, buffers, inputs and every
  intermediate tensor while it is alive), tracked op by op with a ``TorchDispatchMode`` that
  sees each new tensor storage and a finalizer that sees it freed. It is exact tensor bytes, not
  allocator or process RSS, so it does not depend on what else runs in the process.

Teachers run on a synthetic batch with the keys they declare (``input_keys``): images, KITTI-like
intrinsics scaled to the input, a 0.54 m baseline, zero labels. Results are cached as JSON under
``<cache>/cost/<key>.json``, keyed by a hash of model config + resolution + device + torch
version, so the leaderboard does not remeasure. Config keys a model class lists in
``cost_neutral_keys`` (initial values, output clamps: e.g. the student's ``init_disp``) are left
out of the key, so one network has one latency whichever method configured it.
"""
from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from harness.errors import HarnessError
from harness.report.results import atomic_write_text

COST_VERSION = 2  # 2: torch.utils.benchmark latencies, cost-neutral keys out of the cache key
KINDS = {"student": "students", "teacher": "teachers"}


def cost_key(model_cfg: dict, resolution, device: str, neutral=frozenset()) -> str:
    model = {k: v for k, v in model_cfg.items() if k not in neutral}
    blob = json.dumps({"version": COST_VERSION, "model": model, "resolution": list(resolution),
                       "device": device, "torch": torch.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_cost(role: str, model_cfg: dict, resolution, catalog, *, cache_dir: Path | None = None,
               repeats: int = 5) -> dict[str, Any]:
    """Cost of the ``role`` (``student`` or ``teacher``) model ``model_cfg`` at ``resolution``
    (``(H, W)``); read from / written to ``cache_dir/cost`` when ``cache_dir`` is given."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = None
    if cache_dir is not None:
        neutral = _cost_neutral_keys(catalog, role, model_cfg.get("type"))
        path = Path(cache_dir) / "cost" / f"{cost_key(model_cfg, resolution, device, neutral)}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                pass  # a damaged cache entry is measured again and rewritten
    spec = dict(model_cfg)
    name = spec.pop("type", None)
    if name is None:
        raise HarnessError(f"config {role}.type is missing: cannot measure its cost")
    model = catalog.build(KINDS[role], name, **spec).eval()
    h, w = (int(v) for v in resolution)
    forward = _Forward(role, model, h, w)
    out: dict[str, Any] = {"type": name, "resolution": [h, w], "params": count_params(model),
                           "flops": count_flops(forward)}
    out["latency_ms"] = latency_ms(forward, repeats)
    out["peak_mem_mb"] = round(peak_tensor_bytes(forward) / 2**20, 3)
    if device == "cuda":
        model.to("cuda")
        gpu_forward = _Forward(role, model, h, w, device="cuda")
        out["latency_gpu_ms"] = latency_ms(gpu_forward, repeats)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.inference_mode():
            gpu_forward()
        torch.cuda.synchronize()
        out["peak_mem_gpu_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 3)
        out["gpu"] = torch.cuda.get_device_name()
        model.to("cpu")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out


def result_cost(result: dict[str, Any], catalog, *, cache_dir: Path | None = None) -> dict[str, Any]:
    """``{"student": {...}, "teacher": {...} | None}`` for one result (or the run config of one:
    ``{"config": ..., "protocol": {"resolution": ...}}``)."""
    cfg = result.get("config") or {}
    resolution = (result.get("protocol") or {}).get("resolution") or (cfg.get("data") or {}).get("input_size")
    if not resolution:
        raise HarnessError("result records no eval resolution (protocol.resolution): cannot measure its cost")
    out: dict[str, Any] = {}
    for role in KINDS:
        model_cfg = cfg.get(role)
        out[role] = model_cost(role, model_cfg, resolution, catalog, cache_dir=cache_dir) if model_cfg else None
    return out


def recorded_cost(result: dict[str, Any], catalog, *, cache_dir: Path | None = None) -> dict[str, Any] | None:
    """:func:`result_cost` for ``harness run`` to record: a model whose cost cannot be measured
    must not fail a finished run, so any error gives None (the leaderboard then retries and
    warns)."""
    try:
        return result_cost(result, catalog, cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 - plugin models may fail in any way on a synthetic batch
        return None


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(forward) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        forward()
    return int(counter.get_total_flops())


def latency_ms(forward, repeats: int = 5, min_run_time: float = 0.2) -> float:
    """Median time of one ``forward()`` in milliseconds, by ``torch.utils.benchmark``: one warm-up
    pass, then ``blocked_autorange`` for at least ``min_run_time`` seconds and ``repeats`` blocks,
    at this process's thread count (CUDA work is synchronised by the timer)."""
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="forward()", globals={"forward": forward}, num_threads=torch.get_num_threads())
    with torch.inference_mode():
        forward()
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
        while len(measurement.times) < max(1, repeats):
            measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return round(measurement.median * 1000.0, 3)


def _cost_neutral_keys(catalog, role: str, name) -> frozenset:
    """The ``cost_neutral_keys`` of the registered class (none when it cannot be looked up)."""
    try:
        cls = catalog.get(KINDS[role], name).obj
    except Exception:  # noqa: BLE001 - an unknown type fails later, when it is built
        return frozenset()
    return frozenset(getattr(cls, "cost_neutral_keys", ()))


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages created inside the mode while they are alive."""

    def __init__(self, held: list[torch.Tensor]):
        super().__init__()
        storages = {id(t.untyped_storage()): t.untyped_storage().nbytes() for t in held}
        self.live = self.peak = sum(storages.values())
        self._seen: set[int] = set(storages)  # already counted; never freed during the pass

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = id(storage)
                if key in self._seen:
                    continue  # a view or in-place result of a storage already counted
                self._seen.add(key)
                self.live += storage.nbytes()
                weakref.finalize(storage, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out


def peak_tensor_bytes(forward) -> int:
    """Peak live tensor bytes of one CPU forward pass, parameters, buffers and inputs included."""
    mode = _LiveTensorBytes(forward.held_tensors())
    with torch.inference_mode(), mode:
        out = forward()
        del out
    return int(mode.peak)


class _Forward:
    """One batch-1 forward pass of a student (``model(image)``) or teacher (``model(batch)``)."""

    def __init__(self, role: str, model: torch.nn.Module, h: int, w: int, device: str = "cpu"):
        self.model, self.role = model, role
        gen = torch.Generator().manual_seed(0)
        image = torch.rand(1, 3, h, w, generator=gen).to(device)
        if role == "student":
            self.inputs: Any = image
            return
        keys = set(getattr(model, "input_keys", {"image"}))
        batch: dict[str, Any] = {"image": image}
        if "image_right" in keys:
            batch["image_right"] = torch.rand(1, 3, h, w, generator=gen).to(device)
        if "K" in keys or "K_inv" in keys:
            K = torch.tensor([[0.58 * w, 0.0, 0.5 * w], [0.0, 1.92 * h, 0.5 * h], [0.0, 0.0, 1.0]], device=device)
            batch["K"], batch["K_inv"] = K[None], torch.linalg.inv(K)[None]
        if "baseline" in keys:
            batch["baseline"] = torch.tensor([0.54], device=device)
        if "semantic" in keys:
            batch["semantic"] = torch.zeros(1, h, w, dtype=torch.long, device=device)
        self.inputs = batch

    def __call__(self):
        return self.model(self.inputs)

    def held_tensors(self) -> list[torch.Tensor]:
        inputs = [self.inputs] if torch.is_tensor(self.inputs) else [v for v in self.inputs.values() if torch.is_tensor(v)]
        return [*self.model.parameters(), *self.model.buffers(), *inputs]


def result_cost_provider(catalog, cache_dir: Path | None, warn) -> Callable[[dict], dict | None]:
    """``costs(result)`` for the leaderboard: the result's recorded ``cost`` when it has one,
    otherwise measured (and cached) from its config; a model that cannot be built or run is
    reported once through ``warn(message)`` and its cells stay missing."""
    memo: dict[str, Any] = {}

    def costs(result: dict[str, Any]) -> dict[str, Any] | None:
        if isinstance(result.get("cost"), dict):  # recorded by `harness run`
            return result["cost"]
        key = json.dumps([result.get("config", {}).get("student"), result.get("config", {}).get("teacher"),
                          (result.get("protocol") or {}).get("resolution")], sort_keys=True, default=str)
        if key not in memo:
            try:
                memo[key] = result_cost(result, catalog, cache_dir=cache_dir)
            except Exception as exc:  # noqa: BLE001 - a plugin model may fail in any way; the table still renders
                warn(f"{result.get('_path', result.get('method'))}: cost not measured ({type(exc).__name__}: {exc})")
                memo[key] = None
        return memo[key]

    return costs
