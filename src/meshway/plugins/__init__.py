"""Plugin registry: bundled plugins plus third-party ones from the `meshway.plugins` entry points.

A third-party package declares, in its pyproject.toml:

    [project.entry-points."meshway.plugins"]
    my-plugin = "my_package.module:MyPlugin"

and the class subclasses `meshway.plugins.Plugin`.
"""
from __future__ import annotations

import functools
import importlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Iterator, Mapping

# Only light modules here: a proxy worker imports this package for its shared counters at
# boot, and an idle worker (no plugin in its config) should not pay for pydantic (~13 MB RSS,
# through `api`) or for the bundled plugins. `api`'s names load on first use (`__getattr__`).
from meshway._lazy import lazy_attributes
from meshway.plugins._shm import attach_shared_memory, reset_shared_memory, shared_counters, shared_directory
from meshway.plugins.bundled._crypto import (hash_client_secret, hash_password, is_client_secret_hash,
                                             is_password_hash, new_salt, verify_client_secret, verify_password)
from meshway.plugins.bundled._metrics import render_metrics, set_connections_source, set_health_source

if TYPE_CHECKING:
    from pydantic import ValidationError

    from meshway.plugins.api import (PHASES, ConfigIndex, Plugin, PluginConfig, RequestContext, SharedCounters,
                                     TLSHandshake, describe)

__all__ = [
    "PHASES",
    "ConfigIndex",
    "Plugin",
    "PluginConfig",
    "PluginConfigError",
    "RequestContext",
    "SharedCounters",
    "TLSHandshake",
    "attach_shared_memory",
    "available_plugins",
    "database_changed",
    "describe",
    "hash_client_secret",
    "hash_password",
    "is_client_secret_hash",
    "is_password_hash",
    "new_salt",
    "on_database_change",
    "render_metrics",
    "reset_shared_memory",
    "set_connections_source",
    "set_health_source",
    "shared_counters",
    "shared_directory",
    "verify_client_secret",
    "verify_password",
    "validate_plugin_config",
]

__getattr__ = lazy_attributes(__name__, globals(), {name: ".api" for name in (
    "PHASES", "ConfigIndex", "Plugin", "PluginConfig", "RequestContext", "SharedCounters", "TLSHandshake", "describe")})

log = logging.getLogger("meshway.plugins")

_database_hooks: list = []


def on_database_change(hook: Any) -> None:
    """`hook()` runs in each worker when the node's database changed (an Admin API write on any
    node): plugins drop what they cached from it, as Kong's cache invalidations do."""
    if hook not in _database_hooks:
        _database_hooks.append(hook)


def database_changed() -> None:
    """Called in a worker by the master once its store poller saw a new version."""
    for hook in _database_hooks:
        try:
            hook()
        except Exception as e:  # one plugin's failure must not keep the others' stale caches
            log.error("clearing a plugin cache failed: %r", e)


class PluginConfigError(ValueError):
    """A plugin name is unknown or its config does not match the plugin's schema."""

    def __init__(self, fields: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.fields = fields


def _bundled_modules() -> dict[str, str]:
    """Bundled plugin names and their modules, from file names alone (nothing is imported):
    `bundled/key_auth.py` is `key-auth`; a test checks each module's `PLUGIN.name` agrees."""
    import pkgutil  # here: a worker whose config names no plugin never lists them

    from meshway.plugins import bundled

    return {info.name.replace("_", "-"): f"{bundled.__name__}.{info.name}"
            for info in pkgutil.iter_modules(bundled.__path__) if not info.name.startswith("_")}


def _third_party() -> dict[str, type[Plugin]]:
    from importlib.metadata import entry_points

    from meshway.plugins.api import Plugin

    found: dict[str, type[Plugin]] = {}
    for ep in entry_points(group="meshway.plugins"):
        try:
            cls = ep.load()
        except Exception as e:  # a broken third-party package must not stop the node
            log.error("cannot load plugin %s from %s: %s", ep.name, ep.value, e)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            log.error("entry point %s (%s) is not a meshway Plugin class", ep.name, ep.value)
            continue
        found[cls.name] = cls
    return found


class PluginRegistry(Mapping[str, "type[Plugin]"]):
    """Every plugin this node can run, by name; bundled names win over third-party ones.

    A read-only mapping that imports lazily: a bundled plugin's module on its first lookup,
    the third-party entry points (a scan of every installed distribution) only when a name is
    not bundled or the whole mapping is listed. A worker whose config uses no plugin imports
    none, nor pydantic. `name in registry` never imports a bundled module.
    """

    def __init__(self) -> None:
        self._bundled: dict[str, str] | None = None
        self._classes: dict[str, type[Plugin]] = {}
        self._third: dict[str, type[Plugin]] | None = None
        self._lock = threading.Lock()  # configs compile in worker threads; load entry points once

    @property
    def _modules(self) -> dict[str, str]:
        if self._bundled is None:  # listed on first lookup (a config without plugins makes none)
            self._bundled = _bundled_modules()
        return self._bundled

    def _third_party(self) -> dict[str, type[Plugin]]:
        if self._third is None:
            with self._lock:
                if self._third is None:
                    self._third = _third_party()
        return self._third

    def _load_bundled(self, name: str) -> type[Plugin]:
        cls = self._classes.get(name)
        if cls is None:
            module = importlib.import_module(self._modules[name])
            cls = getattr(module, "PLUGIN", None)
            if cls is None or cls.name != name:
                raise LookupError(f"bundled module {module.__name__} must define PLUGIN with name {name!r}")
            self._classes[name] = cls
        return cls

    def __getitem__(self, name: str) -> type[Plugin]:
        if name in self._modules:
            return self._load_bundled(name)
        return self._third_party()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._modules or name in self._third_party()

    def _names(self) -> list[str]:
        # The order the eager registry had: {**third_party, **bundled}.
        return list(dict.fromkeys([*self._third_party(), *self._modules]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"PluginRegistry({self._names()!r})"


@functools.cache
def available_plugins() -> PluginRegistry:
    """Every plugin this node can run, by name (a lazy mapping; see `PluginRegistry`)."""
    return PluginRegistry()


def _error_fields(err: ValidationError) -> dict[str, Any]:
    from meshway.model._errors import validator_message  # here: meshway.model is heavy for a worker

    fields: dict[str, Any] = {}
    for item in err.errors():
        node = fields
        loc = [str(p) for p in item["loc"]] or ["@entity"]
        for part in loc[:-1]:
            node = node.setdefault(part, {})
        node[loc[-1]] = "unknown field" if item["type"] == "extra_forbidden" else validator_message(item["msg"])
    return fields


# Kong's serverless plugins run Lua code given in their config. meshway runs no Lua (an
# embedded Lua VM with a PDK would be a second plugin runtime to secure and keep compatible), so
# a config naming them is refused with what to use instead, never loaded and silently skipped.
_NO_LUA = ("meshway does not run Lua code (config.access, config.rewrite, ...); use a Python plugin "
           "(entry point group 'meshway.plugins') or request-transformer, response-transformer, "
           "request-termination instead")
LUA_PLUGINS = {name: f"plugin '{name}' is not supported: {_NO_LUA}" for name in ("pre-function", "post-function")}


def validate_plugin_config(name: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a plugin's config; return it with defaults filled, or raise PluginConfigError."""
    from pydantic import ValidationError

    cls = available_plugins().get(name)
    if cls is None and name in LUA_PLUGINS:
        raise PluginConfigError({"name": LUA_PLUGINS[name]}, f"plugin '{name}' not supported")
    if cls is None:
        raise PluginConfigError({"name": f"plugin '{name}' not enabled; is it installed?"}, f"plugin '{name}' not enabled")
    try:
        model = cls.Config.model_validate(config or {})
    except ValidationError as e:
        raise PluginConfigError({"config": _error_fields(e)}, f"invalid config for plugin '{name}'") from None
    return _whole_numbers(model.model_dump(mode="json"))


def _whole_numbers(value: Any) -> Any:
    """5.0 -> 5 all through a config: Kong's JSON encoder writes a whole Lua number as an
    integer, and clients comparing `"minute": 5` (deck diffs, scripts) expect that."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value
