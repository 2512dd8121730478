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
import pkgutil
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from meshway.plugins._shm import attach_shared_memory, reset_shared_memory, shared_counters
from meshway.plugins.api import PHASES, ConfigIndex, Plugin, PluginConfig, RequestContext, SharedCounters, describe
from meshway.plugins.bundled._crypto import hash_password, is_password_hash, new_salt, verify_password
from meshway.plugins.bundled._metrics import render_metrics, set_connections_source, set_health_source

__all__ = [
    "PHASES",
    "ConfigIndex",
    "Plugin",
    "PluginConfig",
    "PluginConfigError",
    "RequestContext",
    "SharedCounters",
    "attach_shared_memory",
    "available_plugins",
    "describe",
    "hash_password",
    "is_password_hash",
    "new_salt",
    "render_metrics",
    "reset_shared_memory",
    "set_connections_source",
    "set_health_source",
    "shared_counters",
    "verify_password",
    "validate_plugin_config",
]

log = logging.getLogger("meshway.plugins")


class PluginConfigError(ValueError):
    """A plugin name is unknown or its config does not match the plugin's schema."""

    def __init__(self, fields: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.fields = fields


def _bundled() -> dict[str, type[Plugin]]:
    from meshway.plugins import bundled

    found: dict[str, type[Plugin]] = {}
    for info in pkgutil.iter_modules(bundled.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{bundled.__name__}.{info.name}")
        cls = getattr(module, "PLUGIN", None)
        if cls is not None:
            found[cls.name] = cls
    return found


def _third_party() -> dict[str, type[Plugin]]:
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


@functools.cache
def available_plugins() -> dict[str, type[Plugin]]:
    """Every plugin this node can run, by name; bundled names win over third-party ones."""
    return {**_third_party(), **_bundled()}


def _error_fields(err: ValidationError) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in err.errors():
        node = fields
        loc = [str(p) for p in item["loc"]] or ["@entity"]
        for part in loc[:-1]:
            node = node.setdefault(part, {})
        node[loc[-1]] = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
    return fields


def validate_plugin_config(name: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a plugin's config; return it with defaults filled, or raise PluginConfigError."""
    cls = available_plugins().get(name)
    if cls is None:
        raise PluginConfigError({"name": f"plugin '{name}' not enabled; is it installed?"}, f"plugin '{name}' not enabled")
    try:
        model = cls.Config.model_validate(config or {})
    except ValidationError as e:
        raise PluginConfigError({"config": _error_fields(e)}, f"invalid config for plugin '{name}'") from None
    return model.model_dump(mode="json")
