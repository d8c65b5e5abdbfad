"""Like-for-like controls: which run a method is compared with.

A method declares its control when it registers (``register(..., control=SPEC)``). ``SPEC`` is

- ``"<method>:<profile>"``: another method under a profile, e.g. ``"baseline:{profile}_stereo"``
  (the stereo-supervised baseline) or ``"baseline:{profile}"`` (the GT baseline of the same
  profile);
- ``"self:<profile>"``: the method itself under a profile with every distillation term off,
  e.g. ``"self:{profile}_control"``;
- ``"self:KEY=VALUE KEY=VALUE ..."``: the method itself with these ``--cfg-options``, recorded
  as profile ``<profile>_control``.

``{profile}`` is replaced by the profile of the method's run, so a control follows the method
from one benchmark profile (training budget) to another. A profile name is found as
``<name>.py`` beside the control method's registered config (its plugin's ``configs/``), then
among the bundled profiles (``harness/config/configs``); ``quick`` is the ``--quick`` profile.
Every result records ``control: {"method", "profile"}`` (None for a method without a control
and for a run that is itself a ``self`` control); :func:`control_runs` lists the runs to
execute for a method and profile (``harness matrix`` runs them with the method's seeds).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

SELF = "self"
QUICK = "quick"
_SPEC_RE = re.compile(r"^(?P<method>[a-z][a-z0-9_\-]*):(?P<target>\S.*)$")


@dataclass(frozen=True)
class ControlRun:
    """One control run: ``harness run`` with :meth:`argv` (add seeds, work dir, results)."""

    method: str
    profile: str  # the profile its result files record
    config: str | None = None  # --config: a bundled profile name or plugins/<plugin>/configs/<file>
    # (None: the default profile, or --quick)
    quick: bool = False
    cfg_options: tuple[str, ...] = ()

    def matrix_run(self) -> dict:
        """As a ``harness matrix`` ``runs`` entry (named ``<method>-<profile>``)."""
        run = {"name": f"{self.method}-{self.profile}", "method": self.method, "config": self.config}
        if self.cfg_options:
            run["cfg_options"] = list(self.cfg_options)
        return run

    def argv(self) -> list[str]:
        out = ["--method", self.method]
        if self.config:
            out += ["--config", self.config]
        if self.quick:
            out.append("--quick")
        if self.cfg_options:
            out += ["--cfg-options", *self.cfg_options]
        return out


def parse_spec(spec: object, owner: str) -> tuple[str, str]:
    """``(method, target)`` of a control spec, or a :class:`HarnessError` naming ``owner``."""
    m = _SPEC_RE.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise HarnessError(f"{owner}: control {spec!r} is not '<method>:<profile>', 'self:<profile>' "
                           "or 'self:KEY=VALUE ...'")
    return m["method"], m["target"].strip()


def _is_options(target: str) -> bool:
    return "=" in target


def _control_profile(target: str, profile: str) -> str:
    return f"{profile}_control" if _is_options(target) else target.replace("{profile}", profile)


def _is_control_profile(target: str, profile: str) -> bool:
    """Whether ``profile`` is what the ``self`` control ``target`` names for some profile."""
    template = "{profile}_control" if _is_options(target) else target
    pattern = re.escape(template).replace(re.escape("{profile}"), ".+")
    return template == profile or ("{profile}" in template and re.fullmatch(pattern, profile) is not None)


def declared_control(catalog, method: str, profile: str) -> dict[str, str] | None:
    """The ``control`` record of a result of ``method`` under ``profile``: ``{"method",
    "profile"}``, or None (no control declared, or this run is the method's own control)."""
    spec = catalog.get("methods", method).extra.get("control")
    if spec is None:
        return None
    kind, target = parse_spec(spec, f"method {method!r}")
    if kind == SELF:
        if _is_control_profile(target, profile):
            return None
        return {"method": method, "profile": _control_profile(target, profile)}
    return {"method": kind, "profile": _control_profile(target, profile)}


def profile_name(config: str | None) -> str:
    """The profile a run records for ``--config`` (a bundled profile name or a file; None: the
    default profile)."""
    if config in (None, "", "None"):
        return "synth_benchmark"
    return Path(config).stem if str(config).endswith(".py") else str(config)


def control_runs(catalog, method: str, profile: str | None) -> list[ControlRun]:
    """The control run(s) to execute for ``method`` under ``profile`` (a profile name or the
    run's ``--config`` file; none without a declared control). ``catalog``: the plugin catalog,
    e.g. ``PluginHost().catalog``. Run each with the method's seeds."""
    profile = profile_name(profile)
    record = declared_control(catalog, method, profile)
    if record is None:
        return []
    _, target = parse_spec(catalog.get("methods", method).extra["control"], f"method {method!r}")
    control = record["method"]
    catalog.get("methods", control)  # an unknown control method is one clear error
    if _is_options(target) and control == method:
        base = None if profile == QUICK else _profile_file(catalog, method, profile)
        return [ControlRun(method, record["profile"], base, profile == QUICK,
                           (*target.split(), f"profile={record['profile']}"))]
    if record["profile"] == QUICK:
        return [ControlRun(control, QUICK, quick=True)]
    return [ControlRun(control, record["profile"], _profile_file(catalog, control, record["profile"]))]


def _profile_file(catalog, method: str, profile: str) -> str | None:
    """``--config`` of ``profile`` for ``method``: a ``<name>.py`` beside its registered config
    (as ``plugins/<plugin>/configs/<name>.py`` for the built-in plugins, as in matrix configs),
    else a bundled profile by name (None: the default profile)."""
    from harness.config.loader import CONFIG_DIR, DEFAULT_CONFIG  # mmengine: only when a control is resolved

    own = catalog.get("methods", method).extra.get("config")
    beside = Path(own).parent / f"{profile}.py" if own else None
    if beside is not None and beside.is_file():
        import stereodistill_plugins

        plugins_root = Path(stereodistill_plugins.__file__).resolve().parent
        try:
            return str(Path("plugins") / beside.resolve().relative_to(plugins_root))
        except ValueError:  # a third-party plugin: its own path
            return str(beside)
    if (CONFIG_DIR / f"{profile}.py").is_file():
        return None if profile == DEFAULT_CONFIG.stem else profile
    raise HarnessError(f"control of method {method!r}: no profile {profile!r} (looked for "
                       f"{beside or '-'} and the bundled profile {CONFIG_DIR / f'{profile}.py'})")
