"""Kong's secret references: `{vault://<vault>/<resource>[/<key>][?prefix=...][#version]}`.

Rules (kong/pdk/vault.lua, kong/vaults/env):
- A reference is a whole string value `{vault://...}`, in a field Kong marks referenceable
  (`REFERENCEABLE` for entities; a plugin lists config paths in its class's `referenceable`).
  Elsewhere the same text is a plain string, as in Kong.
- `<vault>` is a `vaults` entity's `prefix`, or a bundled vault's own name (`env`).
- The `env` vault reads the environment variable `<config.prefix><resource>`, upper-cased,
  `-` as `_`; `#2` (the previous version) reads `<NAME>_PREVIOUS`. With `/<key>`, the variable
  holds a JSON object and the value is its `key`.
- Stored entities and exports keep the reference; a proxy worker resolves every reference when
  it compiles a config (`resolve_snapshot`), never per request. A write whose reference cannot
  be resolved now is refused, naming the field (`reference_errors`).
"""
from __future__ import annotations

import copy
import json
import os
import re
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

BUNDLED_VAULTS = ("env",)
REFERENCEABLE: dict[str, tuple[str, ...]] = {
    "certificates": ("cert", "key", "cert_alt", "key_alt"),
    "keyauth_credentials": ("key",),
    "jwt_secrets": ("secret", "rsa_public_key"),
}
_ENV_PREFIX = re.compile(r"^[A-Za-z_-][A-Za-z0-9_-]*$")


class VaultReferenceError(ValueError):
    """A reference that does not parse, names no vault, or finds no value."""


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("{vault://") and value.endswith("}")


def parse_reference(reference: str) -> dict[str, Any]:
    """`{vault://env/name/key?prefix=P#2}` -> {name, resource, key, config, version}."""
    url = urlsplit(reference[1:-1])
    if not url.hostname:
        raise VaultReferenceError(f"reference url is missing host [{reference}]")
    parts = [unquote(p) for p in url.path.split("/")[1:]]
    if not parts or not parts[0]:
        raise VaultReferenceError(f"reference url has empty path [{reference}]")
    version = None
    if url.fragment:
        if not url.fragment.isdigit():
            raise VaultReferenceError(f"reference url has invalid version [{reference}]")
        version = int(url.fragment)
    resource, key = (parts[0], None) if len(parts) == 1 else ("/".join(parts[:-1]), parts[-1])
    return {"name": url.hostname, "resource": resource, "key": key,
            "config": dict(parse_qsl(url.query)), "version": version}


def resolve_reference(reference: str, vaults: Mapping[str, Mapping[str, Any]],
                      environ: Mapping[str, str] | None = None) -> str:
    """The secret a reference names; `vaults` maps prefix -> vault entity."""
    ref = parse_reference(reference)
    vault = vaults.get(ref["name"])
    if vault is None and ref["name"] not in BUNDLED_VAULTS:
        raise VaultReferenceError(f"vault not found ({ref['name']}) [{reference}]")
    kind = vault["name"] if vault is not None else ref["name"]
    config = {**((vault or {}).get("config") or {}), **ref["config"]}
    if kind != "env":
        raise VaultReferenceError(f"vault '{kind}' is not installed [{reference}]")
    return _env_value(ref, config, os.environ if environ is None else environ, reference)


def _env_value(ref: dict, config: dict, environ: Mapping[str, str], reference: str) -> str:
    name = ((config.get("prefix") or "") + ref["resource"]).upper().replace("-", "_")
    if ref["version"] == 2:
        name += "_PREVIOUS"
    value = environ.get(name)
    if value is None:
        raise VaultReferenceError(f"could not resolve {reference}: environment variable {name} is not set")
    if ref["key"] is None:
        return value
    try:
        found = json.loads(value)[ref["key"]]
    except (ValueError, KeyError, TypeError):
        raise VaultReferenceError(f"could not resolve {reference}: environment variable {name} "
                             f"has no JSON key '{ref['key']}'") from None
    return found if isinstance(found, str) else json.dumps(found)


def check_env_config(config: Any) -> dict[str, str]:
    """Errors of an `env` vault's config ({} when fine): Kong's schema has one field, `prefix`."""
    if not isinstance(config, dict):
        return {"config": "expected a record"}
    errors = {k: "unknown field" for k in config if k != "prefix"}
    prefix = config.get("prefix")
    if prefix is not None and not (isinstance(prefix, str) and _ENV_PREFIX.match(prefix)):
        errors["prefix"] = f"invalid value: {prefix}"
    return {"config": errors} if errors else {}


# -- where references live ---------------------------------------------------------------------
def _paths(collection: str, row: Mapping[str, Any]) -> Iterable[tuple[str, ...]]:
    for name in REFERENCEABLE.get(collection, ()):
        yield (name,)
    if collection == "plugins":
        yield from (("config", *p.split(".")) for p in _plugin_paths(row.get("name")))


def _plugin_paths(name: Any) -> tuple[str, ...]:
    from meshway import plugins  # late: the registry imports bundled plugins

    cls = plugins.available_plugins().get(name) if isinstance(name, str) else None
    return getattr(cls, "referenceable", ()) if cls is not None else ()


def _get(row: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(row, Mapping):
            return None
        row = row.get(part)
    return row


def _set(row: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        row = row[part]
    row[path[-1]] = value


def _nest(path: tuple[str, ...], message: str) -> dict[str, Any]:
    out: Any = message
    for part in reversed(path):
        out = {part: out}
    return out


def _merge(into: dict, more: dict) -> None:
    for k, v in more.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def has_references(collection: str, row: Mapping[str, Any]) -> bool:
    return any(is_reference(_get(row, p)) for p in _paths(collection, row))


def reference_errors(collection: str, row: Mapping[str, Any], vaults: Iterable[Mapping[str, Any]],
                     environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """{field: message} (nested like the entity) for every reference of `row` that does not resolve,
    then for the entity with its secrets in place (a PEM that is no certificate, a key that does
    not match): the checks its literal values would have had."""
    by_prefix = {v["prefix"]: v for v in vaults}
    errors: dict[str, Any] = {}
    resolved = copy.deepcopy(dict(row))
    for path in _paths(collection, row):
        value = _get(row, path)
        if is_reference(value):
            try:
                _set(resolved, path, resolve_reference(value, by_prefix, environ))
            except VaultReferenceError as e:
                _merge(errors, _nest(path, str(e)))
    return errors or _resolved_errors(collection, resolved)


def _resolved_errors(collection: str, resolved: dict) -> dict[str, Any]:
    from meshway.model._errors import SchemaViolation
    from meshway.model.entities import ENTITIES  # late: entities import this module

    try:
        ENTITIES[collection].validate(resolved)
    except SchemaViolation as e:
        return e.fields
    return {}


def resolve_snapshot(snapshot: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                     on_error: Any = None) -> Mapping[str, Any]:
    """The snapshot with every reference replaced by its value (the same object when it has none).

    A reference that no longer resolves (a data plane without the variable) becomes null and is
    reported to `on_error(collection, id, message)`: that credential or option is then unusable,
    as in Kong, and the rest of the config serves. A certificate whose PEM cannot be read is left
    out whole (its SNIs fall back to the default certificate) rather than fail the config.
    """
    collections = list(REFERENCEABLE) + ["plugins"]
    if not any(has_references(c, row) for c in collections for row in snapshot.get(c) or ()):
        return snapshot
    by_prefix = {v["prefix"]: v for v in snapshot.get("vaults") or ()}
    out = dict(snapshot)
    for collection in collections:
        rows = [_resolved_row(collection, row, by_prefix, environ, on_error) for row in snapshot.get(collection) or ()]
        if collection == "certificates":
            rows = [r for r in rows if r.get("cert") is not None and r.get("key") is not None]
        out[collection] = rows
    return out


def _resolved_row(collection: str, row: Mapping[str, Any], by_prefix: dict, environ: Any, on_error: Any) -> Any:
    if not has_references(collection, row):
        return row
    row = copy.deepcopy(dict(row))
    for path in _paths(collection, row):
        value = _get(row, path)
        if is_reference(value):
            try:
                _set(row, path, resolve_reference(value, by_prefix, environ))
            except VaultReferenceError as e:
                _set(row, path, None)
                if on_error is not None:
                    on_error(collection, row.get("id"), str(e))
    return row
