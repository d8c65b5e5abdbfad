"""Precomputed teacher outputs: stored once as 16-bit PNGs, mirrored with the sample."""
import pytest
import torch

from harness.data import synth
from harness.data.synth_dataset import SynthDataset
from harness.errors import HarnessError
from harness.pipeline.precompute import WithPrecomputed, map_path, precompute_split
from harness.types import DepthOutput


class RampTeacher(torch.nn.Module):
    """Disparity = column index / 8 (left-right asymmetric, so a mirror is visible)."""

    calls = 0

    def forward(self, batch):
        RampTeacher.calls += 1
        b, _, h, w = batch["image"].shape
        disp = torch.arange(w, dtype=torch.float32).div(8).expand(b, 1, h, w)
        return DepthOutput(disp={0: disp}, depth={0: 10.0 / (disp + 1)}, aux={"confidence": torch.ones_like(disp)})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.generate(out, frames=8, height=64, width=96, frames_per_drive=4)
    return out


def test_precompute_writes_once_and_wrapper_mirrors(root, tmp_path):
    ds = SynthDataset(root, "train", need={"image", "meta"})
    store = tmp_path / "pre"
    RampTeacher.calls = 0
    spec = {"proxy_disp": "disp", "proxy_conf": "aux:confidence"}
    precompute_split(RampTeacher(), ds, spec, store, batch_size=2)
    calls = RampTeacher.calls
    assert calls >= 1 and (store / "train.done").is_file()
    assert map_path(store, "proxy_disp", ds[0]["meta"]).is_file()
    precompute_split(RampTeacher(), ds, spec, store, batch_size=2)
    assert RampTeacher.calls == calls  # done marker: not recomputed

    plain = WithPrecomputed(ds, {"proxy_disp": store, "proxy_conf": store})
    s = plain[0]
    assert s["proxy_disp"].shape == (1, 64, 96)
    expected = torch.arange(96, dtype=torch.float32).div(8)
    assert torch.allclose(s["proxy_disp"][0, 0], torch.round(expected * 256) / 256)
    assert torch.all(s["proxy_conf"] == 1)
    assert {"proxy_disp", "proxy_conf"} <= plain.provides and plain.split == "train"

    mirrored = WithPrecomputed(SynthDataset(root, "train", need={"image", "meta"}, flip_mode="mirror", flip_prob=1.0),
                               {"proxy_disp": store})
    assert torch.allclose(mirrored[0]["proxy_disp"], plain[0]["proxy_disp"].flip(-1))

    swapped = WithPrecomputed(SynthDataset(root, "train", need={"image", "meta"}, flip_mode="swap", flip_prob=1.0),
                              {"proxy_disp": store})
    with pytest.raises(HarnessError, match="left view only"):
        swapped[0]


def test_unknown_teacher_output_is_named(root, tmp_path):
    ds = SynthDataset(root, "val", need={"image", "meta"})
    with pytest.raises(HarnessError, match="no output 'aux:uncertainty'"):
        precompute_split(RampTeacher(), ds, {"x": "aux:uncertainty"}, tmp_path / "p")


def test_a_stereo_teacher_precomputes_on_canonical_pairs(root, tmp_path):
    """A right-camera split line's partner (the left camera) lies on the left: the stereo teacher
    gets the mirrored, canonical pair and its maps are mirrored back to the sample's frame."""
    lines = (root / "splits" / "train_files.txt").read_text().split("\n")
    split = tmp_path / "right_files.txt"
    split.write_text("\n".join(line[:-1] + "r" for line in lines if line.strip()) + "\n")
    need = {"image", "image_right", "meta"}
    ds = SynthDataset(root, str(split), need=need)
    seen = []

    class StereoRamp(RampTeacher):
        input_keys = frozenset(need)

        def forward(self, batch):
            seen.append(batch["image"])
            return super().forward(batch)

    precompute_split(StereoRamp(), ds, {"proxy_disp": "disp"}, tmp_path / "pre", batch_size=2)
    assert torch.equal(seen[0][0], ds[0]["image"].flip(-1))
    stored = WithPrecomputed(ds, {"proxy_disp": tmp_path / "pre"})[0]["proxy_disp"][0, 0]
    expected = torch.arange(96, dtype=torch.float32).div(8).flip(-1)
    assert torch.allclose(stored, torch.round(expected * 256) / 256)
