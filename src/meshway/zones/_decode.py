"""Config entry input -> a canonical entry, as `consul config write` decodes it.

- The text is HCL (v1, with pyhcl, as Consul's own parser), JSON (a subset of HCL v1), or YAML
  (meshway's addition: the format of the rest of meshway's files).
- Keys are matched whatever their case or as snake_case (`MeshGateway`, `meshgateway`,
  `mesh_gateway`), as Consul's decoder (mapstructure + its alias tags); the tutorial's files mix
  them. `Config` and `Meta` keep their keys as written.
- Values are weakly typed as mapstructure's `WeaklyTypedInput`: `"true"` is a bool, `"5"` an int;
  a one-element list stands for a block (HCL v1 writes blocks as lists); a block where a list
  is expected is a one-element list.
- Every unknown key is reported as Consul does: `invalid config key "Redirect.Foo"`.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ._schema import KINDS, ListOf, MapOf, Struct


class DecodeError(ValueError):
    """The input is not a config entry (syntax, kind, unknown keys, types)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(_multierror(errors))


def _multierror(errors: list[str]) -> str:
    """hashicorp/go-multierror's text, which Consul prints after `Failed to decode config entry input: `."""
    if len(errors) == 1 and not errors[0].startswith("invalid config key"):
        return errors[0]
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} {noun} occurred:\n" + "".join(f"\t* {e}\n" for e in errors)


# ---- text -----------------------------------------------------------------------------------------
def parse_text(text: str, filename: str = "") -> dict[str, Any]:
    """HCL, JSON or YAML text -> the raw map (not yet decoded)."""
    if filename.endswith((".yaml", ".yml")):
        return _yaml(text)
    import hcl

    try:
        raw = hcl.loads(text)
    except Exception as e:  # pyhcl raises ValueError subclasses and lexer errors
        if filename.endswith((".hcl", ".json")):
            raise DecodeError([f"Failed to decode config entry input: {e}"]) from None
        try:
            return _yaml(text)
        except DecodeError:
            raise DecodeError([f"Failed to decode config entry input: {e}"]) from None
    if not isinstance(raw, dict):
        raise DecodeError(["the input is not a map of keys to values"])
    return raw


def _yaml(text: str) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DecodeError([f"Failed to decode config entry input: {e}"]) from None
    if not isinstance(raw, dict):
        raise DecodeError(["the input is not a map of keys to values"])
    return raw


# ---- raw map -> entry -------------------------------------------------------------------------------
def kind_of(raw: dict[str, Any]) -> str:
    kind = raw["Kind"] if "Kind" in raw else raw.get("kind")
    if kind is None and "Kind" not in raw and "kind" not in raw:
        raise DecodeError(["Payload does not contain a kind/Kind key at the top level"])
    if not isinstance(kind, str):
        raise DecodeError(["Kind value in payload is not a string"])
    if kind not in KINDS:
        raise DecodeError([f"invalid config entry kind: {kind} (meshway knows {', '.join(KINDS)})"])
    return kind


def decode_entry(raw: Any) -> dict[str, Any]:
    """The raw map -> the entry with canonical keys and typed values; DecodeError lists every problem."""
    if not isinstance(raw, dict):
        raise DecodeError(["the input is not a map of keys to values"])
    kind = kind_of(raw)
    errors: list[str] = []
    body = {k: v for k, v in raw.items() if k not in ("Kind", "kind")}
    entry = _struct(KINDS[kind], body, "", errors)
    if errors:
        raise DecodeError(errors)
    return {"Kind": kind, **{k: v for k, v in entry.items() if k != "Kind"}}


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _struct(schema: Struct, data: Any, where: str, errors: list[str]) -> dict[str, Any]:
    data = _unwrap(data, where, errors)
    if not isinstance(data, dict):
        if data is not None:
            errors.append(f"'{where}' expected a map, got '{type(data).__name__}'")
        return {}
    names, out = schema.lookup(), {}
    for key, value in data.items():
        name = names.get(str(key).lower())
        if name is None:
            errors.append(f'invalid config key "{_path(where, str(key))}"')
            continue
        if name in out and key != name:  # both spellings given: the canonical one wins, as Consul
            continue
        typed = _value(schema.type_of(name), value, _path(where, name), errors)
        if typed is not None:
            out[name] = typed
    return out


def _unwrap(data: Any, where: str, errors: list[str]) -> Any:
    """HCL v1 (and Consul's HookWeakDecodeFromSlice): a block may come as a one-element list."""
    if isinstance(data, list):
        if len(data) == 1:
            return data[0]
        if not data:
            return None
        errors.append(f"'{where}': source data must be an array or slice, got a list of {len(data)} blocks")
        return None
    return data


def _value(kind: Any, value: Any, where: str, errors: list[str]) -> Any:
    if isinstance(kind, Struct):
        return _struct(kind, value, where, errors)
    if isinstance(kind, ListOf):
        items = value if isinstance(value, list) else [value]
        return [_value(kind.item, v, f"{where}[{i}]", errors) for i, v in enumerate(items)]
    if isinstance(kind, MapOf):
        value = _unwrap(value, where, errors)
        if not isinstance(value, dict):
            errors.append(f"'{where}' expected a map, got '{type(value).__name__}'")
            return None
        return {str(k): _value(kind.value, v, f"{where}[{k}]", errors) for k, v in value.items()}
    return _scalar(kind, value, where, errors)


def _scalar(kind: str, value: Any, where: str, errors: list[str]) -> Any:
    try:
        return _SCALARS[kind](value)
    except (TypeError, ValueError) as e:
        detail = f": {e}" if str(e) else ""
        errors.append(f"'{where}' expected type '{_GO_TYPES[kind]}', got unconvertible type "
                      f"'{type(value).__name__}', value: '{_show(value)}'{detail}")
        return None


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"  # mapstructure's weak bool -> string
    if isinstance(v, (str, int, float)):
        return str(v)
    raise TypeError()


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("1", "t", "true"):
            return True
        if low in ("", "0", "f", "false"):
            return False
    raise ValueError()


def _int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        return int(v.strip() or "0", 0)
    raise TypeError()


def _float(v: Any) -> float:
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return float(v)
    raise TypeError()


def _strings(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v]
    return [_str(i) for i in items]


def _opaque(v: Any) -> dict[str, Any]:
    v = v[0] if isinstance(v, list) and len(v) == 1 else v
    if not isinstance(v, dict):
        raise TypeError()
    return v


_SCALARS = {"str": _str, "bool": _bool, "int": _int, "float": _float, "strings": _strings, "opaque": _opaque,
            "duration": lambda v: parse_duration(v)}
_GO_TYPES = {"str": "string", "bool": "bool", "int": "int", "float": "float32", "strings": "[]string",
             "opaque": "map[string]interface {}", "duration": "time.Duration"}


# ---- Go durations ---------------------------------------------------------------------------------
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: Any) -> int:
    """Go's `time.ParseDuration` (`15s`, `1m30s`, `-2h`, `0`), or an integer of nanoseconds."""
    if isinstance(value, bool):
        raise TypeError()
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        raise TypeError()
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return 0
    if not body:
        raise ValueError(f'time: invalid duration "{value}"')
    total, pos = 0.0, 0
    for m in _PART.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(body):
        if re.fullmatch(r"[\d.]+", body):
            raise ValueError(f'time: missing unit in duration "{value}"')
        raise ValueError(f'time: invalid duration "{value}"')
    return sign * int(round(total))


def format_duration(ns: int) -> str:
    """Go's `Duration.String()`: `15s`, `1m30s`, `1h0m0s`, `500ms`, `0s`."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")
