"""Plugin manager: entry-point discovery, fault isolation, registration and listing.

Built-in plugins (``core`` and the method plugins) are found through the ``stereodistill``
entry-point group declared in ``pyproject.toml``, exactly like third-party packages. Set
``STEREODISTILL_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the plugins of the stereodistill
distribution itself. A plugin that fails to import is reported as one warning line and skipped.

Registration is cheap: a plugin may register a component as a ``"package.module:Attribute"``
string, imported only when the component is used (``Entry.obj``, ``Catalog.build``), and the
mmengine registries are made on the first build; so ``harness list`` reads every plugin's names
and descriptions without importing torch.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from harness import hookspecs
from harness.config.controls import parse_spec
from harness.errors import HarnessError, HarnessWarning, PluginError

ENTRY_POINT_GROUP = "stereodistill"
DISTRIBUTION = "stereodistill"
DISABLE_AUTOLOAD_ENV = "STEREODISTILL_DISABLE_PLUGIN_AUTOLOAD"
#: comma-separated module names to import and register as plugins (like ``PYTEST_PLUGINS``):
#: for trying a plugin before it is installed with an entry point
EXTRA_PLUGINS_ENV = "STEREODISTILL_PLUGINS"
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

#: kind -> (registration hook, singular noun used in messages)
KINDS = {
    "methods": ("harness_register_methods", "method"),
    "teachers": ("harness_register_teachers", "teacher"),
    "students": ("harness_register_students", "student"),
    "datasets": ("harness_register_datasets", "dataset"),
    "metrics": ("harness_register_metrics", "metric"),
}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginWarning(HarnessWarning):
    """A plugin could not be loaded or misbehaved; the harness continued without it."""


@dataclass
class Entry:
    """One registered component: a method, teacher, student, dataset or metric. ``target`` is the
    registered object or its ``"module:attribute"`` reference; ``obj`` resolves it (once)."""

    kind: str
    name: str
    target: Any
    description: str
    plugin: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def obj(self) -> Any:
        if isinstance(self.target, str):
            self.target = _resolve(self.target, f"{KINDS[self.kind][1]} {self.name!r} of plugin {self.plugin!r}")
        return self.target


def _resolve(ref: str, what: str) -> Any:
    """Import ``"package.module:Attribute"``; a failure is one ``PluginError`` line naming ``what``."""
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise PluginError(f"{what}: cannot import {ref!r}: {type(exc).__name__}: {exc}") from None
    return obj


@dataclass
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    source: str
    version: str
    module: Any


class Catalog:
    """Everything the plugins registered, as mmengine registries plus descriptions."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._registries: dict[str, Any] = {}

    def add(self, kind: str, plugin: str, name: str, obj: Any, *, description: str = "", **extra: Any) -> None:
        noun = KINDS[kind][1]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(
                f"plugin {plugin!r} registered {noun} name {name!r}: names must be lower-case "
                "identifiers (letters, digits, '_' or '-', starting with a letter)"
            )
        if not description or not isinstance(description, str):
            raise PluginError(f"plugin {plugin!r} registered {noun} {name!r} without a description")
        if isinstance(obj, str) and not _REF_RE.match(obj):
            raise PluginError(f"plugin {plugin!r} registered {noun} {name!r} as {obj!r}: a string must be a "
                              "'package.module:Attribute' reference")
        if kind == "methods" and extra.get("control") is not None:
            try:
                parse_spec(extra["control"], f"plugin {plugin!r} method {name!r}")
            except HarnessError as exc:
                raise PluginError(str(exc)) from None
        if kind != "metrics" and not isinstance(obj, (type, str)):
            raise PluginError(f"plugin {plugin!r} registered {noun} {name!r} as a {type(obj).__name__} "
                              f"({obj!r:.60}); {noun}s are registered as classes (or 'module:Class' references)")
        if name in self.entries[kind]:
            other = self.entries[kind][name].plugin
            raise PluginError(f"{noun} {name!r} is registered by both plugin {other!r} and plugin {plugin!r}")
        self.entries[kind][name] = Entry(kind, name, obj, description.strip().splitlines()[0], plugin, extra)

    def registry(self, kind: str, name: str):
        """The mmengine registry of ``kind`` with ``name``'s class in it (imported and added on first use)."""
        if kind not in self._registries:
            from mmengine.registry import Registry

            self._registries[kind] = Registry(f"stereodistill.{kind}")
        registry = self._registries[kind]
        obj = self.get(kind, name).obj
        if name not in registry.module_dict and isinstance(obj, type):
            registry.register_module(name=name, module=obj)
        return registry

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self.entries[kind][name]
        except KeyError:
            noun = KINDS[kind][1]
            known = ", ".join(sorted(self.entries[kind])) or "none"
            raise HarnessError(f"unknown {noun} {name!r} (known: {known})") from None

    def build(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Instantiate a registered class through its mmengine registry."""
        registry = self.registry(kind, name)
        try:
            return registry.build(dict(type=name, **kwargs))
        except TypeError as exc:
            raise HarnessError(f"cannot build {KINDS[kind][1]} {name!r} from config: {exc}") from exc

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])


class PluginHost:
    """A typed facade over the pluggy manager: the rest of the harness calls these methods."""

    def __init__(self, *, autoload: bool = True, extra_plugins: Iterable[Any] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        if autoload:
            self._load_entry_points()
            self._load_env_plugins()
        for plugin in extra_plugins:
            self.register(plugin)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"a plugin breaks the hook contract: {exc}") from None
        self._catalog: Catalog | None = None

    # -- loading ---------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        only_own = os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0")
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            if only_own and dist_name != DISTRIBUTION:
                continue
            if ep.name in self.info:
                warnings.warn(f"plugin {ep.name!r} from {dist_name} skipped: name already loaded", PluginWarning, 2)
                continue
            try:
                module = ep.load()
            except BaseException as exc:  # a broken plugin (even one calling sys.exit) must not break the harness
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                warnings.warn(
                    f"plugin {ep.name!r} ({ep.value}) failed to import and is skipped: "
                    f"{type(exc).__name__}: {first}",
                    PluginWarning,
                    2,
                )
                continue
            version = dist.version if dist is not None else "?"
            self._register(module, ep.name, f"entry point {ENTRY_POINT_GROUP}:{ep.name} ({dist_name})", version)

    def _load_env_plugins(self) -> None:
        for modname in filter(None, (m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
            try:
                module = importlib.import_module(modname)
            except BaseException as exc:  # also SystemExit / KeyboardInterrupt raised by its import
                warnings.warn(f"plugin {modname!r} from ${EXTRA_PLUGINS_ENV} failed to import and is skipped: "
                              f"{type(exc).__name__}: {exc}", PluginWarning, 2)
                continue
            if not self.pm.is_registered(module):
                self._register(module, modname, f"${EXTRA_PLUGINS_ENV}", str(getattr(module, "__version__", "-")))

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register an in-process plugin object or module (tests, notebooks); registering a
        plugin that is already loaded (e.g. through its entry point) is a no-op."""
        if self.pm.is_registered(plugin):
            return self.pm.get_name(plugin)
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        version = str(getattr(plugin, "__version__", "-"))
        self._register(plugin, name, "registered in-process", version)
        self._catalog = None
        return name

    def _register(self, plugin: Any, name: str, source: str, version: str) -> None:
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from None
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} breaks the hook contract: {exc}") from None
        self.info[name] = PluginInfo(name, source, version, plugin)

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.info.pop(name, None)
        self._catalog = None

    # -- registration ----------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = self._collect()
        return self._catalog

    def _collect(self) -> Catalog:
        catalog = Catalog()
        for kind, (hook_name, _) in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order
                register = _bound_register(catalog, kind, impl.plugin_name)
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:  # fault isolation: the other plugins still work
                    warnings.warn(
                        f"plugin {impl.plugin_name!r} failed in {hook_name} and is skipped: "
                        f"{type(exc).__name__}: {exc}",
                        PluginWarning,
                        2,
                    )
        return catalog

    def hooks_of(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        return sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])

    # -- run events ------------------------------------------------------------------------
    def configure_run(self, cfg: Any) -> None:
        """Each plugin in pluggy's call order; a plugin that raises (other than a deliberate
        ``HarnessError`` refusal) is reported by name and the others still run."""
        for impl in reversed(self.pm.hook.harness_configure_run.get_hookimpls()):
            try:
                impl.function(cfg=cfg)
            except HarnessError:
                raise
            except Exception as exc:
                warnings.warn(f"plugin {impl.plugin_name!r} failed in harness_configure_run and is skipped: "
                              f"{type(exc).__name__}: {exc}", PluginWarning, 2)

    def result_written(self, result: dict, path: str) -> None:
        for impl in self.pm.hook.harness_result_written.get_hookimpls():
            try:
                impl.function(result=result, path=path)
            except Exception as exc:
                warnings.warn(f"plugin {impl.plugin_name!r} failed in harness_result_written: "
                              f"{type(exc).__name__}: {exc}", PluginWarning, 2)


def _bound_register(catalog: Catalog, kind: str, plugin: str) -> Callable[..., None]:
    def register(name: str, obj: Any, **kwargs: Any) -> None:
        catalog.add(kind, plugin, name, obj, **kwargs)

    return register


def format_warning_line(message: warnings.WarningMessage) -> str:
    return f"harness: warning: {message.message}"


def emit_plugin_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        if issubclass(w.category, PluginWarning):
            print(format_warning_line(w), file=sys.stderr)
