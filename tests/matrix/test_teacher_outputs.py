"""Frozen-teacher outputs computed once: served outputs equal the live teacher's, flips included."""
import warnings

import numpy as np
import pytest
import torch

from harness.distill.flips import run_canonical
from harness.host.core import prepare_synth
from harness.host.manager import PluginHost
from harness.pipeline import teacher_outputs as to
from harness.types import DepthOutput, Needs

GEN = dict(frames=16, height=64, width=192, frames_per_drive=8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    root = prepare_synth({"generate": GEN}, cache)
    host = PluginHost()
    torch.manual_seed(0)
    teacher = host.catalog.build("teachers", "stereo", max_disp=32, base_width=8).eval()

    def dataset(**opts):
        return host.catalog.build("datasets", "synth", root=str(root), height=64, width=192, seed=3,
                                  need=frozenset(teacher.input_keys) | {"image", "meta"}, split="train", **opts)

    return teacher, dataset, cache


def batches(ds, n=2, bs=4):
    for start in range(0, min(len(ds), n * bs), bs):
        yield torch.utils.data.default_collate([ds[i] for i in range(start, min(len(ds), start + bs))])


@pytest.mark.parametrize("flip_mode, pair", [
    ("swap", True), pytest.param("mirror", True, marks=pytest.mark.slow), pytest.param("mirror", False, marks=pytest.mark.slow)])
def test_served_outputs_equal_the_live_teacher(setup, tmp_path, flip_mode, pair):
    teacher, dataset, _ = setup
    forward = (lambda t, b: run_canonical(t, b)) if pair else (lambda t, b: t(b))
    needs = Needs(depth=True, scales=(0, 1), features=frozenset({"dec_s8"}), aux=frozenset({"disp_s4"}))
    store = to.TeacherOutputStore(tmp_path / "store")
    live_set = dataset(flip_mode=flip_mode, flip_prob=0.5)
    cached = to.CachedTeacher(teacher, store)

    def to_teacher(batch):
        seen = []
        cached.forward = lambda x, s=None: seen.append(x) or DepthOutput()
        forward(cached, batch)
        del cached.forward
        return seen

    for kind in to.wanted_kinds(flip_mode, 0.5):
        store.compute(kind, teacher, dataset(**to.FLIP_KINDS[kind]), to_teacher, device="cpu", needs=needs)
    flipped = seen = 0
    for batch in batches(live_set, n=4):
        flipped += int(batch["meta"]["flipped"].sum())
        seen += len(batch["image"])
        with torch.no_grad():
            live = forward(teacher, batch)
            served = forward(cached, batch)
        torch.testing.assert_close(served.disp[0], live.disp[0], rtol=2e-3, atol=1e-3)
        torch.testing.assert_close(served.depth[0], live.depth[0], rtol=1e-5, atol=1e-5)  # float32
        torch.testing.assert_close(served.features["dec_s8"], live.features["dec_s8"], rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(served.aux["disp_s4"], live.aux["disp_s4"], rtol=2e-3, atol=1e-3)
        # only what is declared (and exists: the teacher has scale 0 only)
        assert set(served.disp) == {0} and set(served.features) == {"dec_s8"} and set(served.aux) == {"disp_s4"}
    assert cached.misses == 0 and cached.hits == seen and 0 < flipped < seen
    dtypes = {p.name: np.load(p, mmap_mode="r").dtype for p in (tmp_path / "store").rglob("*.npy")}
    assert dtypes["depth__0.npy"] == np.float32 and dtypes["disp__0.npy"] == np.float16


def test_unstored_view_runs_the_live_teacher(setup, tmp_path):
    teacher, dataset, _ = setup
    store = to.TeacherOutputStore(tmp_path / "store")
    cached = to.CachedTeacher(teacher, store)
    store.compute("none", teacher, dataset(flip_mode=None), lambda b: [b], device="cpu", needs=Needs(depth=True))
    batch = next(batches(dataset(flip_mode="mirror", flip_prob=1.0), n=1))  # mirrored views were not stored
    with torch.no_grad():
        out = cached(batch)
        torch.testing.assert_close(out.depth[0], teacher(batch).depth[0])
    assert cached.misses == len(batch["image"]) and cached.hits == 0


def test_a_batch_whose_images_do_not_match_its_meta_runs_live(setup, tmp_path):
    teacher, dataset, _ = setup
    store = to.TeacherOutputStore(tmp_path / "store")
    cached = to.CachedTeacher(teacher, store)
    store.compute("none", teacher, dataset(flip_mode=None), lambda b: [b], device="cpu", needs=Needs(depth=True))
    batch = next(batches(dataset(flip_mode=None), n=1))
    # a strategy's own teacher input (the right view as reference), meta left as it was
    swapped = dict(batch, image=torch.flip(batch["image_right"], dims=[-1]), image_right=torch.flip(batch["image"], dims=[-1]))
    with torch.no_grad():
        torch.testing.assert_close(cached(swapped).depth[0], teacher(swapped).depth[0])
        assert cached.misses == len(batch["image"])
        cached(batch)
    assert cached.hits == len(batch["image"])


def test_an_undeclared_output_comes_from_one_live_pass(setup, tmp_path):
    teacher, dataset, _ = setup
    store = to.TeacherOutputStore(tmp_path / "store")
    cached = to.CachedTeacher(teacher, store)
    store.compute("none", teacher, dataset(flip_mode=None), lambda b: [b], device="cpu", needs=Needs(depth=True))
    batch = next(batches(dataset(flip_mode=None), n=1))
    with torch.no_grad():
        out = cached(batch).map(lambda t: t * 2)  # mapped maps keep fetching
        assert "dec_s4" in out.features and "nope" not in out.features
        torch.testing.assert_close(out.features["dec_s4"], 2 * teacher(batch).features["dec_s4"])
    assert cached.undeclared == {"features/dec_s4"} and cached.hits == len(batch["image"])
    with pytest.raises(KeyError):
        out.features["nope"]


def test_computed_once_under_a_marker(setup, tmp_path):
    teacher, dataset, _ = setup
    store = to.TeacherOutputStore(tmp_path / "store")
    calls = []
    store.compute("none", teacher, dataset(flip_mode=None), lambda b: calls.append(1) or [b], device="cpu",
                  needs=Needs(depth=True))
    n = len(calls)
    store.compute("none", teacher, dataset(flip_mode=None), lambda b: calls.append(1) or [b], device="cpu",
                  needs=Needs(depth=True))
    assert n > 0 and len(calls) == n and store.has("none")


def test_wanted_kinds():
    assert to.wanted_kinds(None, 0.5) == ["none"]
    assert to.wanted_kinds("swap", 0.5) == ["none", "swap"]
    assert to.wanted_kinds("mirror", 1.0) == ["mirror"]
    assert to.wanted_kinds("mirror", 0.0) == ["none"]


@pytest.mark.parametrize("max_disp, warns", [(16, True), (64, False)])
def test_cached_sgbm_outputs_at_the_top_of_the_range_are_one_warning(setup, tmp_path, max_disp, warns):
    _, dataset, _ = setup
    sgbm = PluginHost().catalog.build("teachers", "sgbm", max_disp=max_disp)
    store = to.TeacherOutputStore(tmp_path / "store")
    store.compute("none", sgbm, dataset(flip_mode=None), lambda b: [b], device="cpu", needs=Needs(depth=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        share = to.warn_if_clipped(store, ["none"], sgbm, "sgbm", 192)
    lines = [str(w.message) for w in caught if "search range" in str(w.message)]
    assert (share > 0.02) == warns and len(lines) == int(warns)
    if warns:
        assert "teacher.max_disp" in lines[0] and "16 px" in lines[0]
