"""Request-body schemas of the OpenAPI document: what an entity write takes.

The entity declarations check most strings with functions (a hostname, a route path, a tag); the
document states each as a pattern that accepts a plain subset of what the check accepts, so a
body valid for the document is valid for the API. Rules that tie fields together (a consumer needs
`username` or `custom_id`) are stated with `anyOf`. System fields (`id`, timestamps) and, on a
nested path, the parent's reference are left out: the API fills them. The API still takes null
for an optional field (Kong's "unset") and a plugin's whole `config`; the document shows the
plainer form (a plugin's fields are in `GET /schemas/plugins/{name}`).
"""
from __future__ import annotations

import copy
import functools
from typing import Any

from meshway.model import Entity

_HOST = r"[a-z][a-z0-9]{0,15}(\.[a-z][a-z0-9]{0,15}){0,2}"
_PATH = r"(/[A-Za-z0-9._~-]{1,12}){1,3}"
PATTERNS = {  # check function name -> a pattern that only matches values the check accepts
    "check_host": f"^{_HOST}$",
    "check_upstream_name": f"^{_HOST}$",
    "check_wildcard_host": f"^{_HOST}$",
    "check_sni": f"^{_HOST}$",
    "check_target": f"^{_HOST}(:[1-9][0-9]{{0,3}})?$",
    "check_path": f"^{_PATH}$",
    "check_route_path": f"^{_PATH}$",
    "check_method": "^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$",
    "check_tag": "^[A-Za-z0-9._~-]{1,20}$",
    "_name_check": "^[A-Za-z0-9._~-]{1,30}$",
}
SHORTHANDS = {"url": {"type": "string", "pattern": f"^https?://{_HOST}(:[1-9][0-9]{{0,3}})?({_PATH})?$"}}
ENTITY_RULES: dict[str, dict[str, Any]] = {
    "consumers": {"anyOf": [{"required": ["username"]}, {"required": ["custom_id"]}]},
    "services": {"anyOf": [{"required": ["host"]}, {"required": ["url"]}]},
    "routes": {"required": ["paths"]},
}


def input_schema(entity: Entity, parent_field: str | None = None) -> dict[str, Any]:
    props = {name: field_schema(field) for name, field in entity.fields.items()
             if not field.auto and name != parent_field}
    for name in entity.companions:
        props[name] = {"type": "array", "items": {"type": "string", "pattern": PATTERNS["check_sni"]}}
    for name in entity.shorthands:
        props[name] = SHORTHANDS.get(name, {"type": "string"})
    if entity.name == "plugins":
        props.update(_plugin_fields())
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False,
                           **copy.deepcopy(ENTITY_RULES.get(entity.name, {}))}
    required = [n for n, f in entity.fields.items() if f.required and f.default is None and n in props]
    if required and not entity.shorthands:  # a shorthand (`url`) can stand for required fields
        out["required"] = sorted({*required, *out.get("required", ())})
    return out


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def key_schema(entity: Entity) -> dict[str, Any]:
    """The `{key}` of an item path: an id, or a value of the endpoint key (a PUT by name sets it)."""
    if entity.endpoint_key is None:
        return {"type": "string", "pattern": f"^{_UUID}$"}
    named = field_schema(entity.fields[entity.endpoint_key]).get("pattern", "^[A-Za-z0-9._~-]{1,30}$")
    return {"type": "string", "pattern": f"^({_UUID}|{named[1:-1]})$"}


def field_schema(field: Any) -> dict[str, Any]:
    """One field's schema, with the patterns of its checks, recursively."""
    out = field.openapi()
    out.pop("nullable", None)
    patterns = [PATTERNS[c.__name__] for c in getattr(field, "checks", ()) if c.__name__ in PATTERNS]
    if patterns:
        out["pattern"] = patterns[0]
    if out.get("type") == "string" and "enum" not in out:
        out["minLength"] = max(1, getattr(field, "len_min", 1) or 1)
        if getattr(field, "len_max", None):
            out["maxLength"] = field.len_max
    if getattr(field, "elements", None) is not None:
        out["items"] = field_schema(field.elements)
    if isinstance(getattr(field, "fields", None), dict):
        out["properties"] = {n: field_schema(f) for n, f in field.fields.items()}
    if getattr(field, "reference", None):
        out = {"type": "object", "required": ["id"], "additionalProperties": False,
               "properties": {"id": {"type": "string", "format": "uuid"}}}
    return out


@functools.cache
def _plugin_fields() -> dict[str, Any]:
    from meshway import plugins

    names = []
    for name in sorted(plugins.available_plugins()):
        try:
            plugins.validate_plugin_config(name, {})
        except Exception:  # this plugin needs config fields: described by /schemas/plugins/{name}
            continue
        names.append(name)
    return {"name": {"type": "string", "enum": names},
            "config": {"type": "object", "maxProperties": 0,
                       "description": "{} takes the plugin's defaults; its fields: GET /schemas/plugins/{name}"}}
