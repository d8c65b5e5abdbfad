"""harness.deploy.export: the student alone, checked against the eager model, with its report."""
import sys

import pytest
import torch

from harness.deploy import export
from harness.errors import HarnessError
from harness.models.student import MonoStudent

SIZE = (64, 96)


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return MonoStudent(base_width=8).eval()


def test_torchscript_export_equals_the_eager_student(student, tmp_path):
    out = tmp_path / "student.pt"
    report = export.export_student(student, "torchscript", out, SIZE, runs=2)
    assert out.is_file() and report["bytes"] == out.stat().st_size
    assert report["parameters"] == sum(p.numel() for p in student.parameters())
    assert report["max_abs_diff"] <= export.ATOL and report["eager_ms"] > 0 and report["exported_ms"] > 0
    loaded = torch.jit.load(str(out))
    x = torch.rand(2, 3, *SIZE)  # another sample and batch size than the traced one
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student.predict(x), rtol=1e-4, atol=1e-4)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_torch_export_program_equals_the_eager_student_without_warnings(student, tmp_path):
    import warnings

    out = tmp_path / "student.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the non-deprecated path
        warnings.simplefilter("error", FutureWarning)
        report = export.export_student(student, "export", out, SIZE, runs=2)
    assert report["format"] == "export" and report["max_abs_diff"] <= export.ATOL and out.is_file()
    loaded = torch.export.load(str(out)).module()
    x = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student.predict(x), rtol=1e-4, atol=1e-4)


def test_a_differing_export_fails_and_writes_nothing(student, tmp_path, monkeypatch):
    def off_by_a_metre(model, sample, tmp):
        tmp.write_bytes(b"x")
        return lambda x: model(x).detach().numpy() + 1.0

    monkeypatch.setattr(export, "_torchscript", off_by_a_metre)
    with pytest.raises(export.ExportError, match="differs from the student's by up to 1 m") as err:
        export.export_student(student, "torchscript", tmp_path / "s.pt", SIZE, runs=1)
    assert err.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_the_package_is_one_clear_error(student, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(export.ExportError, match=r"'onnx' package is not installed .*stereodistill\[onnx\]"):
        export.export_student(student, "onnx", tmp_path / "s.onnx", SIZE, runs=1)
    assert list(tmp_path.iterdir()) == []


def test_onnx_export_equals_the_eager_student(student, tmp_path):
    pytest.importorskip("onnx")
    report = export.export_student(student, "onnx", tmp_path / "s.onnx", SIZE, runs=1)
    assert report["max_abs_diff"] <= export.ATOL and (tmp_path / "s.onnx").is_file()


def test_bad_arguments(student, tmp_path):
    with pytest.raises(HarnessError, match="--format tflite: must be one of torchscript, onnx"):
        export.export_student(student, "tflite", tmp_path / "s", SIZE)
    with pytest.raises(HarnessError, match="is a folder"):
        export.export_student(student, "torchscript", tmp_path, SIZE)
    with pytest.raises(HarnessError, match="does not exist"):
        export.export_student(student, "torchscript", tmp_path / "no" / "s.pt", SIZE)


def test_median_latency_counts_runs():
    calls = []
    assert export.median_latency_ms(lambda: calls.append(1), 5) >= 0
    assert len(calls) == 6  # one warm-up
