"""Forms generated from the Admin API's own schemas, and back from posted forms to JSON bodies.

Entity forms come from `GET /schemas/<entity>` (Kong's field list), a plugin's `config` from the
JSON Schema of `GET /schemas/plugins/<name>`, so a third-party plugin gets its form with no
code here. A value the form cannot even parse (`abc` for a number, broken JSON) is reported on
its field without calling the Admin API; everything else is the Admin API's to judge, and its
`fields` errors are shown on the inputs they name.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Iterable

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
LONG_TEXT = {"cert", "key", "cert_alt", "key_alt", "certificate"}


@dataclasses.dataclass(frozen=True)
class Field:
    """One input: `name` is the body path, dotted (`config.minute`)."""

    name: str
    kind: str  # text | textarea | number | select | bool | list | json | foreign
    required: bool = False
    default: Any = None
    options: tuple[str, ...] = ()
    help: str = ""

    @property
    def label(self) -> str:
        return self.name.split(".")[-1].replace("_", " ")


def entity_fields(schema: dict, skip: Iterable[str] = ()) -> list[Field]:
    """Kong field list -> inputs (auto fields and `skip` left out)."""
    out = []
    for item in schema.get("fields", []):
        (name, spec), = item.items()
        if spec.get("auto") or name in skip:
            continue
        out.append(_kong_field(name, spec))
    return out


def _kong_field(name: str, spec: dict) -> Field:
    kind, options = _kong_kind(name, spec)
    return Field(name, kind, required=bool(spec.get("required")) and "default" not in spec,
                 default=spec.get("default"), options=options)


def _kong_kind(name: str, spec: dict) -> tuple[str, tuple[str, ...]]:
    t = spec.get("type")
    if spec.get("one_of"):
        return "select", tuple(str(v) for v in spec["one_of"])
    if t == "string":
        return ("textarea" if name in LONG_TEXT else "text"), ()
    if t in ("integer", "number"):
        return "number", ()
    if t == "boolean":
        return "bool", ()
    if t in ("array", "set") and (spec.get("elements") or {}).get("type") == "string":
        return "list", ()
    if t == "foreign":
        return "foreign", ()
    return "json", ()


def plugin_config_fields(schema: dict) -> list[Field]:
    """A plugin's `config` JSON Schema (pydantic's) -> `config.<name>` inputs."""
    config = next((f["config"] for f in schema.get("fields", []) if "config" in f), {})
    js = config.get("json_schema") or {}
    required = set(js.get("required", ()))
    out = []
    for name, prop in (js.get("properties") or {}).items():
        kind, options = _json_kind(prop)
        out.append(Field(f"config.{name}", kind, required=name in required, default=prop.get("default"),
                         options=options, help=prop.get("description", "")))
    return out


def _json_kind(prop: dict) -> tuple[str, tuple[str, ...]]:
    alts = [a for a in prop.get("anyOf", [prop]) if a.get("type") != "null"]
    one = alts[0] if len(alts) == 1 else {}
    if one.get("enum"):
        return "select", tuple(str(v) for v in one["enum"])
    t = one.get("type")
    if t == "string":
        return "text", ()
    if t in ("integer", "number"):
        return "number", ()
    if t == "boolean":
        return "bool", ()
    if t == "array" and (one.get("items") or {}).get("type") == "string" and not one["items"].get("enum"):
        return "list", ()
    return "json", ()


def lookup(entity: dict, dotted: str) -> Any:
    value: Any = entity
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def shown(field: Field, value: Any) -> str:
    """A stored value as the input shows it."""
    if value is None:
        return ""
    if field.kind == "foreign":
        return str(value.get("id", "")) if isinstance(value, dict) else str(value)
    if field.kind == "list":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if field.kind == "bool":
        return "true" if value else "false"
    if field.kind == "json":
        return json.dumps(value, indent=1)
    return str(value)


def parse(field: Field, text: str) -> Any:
    """The input's text -> the JSON value sent (None: unset). ValueError names the problem."""
    text = text.strip()
    if text == "":
        return None
    if field.kind == "number":
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"expected a number, got {text!r}") from None
    if field.kind == "bool":
        return text == "true"
    if field.kind == "list":
        return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
    if field.kind == "foreign":
        return {"id": text} if UUID.match(text) else {"name": text}
    if field.kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid JSON: {e.msg} (line {e.lineno})") from None
    if field.kind == "select" and text.lstrip("-").isdigit() and field.name != "algorithm":
        return int(text)  # Kong's integer one_of (https_redirect_status_code)
    return text


def body_from_form(fields: list[Field], form: Any, current: dict | None = None) -> tuple[dict, dict[str, str]]:
    """(body, errors). Creating (`current` None): the filled inputs. Editing: the changed ones,
    a cleared input as null (Kong's way to unset a field in a PATCH)."""
    body: dict = {}
    errors: dict[str, str] = {}
    for field in fields:
        if field.name not in form:
            continue
        try:
            value = parse(field, form[field.name])
        except ValueError as e:
            errors[field.name] = str(e)
            continue
        if current is None:
            if value is not None:
                _put(body, field.name, value)
        elif shown(field, value) != shown(field, lookup(current, field.name)):
            _put(body, field.name, value)
    return body, errors


def _put(body: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        body = body.setdefault(part, {})
    body[last] = value


def flat_errors(fields: Any, prefix: str = "") -> dict[str, str]:
    """The Admin API's `fields` (nested records) -> {dotted name: message}."""
    if not isinstance(fields, dict):
        return {prefix.rstrip("."): str(fields)} if prefix else {}
    out: dict[str, str] = {}
    for key, value in fields.items():
        if isinstance(value, dict):
            out.update(flat_errors(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            out[f"{prefix}{key}"] = "; ".join(str(v) for v in value if v)
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def answer_errors(body: dict) -> tuple[dict[str, str], str]:
    """(errors by field, message) of an Admin API refusal. Kong's unique violation (code 5) names
    the fields with the values that clash, not a reason: the message is shown on them instead."""
    message = str(body.get("message", ""))
    if body.get("code") == 5 and isinstance(body.get("fields"), dict):
        return {k: f"already in use: {message}" for k in body["fields"]}, message
    return flat_errors(body.get("fields") or {}), message
