"""mmengine checkpoints of the harness load on torch >= 2.6 (weights_only), others stay safe."""
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

from harness.pipeline import checkpoint


def _pickled_checkpoint(path):
    # mmengine checkpoints carry non-tensor objects (the message hub's HistoryBuffers, ...)
    torch.save({"meta": {"hub": HistoryBuffer([1.0], [1])}, "state_dict": {"w": torch.ones(2)}}, path)


def test_trusted_harness_checkpoint_loads_through_mmengine(tmp_path):
    checkpoint.install()
    checkpoint.trust_directory(tmp_path / "work")
    (tmp_path / "work").mkdir()
    p = tmp_path / "work" / "epoch_1.pth"
    _pickled_checkpoint(p)
    ckpt = _load_checkpoint(str(p), map_location="cpu")
    assert ckpt["meta"]["hub"].current() == 1.0 and torch.equal(ckpt["state_dict"]["w"], torch.ones(2))


def test_untrusted_file_keeps_torch_safe_default(tmp_path):
    checkpoint.install()
    p = tmp_path / "elsewhere.pth"
    _pickled_checkpoint(p)
    with pytest.raises(Exception, match="weights_only|Unsupported global|WeightsUnpickler"):
        _load_checkpoint(str(p), map_location="cpu")
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pth")  # tensors only: fine either way
    assert torch.equal(_load_checkpoint(str(tmp_path / "plain.pth"))["w"], torch.zeros(1))


def test_trust_is_by_directory_not_prefix(tmp_path):
    checkpoint.trust_directory(tmp_path / "work")
    assert checkpoint.is_trusted(tmp_path / "work" / "a" / "b.pth")
    assert not checkpoint.is_trusted(tmp_path / "work-other" / "b.pth")
