"""Atomic checkpoint saves and the choice of the checkpoint ``--resume`` continues from."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from harness.pipeline.checkpoint import CheckpointWarning, is_complete, resumable_checkpoint, save_atomically
from harness.errors import RunFailure


def _torch_save(out_dir, filename, state):
    torch.save(state, os.path.join(out_dir, filename))


def _ckpt(path, value):
    torch.save({"state_dict": {"w": torch.full((64,), float(value))}}, path)
    return path


def test_save_atomically_renames_a_complete_file(tmp_path):
    save_atomically(_torch_save, str(tmp_path), "epoch_1.pth", {"w": torch.ones(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pth"]
    assert is_complete(tmp_path / "epoch_1.pth")


def test_disk_full_during_a_checkpoint_keeps_the_old_file_and_no_temp(tmp_path):
    _ckpt(tmp_path / "epoch_1.pth", 1)
    before = (tmp_path / "epoch_1.pth").read_bytes()

    def half_then_enospc(out_dir, filename, state):
        with open(os.path.join(out_dir, filename), "wb") as f:
            f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RunFailure, match=r"cannot write checkpoint .*epoch_1\.pth: No space left on device") as err:
        save_atomically(half_then_enospc, str(tmp_path), "epoch_1.pth", None)
    assert err.value.exit_code == 1
    assert (tmp_path / "epoch_1.pth").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pth"]


def test_resume_takes_the_marked_checkpoint(tmp_path):
    _ckpt(tmp_path / "epoch_1.pth", 1)
    _ckpt(tmp_path / "epoch_2.pth", 2)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    assert resumable_checkpoint(tmp_path) == tmp_path / "epoch_2.pth"


def test_resume_skips_a_truncated_checkpoint_with_a_warning(tmp_path):
    _ckpt(tmp_path / "epoch_1.pth", 1)
    last = _ckpt(tmp_path / "epoch_2.pth", 2)
    last.write_bytes(last.read_bytes()[:100])
    (tmp_path / "last_checkpoint").write_text(str(last))
    with pytest.warns(CheckpointWarning, match="epoch_2.pth is truncated or unreadable"):
        assert resumable_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"


@pytest.mark.parametrize("marker", ["", "/nowhere/epoch_11.pth"])
def test_resume_without_a_usable_marker_takes_the_newest_epoch(tmp_path, marker):
    for e in (2, 10, 9):  # numeric, not lexical, order
        _ckpt(tmp_path / f"epoch_{e}.pth", e)
    (tmp_path / "last_checkpoint").write_text(marker)
    assert resumable_checkpoint(tmp_path) == tmp_path / "epoch_10.pth"


def test_resume_with_nothing_usable_starts_fresh_and_clears_stale_temps(tmp_path):
    assert resumable_checkpoint(tmp_path) is None
    (tmp_path / ".epoch_3.pth.1234.tmp").write_bytes(b"PK partial")
    (tmp_path / "epoch_1.pth").write_bytes(b"")
    with pytest.warns(CheckpointWarning):
        assert resumable_checkpoint(tmp_path) is None
    assert not (tmp_path / ".epoch_3.pth.1234.tmp").exists()


def test_a_truncated_checkpoint_is_reported_once(tmp_path):
    _ckpt(tmp_path / "epoch_1.pth", 1)
    last = _ckpt(tmp_path / "epoch_2.pth", 2)
    last.write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text("epoch_2.pth")
    with pytest.warns(CheckpointWarning) as caught:
        assert resumable_checkpoint(tmp_path).name == "epoch_1.pth"
    assert len(caught) == 1


def test_a_marker_from_a_moved_work_dir_resolves_inside_this_one(tmp_path):
    _ckpt(tmp_path / "epoch_1.pth", 1)
    _ckpt(tmp_path / "epoch_2.pth", 2)
    elsewhere = tmp_path / "old"
    elsewhere.mkdir()
    _ckpt(elsewhere / "epoch_1.pth", 1)
    (tmp_path / "last_checkpoint").write_text(str(elsewhere / "epoch_1.pth"))
    assert resumable_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"
