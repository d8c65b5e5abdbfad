"""Frozen-teacher outputs computed once and served from memory-mapped files.

A frozen teacher gives the same output for the same input every time, so running it on every
step of every epoch of every seed is wasted work. Before training, the harness runs it once on
every training sample of each flip kind the training set produces (``none``, ``mirror``,
``swap``; :func:`wanted_kinds`), on the very input the strategy's ``teacher_forward`` hands it
(stereo teachers get canonical pairs, :func:`harness.distill.flips.run_canonical`), and stores
the outputs the strategy declares in ``teacher_needs`` (disparity and depth at its scales,
named features, aux maps such as confidence) per *view* of that input: ``same``/``other`` (the
camera it targets is its split line's or the other one) and ``-mirrored``. Under

    <cache>/teacher_outputs/<teacher>-<teacher cache key>/<dataset fingerprint>/<split>/<view>/

each output is one ``.npy`` (``N x C x h x w``, row = dataset index, memory-mapped), with
``filled.npy`` (rows computed), ``probe.npy`` (a fingerprint of each row's input images) and
``meta.json``; ``<split>/<kind>.done`` is written when a kind is complete, all under one file
lock, so concurrent runs compute it once. Depth is stored as float32 (it may exceed float16's
range where the disparity is small), every other map as float16 (relative rounding <= 2^-11).

:class:`CachedTeacher` stands in for the teacher during training: each sample's rows are read
from its view. A batch with a row not stored, or whose images do not match the stored
fingerprint (a strategy that builds its own teacher input without changing ``meta``), runs the
live teacher (``misses``); an output the strategy reads without declaring it comes from one
live pass of the batch (listed in ``undeclared``). Online, EMA and snapshot teachers are never
cached.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from harness.errors import HarnessError, HarnessWarning
from harness.report.results import atomic_write_text
from harness.types import DepthOutput, Needs

FORMAT = 1
OTHER = {"l": "r", "r": "l"}
#: dataset options giving every sample one flip kind: as is, mirrored, mirrored + views swapped
FLIP_KINDS = {"none": dict(flip_mode=None), "mirror": dict(flip_mode="mirror", flip_prob=1.0),
              "swap": dict(flip_mode="swap", flip_prob=1.0)}


def wanted_kinds(flip_mode: str | None, flip_prob: float) -> list[str]:
    """The flip kinds a training set with ``flip_mode``/``flip_prob`` produces."""
    if flip_mode is None or flip_prob <= 0:
        return ["none"]
    return [flip_mode] if flip_prob >= 1 else ["none", flip_mode]


def output_keys(needs: Needs, sample: DepthOutput) -> list[str]:
    """``disp/<s>``, ``depth/<s>``, ``features/<name>``, ``aux/<name>`` the strategy needs (and the
    teacher has)."""
    keys = [f"disp/{s}" for s in needs.scales if s in sample.disp]
    if needs.depth or not keys:
        keys += [f"depth/{s}" for s in needs.scales if s in sample.depth]
    keys += [f"features/{n}" for n in sorted(needs.features) if n in sample.features]
    keys += [f"aux/{n}" for n in sorted(needs.aux) if n in sample.aux]
    return keys


def _get(out: DepthOutput, key: str) -> torch.Tensor:
    kind, name = key.split("/", 1)
    part = getattr(out, kind)
    return part[int(name)] if kind in ("disp", "depth") else part[name]


def _file(key: str) -> str:
    return key.replace("/", "__") + ".npy"


def probe(batch: dict[str, Any]) -> torch.Tensor:
    """``B x 12`` float64 fingerprint of the input images (per channel: sum, and sum weighted by
    the column), so a batch whose images do not match its ``meta`` (a strategy that builds its
    own teacher input) is never served a stored output: mirrored images differ too."""
    parts = []
    for key in ("image", "image_right"):
        img = batch.get(key)
        if torch.is_tensor(img):
            img = img.detach().double()
            ramp = torch.linspace(0.0, 1.0, img.shape[-1], dtype=torch.float64, device=img.device)
            parts += [img.sum(dim=(-2, -1)), (img * ramp).sum(dim=(-2, -1))]
    return torch.cat(parts, dim=1).cpu() if parts else torch.zeros(int(batch["image"].shape[0]), 0)


def views_of(meta: dict[str, Any], b: int) -> list[str] | None:
    """Per sample, the view the teacher receives: ``same``/``other`` (the camera the sample
    targets is its split line's, or the other one) and ``-mirrored``; None without ``meta``."""
    if meta.get("side") is None:
        return None

    def bools(key):
        v = meta.get(key)
        if v is None:
            return [False] * b
        return [bool(x) for x in (v.tolist() if torch.is_tensor(v) else v)]

    return [("other" if w else "same") + ("-mirrored" if f else "") for f, w in zip(bools("flipped"), bools("swapped"))]


class TeacherOutputStore:
    """The stored outputs of one (teacher, dataset fingerprint, split)."""

    def __init__(self, root: Path):
        self.root = root
        self._views: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]] = {}  # read
        self._open: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]] = {}  # being written
        self._probe_width = 0

    def has(self, kind: str) -> bool:
        return (self.root / f"{kind}.done").is_file()

    def compute(self, kind: str, teacher: nn.Module, dataset, to_teacher: Callable, *, device: str,
                needs: Needs, batch_size: int = 8, progress=None) -> None:
        """Run the teacher once on every sample of ``dataset`` (all of flip ``kind``) on each input
        ``to_teacher(batch)`` lists, filling the rows of each view not stored yet."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / "store.lock")):
            if self.has(kind):
                return
            n = len(dataset)
            teacher.to(device).eval()
            clipped = [0, 0]  # valid disparities at the top of a search range, all valid ones
            with torch.no_grad():
                for start in range(0, n, batch_size):
                    idx = list(range(start, min(n, start + batch_size)))
                    batch = torch.utils.data.default_collate([dataset[i] for i in idx])
                    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
                    for x in to_teacher(batch):
                        views = views_of(x.get("meta") or {}, len(idx))
                        todo = [j for j, v in enumerate(views or []) if not self._filled(v, idx[j])]
                        if todo:
                            out = teacher(x)
                            count_clipped(teacher, out, clipped)
                            for view in sorted({views[j] for j in todo}):
                                sel = [j for j in todo if views[j] == view]
                                self._write(view, n, [idx[j] for j in sel], x, out, sel, needs)
                    if progress:
                        progress(idx[-1] + 1, n)
            for _meta, arrays, filled in self._open.values():
                for arr in arrays.values():
                    arr.flush()
                filled.flush()
            self._open.clear()
            self._views.clear()
            share = clipped[0] / clipped[1] if clipped[1] else 0.0
            (self.root / f"{kind}.done").write_text(f"ok\nclipped_share {share:.6f}\n")

    def clipped_share(self, kind: str) -> float:
        """Share of the stored valid disparities of ``kind`` at the top of the teacher's search
        range (0 for a teacher without one, or a store written before this was recorded)."""
        for line in (self.root / f"{kind}.done").read_text().splitlines():
            if line.startswith("clipped_share "):
                return float(line.split()[1])
        return 0.0

    def _writable(self, view: str, n: int, out: DepthOutput, needs: Needs):
        if view not in self._open:
            base = self.root / view
            if (base / "meta.json").is_file():
                meta = json.loads((base / "meta.json").read_text())
                arrays = {k: np.load(base / _file(k), mmap_mode="r+") for k in [*meta["outputs"], "probe"]}
                filled = np.load(base / "filled.npy", mmap_mode="r+")
            else:
                base.mkdir(parents=True, exist_ok=True)
                meta = {"format": FORMAT, "frames": n, "disp_units": out.disp_units,
                        "depth_kind": out.depth_kind, "outputs": {},
                        "available": {kind: sorted(str(k) for k in getattr(out, kind))
                                      for kind in ("disp", "depth", "features", "aux")}}
                arrays = {}
                for key in output_keys(needs, out):
                    t = _get(out, key)
                    dtype = np.float32 if key.startswith("depth/") else np.float16
                    arrays[key] = np.lib.format.open_memmap(base / _file(key), mode="w+", dtype=dtype,
                                                            shape=(n, *t.shape[1:]))
                    meta["outputs"][key] = {"shape": [n, *t.shape[1:]], "dtype": np.dtype(dtype).name}
                filled = np.lib.format.open_memmap(base / "filled.npy", mode="w+", dtype=np.bool_, shape=(n,))
                arrays["probe"] = np.lib.format.open_memmap(base / _file("probe"), mode="w+", dtype=np.float64,
                                                            shape=(n, self._probe_width))
                meta["probe"] = self._probe_width
                atomic_write_text(base / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
            self._open[view] = (meta, arrays, filled)
        return self._open[view]

    def _filled(self, view: str, row: int) -> bool:
        if view in self._open:
            return bool(self._open[view][2][row])
        path = self.root / view / "filled.npy"
        return path.is_file() and bool(np.load(path, mmap_mode="r")[row])

    def _write(self, view: str, n: int, rows: list[int], x: dict[str, Any], out: DepthOutput, sel: list[int],
               needs: Needs) -> None:
        fingerprint = probe(x)[sel].numpy()
        self._probe_width = fingerprint.shape[1]
        _meta, arrays, filled = self._writable(view, n, out, needs)
        for key, arr in arrays.items():
            arr[rows] = fingerprint if key == "probe" else _get(out, key)[sel].float().cpu().numpy()
        filled[rows] = True

    def view(self, view: str):
        """``(meta, arrays, filled)`` of a stored view (memory-mapped, read-only), or None."""
        if view not in self._views:
            base = self.root / view
            if not (base / "meta.json").is_file():
                return None
            meta = json.loads((base / "meta.json").read_text())
            arrays = {k: np.load(base / _file(k), mmap_mode="r") for k in [*meta["outputs"], "probe"]}
            self._views[view] = (meta, arrays, np.load(base / "filled.npy", mmap_mode="r"))
        return self._views[view]


class FetchedOnUse(dict):
    """A map of stored outputs whose other entries (outputs the strategy reads but did not
    declare in ``teacher_needs``) come from one live teacher pass on first use."""

    def __init__(self, data: dict, fetch: Callable[[Any], torch.Tensor], available: set):
        super().__init__(data)
        self._fetch = fetch
        self._available = set(available) | set(data)

    def __missing__(self, key):
        if key not in self._available:
            raise KeyError(key)
        value = self._fetch(key)
        self[key] = value
        return value

    def __contains__(self, key) -> bool:
        return key in self._available

    def get(self, key, default=None):
        return self[key] if key in self else default

    def mapped(self, fn) -> "FetchedOnUse":
        return FetchedOnUse({k: fn(v) for k, v in self.items()}, lambda key: fn(self[key]), self._available)


class CachedTeacher(nn.Module):
    """The frozen teacher during training: outputs read from the store (see the module docstring).

    Attributes other than ``forward`` (``input_keys``, ``feature_specs``, ...) are the teacher's."""

    def __init__(self, teacher: nn.Module, store: TeacherOutputStore):
        super().__init__()
        self.live = teacher
        self.store = store
        self.hits = 0
        self.misses = 0
        self.undeclared: set[str] = set()  # outputs read that the strategy's teacher_needs do not list

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("live"), name)

    def forward(self, batch: dict[str, Any], student_out=None) -> DepthOutput:
        b = int(batch["image"].shape[0])
        out = self._served(batch, b)
        if out is None:
            self.misses += b
            return self.live(batch) if student_out is None else self.live(batch, student_out)
        self.hits += b
        return out

    def _served(self, batch: dict[str, Any], b: int) -> DepthOutput | None:
        meta = batch.get("meta") or {}
        index = meta.get("index")
        views = views_of(meta, b) if index is not None else None
        if views is None:
            return None
        rows = np.asarray(index.tolist() if torch.is_tensor(index) else index, dtype=np.int64)
        stored = {v: self.store.view(v) for v in set(views)}
        if any(s is None or not bool(np.all(s[2][rows[[j for j, w in enumerate(views) if w == v]]]))
               for v, s in stored.items()):
            return None
        fingerprint = probe(batch).numpy()
        for v, (_meta, arrays, _filled) in stored.items():
            sel = [j for j, w in enumerate(views) if w == v]
            if not np.allclose(arrays["probe"][rows[sel]], fingerprint[sel], rtol=1e-6, atol=1e-3):
                return None  # the images are not the ones stored under this meta
        device = batch["image"].device
        first = next(iter(stored.values()))[0]
        maps: dict[str, dict] = {"disp": {}, "depth": {}, "features": {}, "aux": {}}
        for key, spec in first["outputs"].items():
            kind, name = key.split("/", 1)
            maps[kind][int(name) if kind in ("disp", "depth") else name] = torch.empty(
                (b, *spec["shape"][1:]), dtype=torch.float32)
        for view, (_meta, arrays, _filled) in stored.items():
            sel = np.asarray([j for j, w in enumerate(views) if w == view])
            order = np.argsort(rows[sel])  # memory-mapped reads in file order
            for key in first["outputs"]:
                kind, name = key.split("/", 1)
                maps[kind][int(name) if kind in ("disp", "depth") else name][torch.from_numpy(sel[order])] = \
                    torch.from_numpy(np.asarray(arrays[key][rows[sel][order]], dtype=np.float32))
        live: list[DepthOutput] = []

        def fetcher(kind):
            def fetch(name):
                if not live:
                    with torch.no_grad():
                        live.append(self.live(batch))
                self.undeclared.add(f"{kind}/{name}")
                return getattr(live[0], kind)[name]
            return fetch

        available = first.get("available", {})
        return DepthOutput(**{kind: FetchedOnUse({k: v.to(device) for k, v in m.items()}, fetcher(kind),
                                                 {int(a) if kind in ("disp", "depth") else a
                                                  for a in available.get(kind, [])})
                              for kind, m in maps.items()},
                           disp_units=first["disp_units"], depth_kind=first["depth_kind"])


def count_clipped(teacher: nn.Module, out: DepthOutput, counts: list[int]) -> None:
    """Add to ``counts`` the valid disparities of ``out`` at the top of the teacher's search range
    and all valid ones; only teachers with a fixed range (``search_range``, SGBM) count."""
    if not hasattr(teacher, "search_range") or not out.disp or 0 not in out.disp:
        return
    from harness.models.sgbm import top_of_range_counts

    disp = out.disp[0]
    conf = (out.aux or {}).get("confidence")
    valid = conf > 0 if conf is not None else torch.ones_like(disp, dtype=torch.bool)
    hits, n = top_of_range_counts(disp.cpu().numpy(), valid.cpu().numpy(), teacher.search_range(int(disp.shape[-1])))
    counts[0] += hits
    counts[1] += n


def warn_if_clipped(store: TeacherOutputStore, kinds: list[str], teacher: nn.Module, name: str, width: int) -> float:
    """One warning line naming ``teacher.max_disp`` when the stored outputs of a fixed-range
    teacher (SGBM) sit at the top of its search range often enough to clip nearer surfaces."""
    from harness.models.sgbm import CLIPPED_SHARE

    share = max((store.clipped_share(k) for k in kinds), default=0.0)
    if share > CLIPPED_SHARE and hasattr(teacher, "search_range"):
        warnings.warn(f"teacher {name}: {100 * share:.1f} % of the valid disparities of its cached outputs are at "
                      f"the top of the search range ({teacher.search_range(width)} px), so nearer surfaces are "
                      f"clipped; set a larger teacher.max_disp (harness predict: --max-disp)", HarnessWarning, 2)
    return share


def store_root(cache_dir: Path, teacher_tag: str, fingerprint: str, split: str) -> Path:
    return Path(cache_dir) / "teacher_outputs" / teacher_tag / fingerprint / split


def fingerprint_tag(fingerprint: Any) -> str | None:
    """A folder name for a dataset's ``fingerprint``: the string itself when it is one (the
    built-in datasets' hex digests), else a digest of its JSON (a plugin dataset's dict, say);
    None when the dataset has none (its teacher then runs live)."""
    if fingerprint is None:
        return None
    if isinstance(fingerprint, str) and fingerprint.isalnum():
        return fingerprint
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(ctx, strategy, teacher: nn.Module, teacher_name: str, teacher_key: str, train_set,
            need: frozenset[str]) -> CachedTeacher | None:
    """Store the teacher's outputs for every flip kind training produces (once per teacher,
    data fingerprint and split) and return the stand-in teacher; None when the teacher is not a
    frozen one or the dataset does not say how its samples are flipped."""
    from harness.pipeline.train import progress_callback

    flip_mode = getattr(train_set, "flip_mode", "unknown")
    if strategy.teacher_mode != "frozen" or flip_mode not in (None, "mirror", "swap"):
        return None
    data_tag = fingerprint_tag(getattr(train_set, "fingerprint", None))
    if data_tag is None or "index" not in train_set[0].get("meta", {}):
        return None
    store = TeacherOutputStore(store_root(ctx.cache_dir, f"{teacher_name}-{teacher_key}", data_tag,
                                          str(getattr(train_set, "split", "train"))))
    cached = CachedTeacher(teacher, store)

    def to_teacher(batch) -> list[dict[str, Any]]:
        """What the strategy's teacher_forward hands the teacher (it may call it more than once),
        recorded through the stand-in."""
        seen = []

        def spy(x, student_out=None):
            seen.append(x)
            return DepthOutput()

        cached.forward = spy
        try:
            strategy.teacher_forward(cached, batch, {})
        except Exception:  # a strategy working on the (empty) output: its teacher inputs are recorded
            pass
        finally:
            del cached.forward
        return seen

    kinds = wanted_kinds(flip_mode, float(getattr(train_set, "flip_prob", 0.5)))
    for kind in kinds:
        dataset = ctx.build_dataset("train", need, **FLIP_KINDS[kind])
        if dataset.fingerprint != train_set.fingerprint:
            raise HarnessError(f"teacher output cache: flip kind {kind!r} changes the dataset fingerprint")
        store.compute(kind, teacher, dataset, to_teacher, device=ctx.device, needs=strategy.teacher_needs,
                      batch_size=int(ctx.cfg.evaluate.get("batch_size", 8)),
                      progress=progress_callback("teacher outputs") if ctx.progress else None)
    warn_if_clipped(store, kinds, teacher, teacher_name, int(train_set[0]["image"].shape[-1]))
    teacher.to("cpu")
    return cached
