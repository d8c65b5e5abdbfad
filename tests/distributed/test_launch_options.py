"""Device, mixed-precision and launcher plumbing (CPU-only checks of the CUDA paths)."""
from __future__ import annotations

import warnings

import pytest
import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper

from harness.cli import main as cli

from harness.pipeline import distributed, resources
from harness.errors import HarnessError
from harness.pipeline.train import DevicePreprocessor, amp_dtype, build_optim_wrapper

SCHEDULE = dict(optimizer=dict(type="AdamW", lr=1e-3), clip_grad=None)


@pytest.mark.parametrize("value, dtype", [(False, None), (None, None), (True, "bfloat16"), ("bf16", "bfloat16"),
                                          ("fp16", "float16")])
def test_amp_dtype(value, dtype):
    assert amp_dtype(value) == dtype


@pytest.mark.parametrize("value", ["fp8", "float16", 1])
def test_amp_dtype_rejects_unknown_values(value):
    with pytest.raises(HarnessError, match=r"schedule\.amp=.*'bf16' or 'fp16'"):
        amp_dtype(value)


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), (True, torch.bfloat16)])
def test_amp_selects_mmengine_amp_wrapper_on_cuda(monkeypatch, amp, dtype):
    monkeypatch.setattr(amp_optimizer_wrapper, "is_cuda_available", lambda: True)  # CPU machine: pretend
    model = torch.nn.Linear(2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loss scaler disables itself without CUDA
        wrapper = build_optim_wrapper(model, dict(SCHEDULE, amp=amp), 1e-3, None, "cuda:0")
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype == dtype


def test_no_amp_is_the_plain_wrapper():
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 1), dict(SCHEDULE, amp=False), 1e-3, None, "cuda")
    assert type(wrapper) is OptimWrapper


def test_amp_on_cpu_is_a_config_error():
    with pytest.raises(HarnessError, match=r"schedule\.amp='fp16': mixed precision needs --device cuda"):
        build_optim_wrapper(torch.nn.Linear(2, 1), dict(SCHEDULE, amp="fp16"), 1e-3, None, "cpu")


def test_runner_settings_single_process():
    s = distributed.runner_settings("none", "cpu")
    assert s["launcher"] == "none" and s["cfg_extra"] == {}
    assert s["env_cfg"]["dist_cfg"]["backend"] == "gloo"


def test_runner_settings_ddp_on_cpu_and_cuda():
    cpu = distributed.runner_settings("pytorch", "cpu")
    wrapper = cpu["cfg_extra"]["model_wrapper_cfg"]
    assert wrapper["type"] == "MMDistributedDataParallel" and wrapper["device_ids"] is None
    assert wrapper["find_unused_parameters"] is True and cpu["env_cfg"]["dist_cfg"]["backend"] == "gloo"
    cuda = distributed.runner_settings("pytorch", "cuda:1", {"find_unused_parameters": False, "sync_bn": "torch"})
    assert cuda["env_cfg"]["dist_cfg"]["backend"] == "nccl"
    assert "device_ids" not in cuda["cfg_extra"]["model_wrapper_cfg"]  # mmengine fills LOCAL_RANK
    assert cuda["cfg_extra"]["sync_bn"] == "torch"
    assert cuda["cfg_extra"]["model_wrapper_cfg"]["find_unused_parameters"] is False


def test_sync_bn_on_cpu_is_a_config_error():
    with pytest.raises(HarnessError, match=r"dist\.sync_bn.*--device cuda"):
        distributed.runner_settings("pytorch", "cpu", {"sync_bn": "torch"})


def test_launcher_pytorch_outside_torchrun(monkeypatch):
    for key in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(HarnessError, match=r"--launcher pytorch: RANK, WORLD_SIZE.*not set.*torchrun"):
        distributed.init("pytorch", "cpu")
    with pytest.raises(HarnessError, match="--launcher 'slurm'"):
        distributed.init("slurm", "cpu")
    distributed.init("none", "cpu")  # a no-op
    assert not distributed.is_distributed()


def _cli_error(capsys, monkeypatch, *argv):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # what --device cpu sets; restored afterwards
    code = cli.main(list(argv))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), lines
    return code, lines[0]


def test_cli_launcher_without_torchrun(capsys, monkeypatch, tmp_path):
    for key in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    code, line = _cli_error(capsys, monkeypatch, "run", "--method", "baseline", "--quick", "--device", "cpu",
                            "--launcher", "pytorch", "--results", str(tmp_path), "--work-dir", str(tmp_path / "w"))
    assert code == 2 and "--launcher pytorch" in line


def test_cli_amp_on_cpu_fails_before_training(capsys, monkeypatch, tmp_path):
    code, line = _cli_error(capsys, monkeypatch, "run", "--method", "baseline", "--quick", "--device", "cpu",
                            "--results", str(tmp_path), "--work-dir", str(tmp_path / "w"),
                            "--cfg-options", "schedule.amp=fp16")
    assert code == 2 and "schedule.amp='fp16'" in line and "--device cuda" in line
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_cuda_without_cuda_is_a_runtime_failure(capsys, monkeypatch, tmp_path):
    code, line = _cli_error(capsys, monkeypatch, "run", "--method", "baseline", "--quick", "--device", "cuda",
                            "--results", str(tmp_path), "--work-dir", str(tmp_path / "w"))
    assert code == 1 and "option --device cuda: no CUDA device" in line


def test_device_preprocessor_channels_last_and_non_blocking():
    pre = DevicePreprocessor(channels_last=True)
    assert pre._non_blocking is True
    out = pre({"image": torch.rand(2, 3, 8, 8), "mask": torch.ones(2, 1, 8, 8, dtype=torch.bool),
               "K": torch.eye(3).repeat(2, 1, 1)})
    assert out["image"].is_contiguous(memory_format=torch.channels_last)
    assert not out["image"].is_contiguous()
    assert out["mask"].is_contiguous() and out["K"].shape == (2, 3, 3)
    plain = DevicePreprocessor()({"image": torch.rand(2, 3, 8, 8)})
    assert plain["image"].is_contiguous()


def test_peak_memory_record():
    rec = resources.peak_memory("cpu")
    assert set(rec) == {"peak_rss_mb", "peak_rss_children_mb", "cuda_max_allocated_mb"}
    assert rec["peak_rss_mb"] > 10 and rec["cuda_max_allocated_mb"] is None
