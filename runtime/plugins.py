"""Finding, loading and validating plugins.

Three sources, one namespace of names:

* **bundled**: botrun's own plugins (the repository's ``plugins/`` folder),
  installed as the import package ``botrun_plugins`` and registered through
  botrun's own ``botrun.plugins`` entry points;
* **entry point**: any installed distribution's ``botrun.plugins`` entry points;
* **drop-in**: every ``*.py`` module and package in the configured folders.

Each plugin is imported and registered on its own, so one that fails to import,
declares an unknown hook or has bad settings is reported by name and left out
while the others load (``strict`` makes any failure fatal). Unlike pluggy's
``load_setuptools_entrypoints``, nothing is imported for a disabled plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import stat
import sys
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pluggy

from . import hookspecs
from ._schema import build
from .config import Config
from .errors import ConfigError, PluginError

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "Plugin",
    "PluginSet",
    "discover_plugins",
    "load_plugins",
]

ENTRY_POINT_GROUP = "botrun.plugins"
LOAD_PLUGINS_ENV = "BOTRUN_LOAD_PLUGINS"
BUNDLED_PACKAGE = "botrun_plugins"
PROJECT = "botrun"
"""pluggy's project name: the marker attribute is ``botrun_impl``."""

Source = Literal["bundled", "entry point", "drop-in"]
SOURCE_ORDER: dict[str, int] = {"bundled": 0, "entry point": 1, "drop-in": 2}


@dataclass
class Plugin:
    """One plugin: where it came from, whether it loaded, what it implements."""

    name: str
    source: Source
    origin: str
    """The module path (drop-in) or ``distribution version: module`` (entry point)."""
    version: str | None = None
    enabled: bool = True
    module: ModuleType | None = None
    settings: Any = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    """Why it did not load (a one-line reason; the traceback went to the log)."""
    _load: Any = field(default=None, repr=False)

    @property
    def loaded(self) -> bool:
        return self.module is not None and self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "origin": self.origin,
            "enabled": self.enabled,
            "loaded": self.loaded,
            "hooks": list(self.hooks),
            "error": self.error,
        }


@dataclass
class PluginSet:
    """The outcome of loading: the manager with every good plugin, and every plugin found."""

    manager: pluggy.PluginManager
    plugins: list[Plugin]

    @property
    def loaded(self) -> list[Plugin]:
        return [p for p in self.plugins if p.loaded]

    @property
    def failed(self) -> list[Plugin]:
        return [p for p in self.plugins if p.enabled and p.error is not None]

    @property
    def disabled(self) -> list[Plugin]:
        return [p for p in self.plugins if not p.enabled]

    def summary(self) -> str:
        return (
            f"plugins: {len(self.loaded)} loaded, {len(self.failed)} failed, "
            f"{len(self.disabled)} disabled"
        )

    def by_name(self, name: str) -> Plugin:
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        raise KeyError(name)


def make_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


# ---------------------------------------------------------------------- discovery


def discover_plugins(config: Config) -> tuple[list[Plugin], list[PluginError]]:
    """Every plugin found (not imported yet), and the name clashes found on the way."""
    found: dict[str, Plugin] = {}
    clashes: list[PluginError] = []

    def add(plugin: Plugin) -> None:
        other = found.get(plugin.name)
        if other is None:
            found[plugin.name] = plugin
            return
        clashes.append(
            PluginError(
                plugin.name,
                f"plugin name {plugin.name!r} is used twice: by {other.source} {other.origin} "
                f"and by {plugin.source} {plugin.origin}",
            )
        )

    for plugin in _entry_point_plugins():
        add(plugin)
    for folder in config.plugins.paths:
        for plugin in _drop_in_plugins(Path(folder), config):
            add(plugin)
    plugins = sorted(found.values(), key=lambda p: (SOURCE_ORDER[p.source], p.name))
    return plugins, clashes


def _entry_point_plugins() -> Iterable[Plugin]:
    seen: set[tuple[str, str]] = set()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (entry_point.name, entry_point.value)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        dist = entry_point.dist
        version = dist.version if dist is not None else None
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        bundled = entry_point.value.split(":")[0].split(".")[0] == BUNDLED_PACKAGE
        yield Plugin(
            name=entry_point.name,
            source="bundled" if bundled else "entry point",
            origin=f"{dist_name} {version}: {entry_point.value}",
            version=version,
            _load=entry_point.load,
        )


def _drop_in_plugins(folder: Path, config: Config) -> Iterable[Plugin]:
    if not folder.is_dir():
        raise ConfigError(config.path, "plugins.paths", f"{folder} is not a folder")
    _refuse_writable_by_others(folder, config)
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            path = entry
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            path = entry / "__init__.py"
        else:
            continue
        name = entry.stem if entry.is_file() else entry.name
        yield Plugin(
            name=name,
            source="drop-in",
            origin=str(entry),
            _load=lambda path=path, name=name: _import_file(name, path, config),
        )


def _refuse_writable_by_others(path: Path, config: Config) -> None:
    """Code anyone can write to is code anyone can run as the bot.

    The sticky bit does not help: it stops others deleting our files, not adding theirs.
    """
    if path.stat().st_mode & stat.S_IWOTH:
        raise ConfigError(
            config.path,
            "plugins.paths",
            f"{path} is writable by every user; refusing to run plugin code from it "
            f"(run: chmod o-w {path})",
        )


def _import_file(name: str, path: Path, config: Config) -> ModuleType:
    _refuse_writable_by_others(path, config)
    module_name = f"botrun_dropin_{name}"
    spec = importlib.util.spec_from_file_location(
        module_name,
        path,
        submodule_search_locations=[str(path.parent)] if path.name == "__init__.py" else None,
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


# ---------------------------------------------------------------------- loading


def load_plugins(
    config: Config,
    *,
    strict: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> PluginSet:
    """Discover, filter, import, validate and register every plugin.

    With ``strict`` (default: the config's ``plugins.strict``) the first problem
    raises PluginError or ConfigError; otherwise broken plugins are recorded
    with their error and left out.
    """
    strict = config.plugins.strict if strict is None else strict
    environ = os.environ if environ is None else environ
    plugins, clashes = discover_plugins(config)
    if clashes:
        if strict:
            raise clashes[0]
        for clash in clashes:
            _log_problem(str(clash))
    allowed = _allowed_names(config, plugins, environ, strict)
    manager = make_manager()
    for plugin in plugins:
        plugin.enabled = plugin.name in allowed
        if not plugin.enabled:
            continue
        try:
            _load_one(plugin, manager, config)
        except (PluginError, ConfigError) as exc:
            plugin.error = str(exc)
            if strict:
                raise
            _log_problem(str(exc))
        except Exception as exc:
            message = f"plugin {plugin.name!r} ({plugin.origin}) failed to load: {exc!r}"
            plugin.error = message
            if strict:
                raise PluginError(plugin.name, message) from exc
            _log_problem(message, exc)
    return PluginSet(manager, plugins)


def _allowed_names(
    config: Config, plugins: list[Plugin], environ: Mapping[str, str], strict: bool
) -> set[str]:
    names = {p.name for p in plugins}
    override = environ.get(LOAD_PLUGINS_ENV)
    if override is not None:
        # The escape hatch: keeps a broken plugin out whatever the config says.
        return {n.strip() for n in override.split(",") if n.strip()} & names
    wanted = set(config.plugins.enabled) or names
    unknown = (set(config.plugins.enabled) | set(config.plugins.disabled)) - names
    if unknown:
        message = (
            f"no plugin is called {', '.join(sorted(unknown))}; "
            f"found: {', '.join(sorted(names)) or 'none'}"
        )
        if strict:
            raise ConfigError(config.path, "plugins.enabled", message)
        _log_problem(message)
    return (wanted & names) - set(config.plugins.disabled)


def _load_one(plugin: Plugin, manager: pluggy.PluginManager, config: Config) -> None:
    module = plugin._load()
    if not isinstance(module, ModuleType):
        raise PluginError(plugin.name, f"plugin {plugin.name!r} is not a module: {module!r}")
    hooks = _declared_hooks(plugin.name, module)
    plugin.settings = _build_settings(plugin.name, module, config)
    if plugin.version is None:
        plugin.version = getattr(module, "__version__", None)
    try:
        manager.register(module, name=plugin.name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(plugin.name, f"plugin {plugin.name!r}: {exc}") from exc
    plugin.module = module
    plugin.hooks = hooks


def _declared_hooks(name: str, module: ModuleType) -> list[str]:
    """The hook implementations of ``module``; an unknown hook name is an error."""
    marker = f"{PROJECT}_impl"
    hooks: list[str] = []
    for attr, value in vars(module).items():
        if not callable(value) or getattr(value, marker, None) is None:
            continue
        opts = getattr(value, marker)
        hook_name = opts.get("specname") or attr
        if opts.get("wrapper") or opts.get("hookwrapper"):
            # The router calls every implementation as a handler: a wrapper would
            # silently do nothing.
            raise PluginError(
                name,
                f"plugin {name!r}: {hook_name} is a hook wrapper; botrun "
                "hooks are event handlers, so drop wrapper=True",
            )
        if hook_name not in hookspecs.HOOK_NAMES:
            suggestion = hookspecs.suggest_hook(hook_name)
            hint = f"; did you mean {suggestion!r}?" if suggestion else ""
            raise PluginError(name, f"plugin {name!r} implements unknown hook {hook_name!r}{hint}")
        hooks.append(hook_name)
    return sorted(hooks)


def _build_settings(name: str, module: ModuleType, config: Config) -> Any:
    raw = config.plugins.settings.get(name, {})
    schema = getattr(module, "Settings", None)
    if schema is None:
        return dict(raw)
    if not (isinstance(schema, type) and is_dataclass(schema)):
        raise PluginError(name, f"plugin {name!r}: Settings must be a dataclass")
    return build(schema, raw, path=f"plugins.{name}", file=config.path)


def _log_problem(message: str, exc: BaseException | None = None) -> None:
    import logging

    logger = logging.getLogger("botrun.plugins")
    if exc is None:
        logger.error("%s", message)
    else:
        logger.error("%s\n%s", message, "".join(traceback.format_exception(exc)).rstrip())
