"""grpc-gateway's REST -> gRPC mapping: `google.api.http` rules compiled once, matched per request.

Rules (google/api/http.proto, as Kong's grpc-gateway reads them):
- A rule is an HTTP method (get, put, post, delete, patch; `custom` is ignored, as by Kong) and a
  path template: `Template = "/" Segments [":" Verb]`, a segment is `*` (one segment), `**`
  (the rest), a literal, or `{field.path}` / `{field.path=Segments}` binding what it matches to a
  field of the request message. `additional_bindings` are rules of the same method.
- Templates become one anchored regular expression each, when the config is compiled; a request
  is matched against its method's rules in the order of the file.
- Payload: the bound variables (percent-decoded), then `body: "*"` (the JSON object's fields),
  `body: "field"` (the whole JSON document into that field), or, without a body rule, the query
  parameters: `a.b=v` sets field b of message field a; names that are not fields of the message
  are dropped (Kong: "removes unbound query args"); a bool is true unless `0` or `false`; a
  repeated field takes every value. Bound variables win over query parameters.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from ._grpc_proto import Method, Proto

__all__ = ["Binding", "GatewayError", "compile_rules", "match", "payload_for"]

log = logging.getLogger("meshway.plugins")
_METHODS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:=([^{}]*))?\}")
_LITERAL_SEGMENT = re.compile(r"[^/{}*]+")


class GatewayError(ValueError):
    """The request cannot be mapped; the message is Kong's 400 body."""


@dataclass(frozen=True)
class Binding:
    """One compiled rule: its regex, the fields its groups bind, the method and the body rule."""

    regex: re.Pattern
    fields: tuple[str, ...]
    method: Method
    body: str


def compile_rules(proto: Proto) -> dict[str, tuple[Binding, ...]]:
    """Every rule of the file's methods, by lower-case HTTP method."""
    out: dict[str, list[Binding]] = {}
    for method in proto.methods.values():
        for rule in method.rules:
            verb = rule.WhichOneof("pattern")
            if verb not in _METHODS:
                continue
            template = getattr(rule, verb)
            try:
                regex, fields = _template(template)
            except ValueError as e:
                log.error("grpc-gateway: %s: ignoring path template %r of %s: %s", proto.file, template, method.path, e)
                continue
            out.setdefault(verb, []).append(Binding(regex, fields, method, rule.body))
    return {verb: tuple(bindings) for verb, bindings in out.items()}


def _template(template: str) -> tuple[re.Pattern, tuple[str, ...]]:
    if not template.startswith("/"):
        raise ValueError("a template starts with /")
    parts, fields, at = [], [], 0
    for m in _VARIABLE.finditer(template):
        parts.append(_segments(template[at:m.start()]))
        fields.append(m.group(1))
        parts.append("(" + (_segments(m.group(2)) if m.group(2) else "[^/]+") + ")")
        at = m.end()
    parts.append(_segments(template[at:]))
    return re.compile("".join(parts) + r"\Z"), tuple(fields)


def _segments(text: str) -> str:
    """A literal stretch of a template (with `*` and `**` segments and a `:verb`) as regex."""
    if "{" in text or "}" in text:
        raise ValueError("unbalanced braces")
    out = []
    for token in re.split(r"(\*\*|\*)", text):
        out.append({"**": ".+", "*": "[^/]+"}.get(token) or re.escape(token))
    return "".join(out)


def match(bindings: dict[str, tuple[Binding, ...]], http_method: str, path: str) -> tuple[Binding, list[str]]:
    """The rule a request takes and its bound values; GatewayError with Kong's message if none."""
    verb = http_method.lower()
    candidates = bindings.get(verb)
    if not candidates:
        raise GatewayError(f'failed to transcode .proto file Unknown method "{verb}"')
    for binding in candidates:
        m = binding.regex.match(path)
        if m is not None:
            return binding, list(m.groups())
    raise GatewayError(f'failed to transcode .proto file Unknown path "{path}"')


def payload_for(binding: Binding, values: list[str], body: bytes, query: str) -> dict[str, Any]:
    """The request message as JSON: query or body, then the bound variables."""
    desc = binding.method.input.DESCRIPTOR
    payload: dict[str, Any] = {}
    if binding.body:
        if body:
            try:
                doc = json.loads(body)
            except ValueError as e:
                raise GatewayError(f"decode json err: {e}") from None
            if binding.body != "*":
                _put(payload, desc, binding.body.split("."), doc, raw=True)
            elif isinstance(doc, dict):
                payload.update(doc)
            else:
                raise GatewayError("body must be a table")
    else:
        for name, value in parse_qsl(query, keep_blank_values=True):
            _put(payload, desc, name.split("."), value)
    for name, value in zip(binding.fields, values):
        _put(payload, desc, name.split("."), unquote(value))
    return payload


def _put(payload: dict[str, Any], desc: Any, path: list[str], value: Any, raw: bool = False) -> None:
    """Set `value` at a field path of the message `desc`; a path that is not its fields is dropped
    (and leaves nothing behind: no empty parent message)."""
    fields = []
    for i, name in enumerate(path):
        field = desc.fields_by_name.get(name) if desc is not None else None
        if field is None:
            return
        fields.append(field)
        if i < len(path) - 1:
            if field.message_type is None or _repeated(field):
                return
            desc = field.message_type
    node = payload
    for field in fields[:-1]:
        child = node.get(field.name)
        if not isinstance(child, dict):
            child = node[field.name] = {}
        node = child
    _leaf(node, fields[-1], value, raw)


def _leaf(node: dict[str, Any], field: Any, value: Any, raw: bool) -> None:
    if raw:
        node[field.name] = value
        return
    if field.message_type is not None and not _wrapper(field):
        return  # a query parameter cannot fill a whole message
    if field.type == field.TYPE_BOOL:
        value = value not in ("0", "false")  # Kong's encode_fix for URI parameters
    if _repeated(field):
        node.setdefault(field.name, []).append(value)
    else:
        node[field.name] = value


def _repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28; `label` before
    return repeated if repeated is not None else field.label == field.LABEL_REPEATED


def _wrapper(field: Any) -> bool:
    return field.message_type.full_name.startswith("google.protobuf.") and \
        field.message_type.full_name.endswith(("Value", "Timestamp", "Duration"))
