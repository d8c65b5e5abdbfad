"""The typed schema of a run's config, checked before anything is built.

The harness's own sections (``schedule``, ``teacher_train``, ``data``, ``evaluate``, the runtime
keys) have declared types and ranges; the sections that configure a registered class (``method``,
``student``, ``teacher``, ``data.train/val/test``, optimisers and LR schedulers) are checked against
that class's ``__init__`` signature. An unknown key at any depth is refused with a did-you-mean; a
key the default config holds but this schema does not declare (a newer default) is accepted.

Every failure is one :class:`~harness.errors.HarnessError` naming the dotted key::

    config schedule.epoch: unknown key (did you mean schedule.epochs?)
    config schedule.epochs=1.5: must be an integer >= 1
"""
from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import fields
from typing import Any, Callable, Iterable

from torch import nn

from harness.errors import HarnessError

Check = Callable[[Any, str], None]
MISSING = object()


def _fail(path: str, value: Any, what: str) -> None:
    shown = path if value is MISSING else f"{path}={value!r}"
    raise HarnessError(f"config {shown}: {what}")


def did_you_mean(key: str, known: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean <prefix><closest>?)``, or "" when nothing is close."""
    close = difflib.get_close_matches(str(key), sorted(map(str, known)), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def unknown_key(path: str, known: Iterable[str], what: str = "key") -> None:
    """Refuse the dotted ``path``: a did-you-mean, else the keys known at that level."""
    parent, _, key = path.rpartition(".")
    known = sorted(map(str, known))
    hint = did_you_mean(key, known, f"{parent}." if parent else "") or f" (known here: {', '.join(known) or 'none'})"
    raise HarnessError(f"config {path}: unknown {what}{hint}")


# -- value checks ---------------------------------------------------------------------------------
def Any_(value, path):  # noqa: N802 - a check, named like the others
    """Anything (validated by its own module)."""


def Int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(value, path):
        integer = not isinstance(value, bool) and isinstance(value, int)
        if not integer or (lo is not None and value < lo) or (hi is not None and value > hi):
            _fail(path, value, "must be an integer" + _range(lo, hi))
    return check


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    return f" >= {lo}" if lo is not None else f" <= {hi}" if hi is not None else ""


def Float(gt: float | None = None, ge: float | None = None) -> Check:
    def check(value, path):
        bound = f" > {gt}" if gt is not None else f" >= {ge}" if ge is not None else ""
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not number or (gt is not None and value <= gt) or (ge is not None and value < ge):
            _fail(path, value, "must be a finite number" + bound)
    return check


def Bool(value, path):  # noqa: N802
    if not isinstance(value, bool):
        _fail(path, value, "must be True or False")


def Str(value, path):  # noqa: N802
    if not isinstance(value, str):
        _fail(path, value, "must be a string")


def Choice(*allowed) -> Check:
    def check(value, path):
        if not any(a == value and isinstance(a, bool) == isinstance(value, bool) for a in allowed):
            _fail(path, value, f"must be one of {', '.join(map(repr, allowed))}")
    return check


def Optional(inner: Check) -> Check:
    def check(value, path):
        if value is not None:
            inner(value, path)
    return check


def OneOf(*checks: Check, what: str) -> Check:
    def check(value, path):
        for c in checks:
            try:
                c(value, path)
                return
            except HarnessError:
                pass
        _fail(path, value, what)
    return check


def ListOf(inner: Check) -> Check:
    def check(value, path):
        if not isinstance(value, (list, tuple)):
            _fail(path, value, "must be a list")
        for i, item in enumerate(value):
            inner(item, f"{path}[{i}]")
    return check


def InputSize(value, path):  # noqa: N802
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 32 == 0 for v in value))
    if not ok:
        _fail(path, value, "must be (height, width), two positive multiples of 32")


class Section:
    """A dict with declared keys; ``defaults`` (the default config's values at this path) adds keys
    accepted without a type."""

    def __init__(self, keys: dict[str, Check]):
        self.keys = keys

    def __call__(self, value, path, defaults=None):
        if not isinstance(value, dict):
            _fail(path, value, "must be a section (a dict of keys)")
        known = set(self.keys) | set(defaults or {})
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in self.keys:
                check = self.keys[key]
                if isinstance(check, Section):
                    check(item, sub, (defaults or {}).get(key) if isinstance((defaults or {}).get(key), dict) else None)
                else:
                    check(item, sub)
            elif key not in known:
                unknown_key(sub, known)


def DictOf(inner: Check) -> Check:
    def check(value, path):
        if not isinstance(value, dict):
            _fail(path, value, "must be a section (a dict of keys)")
        for key, item in value.items():
            inner(item, f"{path}.{key}")
    return check


# -- sections checked against a class signature ---------------------------------------------------
TERMINAL = (object, nn.Module)


def accepted_keywords(obj: Any, provided: Iterable[str] = ()) -> set[str] | None:
    """Keyword arguments ``obj`` (a class or function) accepts, following ``**kwargs`` up the MRO;
    None when it accepts any keyword."""
    provided = set(provided)
    if not isinstance(obj, type):
        params = _params(obj)
        if params is None or any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - provided
    names: set[str] = set()
    for klass in obj.__mro__:
        if klass in TERMINAL:
            break
        if "__init__" not in vars(klass):
            continue
        params = _params(klass.__init__)
        if params is None:
            return None
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names - provided - {"self"}


def _params(fn):
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None


def check_signature(obj: Any, section: dict, path: str, *, what: str, provided: Iterable[str] = ("type",),
                    skip: Iterable[str] = ("type",), also: Any = None) -> None:
    """Refuse keys of ``section`` that ``obj`` (or ``also``, where ``obj`` forwards its ``**kwargs``)
    does not take; ``provided`` ones are the harness's."""
    accepted = accepted_keywords(obj, provided)
    if accepted is not None and also is not None:
        extra = accepted_keywords(also, provided)
        accepted = None if extra is None else accepted | extra
    if accepted is None:
        return
    for key in section:
        if key in skip or key in accepted:
            continue
        hint = did_you_mean(key, accepted, f"{path}.") or f" ({what} takes: {', '.join(sorted(accepted)) or 'no options'})"
        raise HarnessError(f"config {path}.{key}: unknown key{hint}")
    _check_against_defaults(obj, section, path)


def _check_against_defaults(obj: Any, section: dict, path: str) -> None:
    """A value whose kind clearly differs from the keyword's default (a string for a number, a
    number for a flag) is refused."""
    klasses = obj.__mro__ if isinstance(obj, type) else (None,)
    defaults: dict[str, Any] = {}
    for klass in reversed(klasses):
        if klass in TERMINAL or (klass is not None and "__init__" not in vars(klass)):
            continue
        params = _params(obj if klass is None else klass.__init__) or []
        defaults.update({p.name: p.default for p in params if p.default is not inspect.Parameter.empty})
    for key, value in section.items():
        default = defaults.get(key, None)
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):
                _fail(f"{path}.{key}", value, "must be True or False")
        elif isinstance(default, (int, float)):
            if isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
                _fail(f"{path}.{key}", value, "must be a number")
        elif isinstance(default, str) and not isinstance(value, str):
            _fail(f"{path}.{key}", value, "must be a string")


def _registry_section(registry_name: str, provided: tuple[str, ...]) -> Check:
    """``dict(type=<registered name>, **kwargs of that class>)`` of an mmengine registry."""
    def check(value, path):
        from mmengine.registry import OPTIMIZERS, PARAM_SCHEDULERS  # noqa: F401 - registers torch's
        import mmengine.optim  # noqa: F401

        registry = {"optimizer": OPTIMIZERS, "LR scheduler": PARAM_SCHEDULERS}[registry_name]
        if not isinstance(value, dict):
            _fail(path, value, "must be a section (a dict with a type)")
        kind = value.get("type")
        cls = registry.get(kind) if isinstance(kind, str) else None
        if cls is None:
            known = sorted(registry.module_dict)
            hint = did_you_mean(kind, known) or f" (known: {', '.join(known)})"
            raise HarnessError(f"config {path}.type={kind!r}: not a known {registry_name}{hint}")
        if "lr" in value:
            Float(gt=0)(value["lr"], f"{path}.lr")
        if "weight_decay" in value:
            Float(ge=0)(value["weight_decay"], f"{path}.weight_decay")
        check_signature(cls, value, path, what=f"{registry_name} {kind}", provided=provided)
    return check


SCHEDULE_KEYS = {
    "epochs": Int(1),
    "batch_size": Int(1),
    "optimizer": _registry_section("optimizer", ("params",)),
    "param_scheduler": ListOf(_registry_section("LR scheduler", ("optimizer", "param_name"))),
    "clip_grad": Optional(Section({"max_norm": Float(gt=0), "norm_type": Float(gt=0),
                                   "error_if_nonfinite": Bool, "foreach": Optional(Bool)})),
    "amp": OneOf(Bool, Choice("bf16", "fp16"), Optional(Choice(None)),
                 what="must be False, True, 'bf16' or 'fp16'"),
    "val_interval": Int(0),
}
SCHEDULE = Section(SCHEDULE_KEYS)
TEACHER_TRAIN = Section(dict(SCHEDULE_KEYS, seed=Int(0, 2**32 - 1),
                             flip_mode=Optional(Choice("mirror", "swap")),
                             # the supervised loss; the teacher's own choices are checked when it is built
                             loss=Optional(Str)))
EVALUATE = Section({"teacher": Bool, "mean_depth": Bool, "batch_size": Int(1), "robustness": Any_})
DIST = Section({"find_unused_parameters": Bool, "sync_bn": Optional(Choice("torch"))})
RUNTIME = {
    "seed": Int(0, 2**32 - 1),
    "device": OneOf(Choice("auto", "cpu", "cuda"), lambda v, p: None if isinstance(v, str) and v.startswith("cuda:")
                    and v[5:].isdigit() else _fail(p, v, ""), what="must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "deterministic": Bool,
    "launcher": Choice("none", "pytorch"),
    "dist": DIST,
    "channels_last": Bool,
    "num_workers": Int(0),
    "log_interval": Int(1),
    "progress": Bool,
    # watching (harness/pipeline/watch.py checks the mmengine visualizer / CheckpointHook dicts)
    "tensorboard": Bool,
    "vis_frames": Int(0),
    "visualizer": Any_,
    "checkpoint": Any_,
    "cache_dir": Optional(Str),
    "profile": Str,
    "evaluate": EVALUATE,
    "schedule": SCHEDULE,
    "teacher_train": TEACHER_TRAIN,
}
#: keys the harness passes to every dataset itself (not configurable per split)
DATASET_PROVIDED = ("root", "height", "width", "need", "seed")
#: keys the harness passes to a model builder
MODEL_SECTIONS = {"method": "methods", "student": "students", "teacher": "teachers"}


def _protocol_section() -> Section:
    from harness.eval.protocol import Protocol

    own = {"name", "dataset", "split", "split_hash", "gt_source", "resolution"}
    return Section({f.name: Any_ for f in fields(Protocol) if f.name not in own})


def validate(cfg: dict, catalog=None, defaults: dict | None = None) -> None:
    """Check ``cfg`` (a plain dict of a resolved run config) against the schema; ``defaults`` is the
    default config (its keys are known). With ``catalog`` (the registered classes) the sections of
    registered classes are checked too, else only the harness's own sections."""
    defaults = defaults or {}
    known_top = set(RUNTIME) | {"data", *MODEL_SECTIONS} | set(defaults)
    for key, value in cfg.items():
        if key not in known_top:
            unknown_key(key, known_top)
        if key in RUNTIME:
            check = RUNTIME[key]
            if isinstance(check, Section):
                check(value, key, defaults.get(key) if isinstance(defaults.get(key), dict) else None)
            else:
                check(value, key)
    if catalog is None:
        return
    for key, kind in MODEL_SECTIONS.items():
        section = cfg.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            _fail(key, section, "must be a section (a dict with a type)")
        name = section.get("type")
        if name is None:
            raise HarnessError(f"config {key}.type is missing")
        if not isinstance(name, str) or name not in catalog.entries[kind]:
            known = catalog.names(kind)
            raise HarnessError(f"config {key}.type={name!r}: unknown {kind[:-1]}{did_you_mean(name, known)} "
                               f"(known: {', '.join(known)})")
        entry = catalog.get(kind, name)
        check_signature(entry.obj, section, key, what=f"{kind[:-1]} {name!r}")
        if key == "method":
            check_loss_weights(entry.obj, section.get("loss_weights"), path="method.loss_weights")
    _validate_data(cfg.get("data"), catalog, defaults.get("data") or {})


def check_loss_weights(strategy_cls, weights, *, path: str) -> None:
    """``method.loss_weights``: a dict of finite numbers >= 0 naming the strategy's terms."""
    if weights is None:
        return
    if not isinstance(weights, dict):
        _fail(path, weights, "must be a dict of term -> weight")
    terms = set(getattr(strategy_cls, "default_loss_weights", {}) or {})
    for term, weight in weights.items():
        if terms and term not in terms:
            raise HarnessError(f"config {path}.{term}: unknown loss term{did_you_mean(term, terms, path + '.')} "
                               f"(terms: {', '.join(sorted(terms))})")
        Float(ge=0)(weight, f"{path}.{term}")


def _validate_data(data, catalog, defaults: dict) -> None:
    if data is None:
        return
    if not isinstance(data, dict):
        _fail("data", data, "must be a section (a dict of keys)")
    name = data.get("dataset")
    if not isinstance(name, str):
        _fail("data.dataset", data.get("dataset", MISSING), "must name a registered dataset")
    entry = catalog.get("datasets", name)
    from harness.data import synth
    from harness.data.corrupted_views import BASE_OF

    base = catalog.get("datasets", BASE_OF[name]).obj if name in BASE_OF else None

    protocol = _protocol_section()
    split = lambda v, p: check_signature(entry.obj, v if isinstance(v, dict) else _fail(p, v, "must be a section"),  # noqa: E731
                                         p, what=f"dataset {name!r}", provided=DATASET_PROVIDED, skip=(), also=base)
    generate = lambda v, p: check_signature(synth.generate, v if isinstance(v, dict) else _fail(p, v, "must be a section"),  # noqa: E731
                                            p, what="the synth generator", provided=("out_dir", "progress"), skip=())
    Section({
        "dataset": Str, "root": Optional(Str), "generate": Optional(generate), "input_size": InputSize,
        "train": split, "val": split, "test": split, "protocol": protocol,
        "split_protocols": DictOf(protocol),
    })(data, "data", defaults)


_DEFAULTS: dict | None = None


def check_run_config(cfg, catalog=None) -> None:
    """:func:`validate` a run's mmengine ``Config`` against the schema and the default config."""
    global _DEFAULTS
    if _DEFAULTS is None:
        from harness.config.loader import DEFAULT_CONFIG, load_file

        _DEFAULTS = load_file(DEFAULT_CONFIG, "config").to_dict()
    validate(cfg.to_dict(), catalog, _DEFAULTS)
