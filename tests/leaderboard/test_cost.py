"""Cost of a model from its config: exact parameter and FLOP counts on a tiny model, peak
tensor memory, the on-disk cache and the leaderboard's cost provider."""
import json

import pytest
import torch
from torch import nn

from harness.report.cost import (count_flops, model_cost, peak_tensor_bytes, recorded_cost, result_cost,
                          result_cost_provider)
from harness.errors import HarnessError


class TinyStudent(nn.Module):
    def __init__(self, channels=4):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)

    def forward(self, image):
        return self.conv(image)


class TinyTeacher(nn.Module):
    input_keys = frozenset({"image", "image_right", "K", "baseline"})

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 2, bias=False)

    def forward(self, batch, student_out=None):
        assert batch["K"].shape == (1, 3, 3) and batch["baseline"].shape == (1,)
        x = torch.cat([batch["image"], batch["image_right"]], 1).mean(dim=(2, 3))
        return self.fc(x)


class FakeCatalog:
    def __init__(self):
        self.built = []

    def build(self, kind, name, **kwargs):
        self.built.append((kind, name))
        return {"tiny": TinyStudent, "tiny_teacher": TinyTeacher}[name](**kwargs)


def test_params_and_flops_are_exact(tmp_path):
    cat = FakeCatalog()
    c = model_cost("student", {"type": "tiny", "channels": 4}, (32, 64), cat, repeats=2)
    assert c["params"] == 3 * 4 * 9 + 4
    assert c["flops"] == 2 * 3 * 4 * 9 * 32 * 64  # one multiply-add = 2 FLOPs
    assert c["latency_ms"] > 0 and c["resolution"] == [32, 64]
    t = model_cost("teacher", {"type": "tiny_teacher"}, (32, 32), cat, repeats=1)
    assert t["params"] == 12 and t["flops"] == 2 * 6 * 2


def test_peak_memory_counts_live_tensors_only():
    class Forward:
        def __init__(self):
            self.x = torch.zeros(1000)  # 4000 bytes held

        def held_tensors(self):
            return [self.x]

        def __call__(self):
            a = self.x + 1  # +4000 -> 8000
            b = a * 2  # +4000 -> 12000 (peak)
            del a  # -4000
            c = b.view(10, 100)  # a view: no new storage
            return c + 0  # +4000 -> 12000 again

    assert peak_tensor_bytes(Forward()) == 12000


def test_cost_is_cached_on_disk(tmp_path):
    cat = FakeCatalog()
    first = model_cost("student", {"type": "tiny"}, (32, 32), cat, cache_dir=tmp_path, repeats=1)
    again = model_cost("student", {"type": "tiny"}, (32, 32), cat, cache_dir=tmp_path, repeats=1)
    assert again == first and len(cat.built) == 1  # the second call did not rebuild the model
    other = model_cost("student", {"type": "tiny"}, (64, 32), cat, cache_dir=tmp_path, repeats=1)
    assert other["flops"] == 2 * first["flops"] and len(cat.built) == 2  # resolution is in the key
    (entry,) = [p for p in (tmp_path / "cost").iterdir() if json.loads(p.read_text())["resolution"] == [32, 32]]
    entry.write_text("{damaged")
    assert model_cost("student", {"type": "tiny"}, (32, 32), cat, cache_dir=tmp_path, repeats=1)["params"] == first["params"]


def test_result_cost_reads_config_and_resolution():
    result = {"config": {"student": {"type": "tiny"}, "teacher": {"type": "tiny_teacher"}},
              "protocol": {"resolution": [32, 32]}}
    c = result_cost(result, FakeCatalog())
    assert c["student"]["params"] == 112 and c["teacher"]["params"] == 12
    assert result_cost({"config": {"student": {"type": "tiny"}}, "protocol": {"resolution": [32, 32]}},
                       FakeCatalog())["teacher"] is None
    with pytest.raises(HarnessError, match="resolution"):
        result_cost({"config": {"student": {"type": "tiny"}}, "protocol": {}}, FakeCatalog())
    with pytest.raises(HarnessError, match="student.type is missing"):
        result_cost({"config": {"student": {"channels": 3}}, "protocol": {"resolution": [32, 32]}}, FakeCatalog())


def test_a_run_records_none_when_cost_cannot_be_measured():
    bad = {"config": {"student": {"type": "unknown_model"}}, "protocol": {"resolution": [32, 32]}}
    assert recorded_cost(bad, FakeCatalog()) is None
    good = {"config": {"student": {"type": "tiny"}}, "protocol": {"resolution": [32, 32]}}
    assert recorded_cost(good, FakeCatalog())["student"]["params"] == 112


def test_provider_prefers_recorded_cost_and_warns_once_on_failure():
    warnings = []
    costs = result_cost_provider(FakeCatalog(), None, warnings.append)
    recorded = {"student": {"params": 5}}
    assert costs({"cost": recorded}) is recorded
    bad = {"_path": "r.json", "config": {"student": {"type": "unknown_model"}}, "protocol": {"resolution": [32, 32]}}
    assert costs(bad) is None and costs(dict(bad)) is None
    assert len(warnings) == 1 and warnings[0].startswith("r.json: cost not measured")


def test_count_flops_of_a_matmul():
    a, b = torch.ones(4, 5), torch.ones(5, 6)
    assert count_flops(lambda: a @ b) == 2 * 4 * 5 * 6


def test_one_latency_per_network_whatever_its_init(tmp_path):
    """Cost-neutral keys (the student's init_disp, clamps) are not in the cache key: the student of
    baseline and of selective (init_disp 0.03) is one network with one measured latency."""
    from harness.host.manager import PluginHost

    cat = PluginHost().catalog
    plain = model_cost("student", {"type": "resnet", "base_width": 8}, (64, 64), cat, cache_dir=tmp_path, repeats=1)
    init = model_cost("student", {"type": "resnet", "base_width": 8, "init_disp": 0.03, "max_depth": 80.0}, (64, 64),
                      cat, cache_dir=tmp_path, repeats=1)
    assert init == plain and len(list((tmp_path / "cost").glob("*.json"))) == 1
    wider = model_cost("student", {"type": "resnet", "base_width": 16}, (64, 64), cat, cache_dir=tmp_path, repeats=1)
    assert wider["params"] > plain["params"] and len(list((tmp_path / "cost").glob("*.json"))) == 2


def test_latency_is_a_torch_benchmark_median():
    from harness.report.cost import latency_ms

    calls = []
    ms = latency_ms(lambda: calls.append(1), repeats=3, min_run_time=0.01)
    assert ms >= 0 and len(calls) > 3  # warm-up + autoranged blocks
