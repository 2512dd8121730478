"""Form decoding as Kong's `kong/api/arguments.lua` does it: keys name a path, the schema types values.

- `hosts=a&hosts=b` and `paths[]=/a&paths[]=/b` make arrays; `paths[1]=/x` sets a position
  (1-based, only the order matters); `destinations[1].ip=...&destinations[1].port=...` builds
  records inside arrays; `config.minute=5` and `service.id=...` build records.
- An empty value is null (`name=` clears a field), as in Kong.
- Strings become numbers/booleans only where the entity's schema says so (`coerce_input`).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from meshway.model._entity import Entity

_SEGMENT = re.compile(r"\[(\d*)\]|\.?([^.\[\]]+)")
_APPEND = object()


def parse_key(key: str) -> list[Any]:
    """`destinations[1].ip` -> ["destinations", 1, "ip"]; `paths[]` -> ["paths", APPEND]."""
    path: list[Any] = []
    for index, name in _SEGMENT.findall(key):
        if name:
            path.append(name)
        else:
            path.append(int(index) if index else _APPEND)
    return path or [key]


def decode_form(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Form pairs to a nested body, before schema coercion."""
    root: dict[Any, Any] = {}
    for key, value in pairs:
        _put(root, parse_key(key), None if value == "" else value)
    return _listify(root)


def _put(node: dict, path: list[Any], value: Any) -> None:
    head = path[0]
    if head is _APPEND:
        head = max((k for k in node if isinstance(k, int)), default=0) + 1
    if len(path) == 1:
        if head in node:
            prev = node[head]
            node[head] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            node[head] = value
        return
    child = node.get(head)
    if not isinstance(child, dict):
        child = node[head] = {} if child is None else {0: child}
    _put(child, path[1:], value)


def _listify(node: Any) -> Any:
    if isinstance(node, list):
        return [_listify(v) for v in node]
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        return [_listify(node[k]) for k in sorted(node)]
    return {str(k): _listify(v) for k, v in node.items()}


def coerce_input(entity: Entity, data: dict[str, Any]) -> dict[str, Any]:
    """Type form strings by the entity's schema (`port=80` -> 80, `protocols=tcp` -> ["tcp"])."""
    out = {}
    for key, value in data.items():
        field = entity.fields.get(key)
        if key in entity.companions and not isinstance(value, list):
            value = [value]  # `snis=a.test` on a certificate is a one-element list
        out[key] = field.coerce(value) if field is not None and value is not None else value
    if entity.name == "plugins" and isinstance(out.get("config"), dict) and isinstance(out.get("name"), str):
        out["config"] = coerce_plugin_config(out["name"], out["config"])
    return out


def coerce_plugin_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """`config.allow=10.0.0.1` is a one-element list when the plugin's field is a list; pydantic
    types the scalars (lax mode) but does not wrap a lone string into a list."""
    from meshway import plugins  # late: the registry imports bundled plugins

    cls = plugins.available_plugins().get(name)
    if cls is None:
        return config
    props = cls.Config.model_json_schema().get("properties", {})
    return {k: [v] if _is_array(props.get(k, {})) and not isinstance(v, (list, dict)) and v is not None else v
            for k, v in config.items()}


def _is_array(prop: dict[str, Any]) -> bool:
    options = prop.get("anyOf", [prop])
    return any(o.get("type") == "array" for o in options)
