"""``git_commit``: the checkout's HEAD, ``-dirty`` for changed code but not for rewritten results."""
import shutil
import subprocess

import pytest

from harness.report.results import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_results_do_not_make_the_checkout_dirty(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "r.json").write_text("{}")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    head = git_commit(tmp_path / "pkg")
    assert head is not None and len(head) == 40
    (tmp_path / "results" / "r.json").write_text('{"a": 1}')
    assert git_commit(tmp_path / "pkg") == head
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "pkg") == head + "-dirty"


def test_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None
