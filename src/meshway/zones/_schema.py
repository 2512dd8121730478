"""The fields of each config entry kind, as Consul's API structs declare them.

A field is `(canonical name, type, printed when empty)`. Types: "str", "bool", "int", "float",
"duration" (Go's `1m30s` text or nanoseconds), "strings" (list of str), "opaque" (a map kept as
written: `Config`, `Meta`), `Struct(fields)`, `ListOf(type)` and `MapOf(type)` (user-named keys:
subset names, `*`). Key matching follows Consul's decoder: a key matches a field whatever its case
(mapstructure) or as the field's snake_case alias (`connect_timeout`, `mesh_gateway`).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any


@dataclasses.dataclass(frozen=True)
class Struct:
    fields: tuple[tuple[str, Any, bool], ...]

    def lookup(self) -> dict[str, str]:
        """Accepted spelling (lower case) -> canonical name."""
        out: dict[str, str] = {}
        for name, _, _ in self.fields:
            out[name.lower()] = name
            out.setdefault(snake(name), name)
        return out

    def type_of(self, name: str) -> Any:
        return next(t for n, t, _ in self.fields if n == name)


@dataclasses.dataclass(frozen=True)
class ListOf:
    item: Any


@dataclasses.dataclass(frozen=True)
class MapOf:
    value: Any


def snake(name: str) -> str:
    """Consul's alias tags: `ConnectTimeout` -> `connect_timeout`, `SourceIP` -> `source_ip`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _s(*fields: tuple) -> Struct:
    return Struct(tuple((f[0], f[1], f[2] if len(f) > 2 else False) for f in fields))


MESH_GATEWAY = _s(("Mode", "str"))
TRANSPARENT_PROXY = _s(("OutboundListenerPort", "int"), ("DialedDirectly", "bool"))
EXPOSE = _s(("Checks", "bool"), ("Paths", ListOf(_s(("ListenerPort", "int"), ("Path", "str"),
                                                       ("LocalPathPort", "int"), ("Protocol", "str")))))
LIMITS = _s(("MaxConnections", "int"), ("MaxPendingRequests", "int"), ("MaxConcurrentRequests", "int"))
PASSIVE_HEALTH_CHECK = _s(("Interval", "duration"), ("MaxFailures", "int"), ("EnforcingConsecutive5xx", "int"))
UPSTREAM = _s(("Name", "str"), ("Namespace", "str"), ("Partition", "str"), ("Protocol", "str"),
              ("ConnectTimeoutMs", "int"), ("MeshGateway", MESH_GATEWAY), ("Limits", LIMITS),
              ("PassiveHealthCheck", PASSIVE_HEALTH_CHECK), ("BalanceOutboundConnections", "str"))

PROXY_DEFAULTS = _s(
    ("Kind", "str", True), ("Name", "str", True), ("Namespace", "str"), ("Partition", "str"),
    ("Mode", "str"), ("TransparentProxy", TRANSPARENT_PROXY), ("Config", "opaque"),
    ("MeshGateway", MESH_GATEWAY, True), ("Expose", EXPOSE, True), ("Meta", "opaque"),
)

SERVICE_DEFAULTS = _s(
    ("Kind", "str", True), ("Name", "str", True), ("Namespace", "str"), ("Partition", "str"),
    ("Protocol", "str"), ("Mode", "str"), ("TransparentProxy", TRANSPARENT_PROXY),
    ("MeshGateway", MESH_GATEWAY, True), ("Expose", EXPOSE, True), ("ExternalSNI", "str"),
    ("UpstreamConfig", _s(("Overrides", ListOf(UPSTREAM)), ("Defaults", UPSTREAM))),
    ("Destination", _s(("Addresses", "strings"), ("Port", "int"))),
    ("MaxInboundConnections", "int"), ("LocalConnectTimeoutMs", "int"), ("LocalRequestTimeoutMs", "int"),
    ("BalanceInboundConnections", "str"), ("Meta", "opaque"),
)

_TARGET = (("Service", "str"), ("ServiceSubset", "str"), ("Namespace", "str"), ("Partition", "str"),
           ("Datacenter", "str"), ("Peer", "str"))

SERVICE_RESOLVER = _s(
    ("Kind", "str", True), ("Name", "str", True), ("Namespace", "str"), ("Partition", "str"),
    ("DefaultSubset", "str"),
    ("Subsets", MapOf(_s(("Filter", "str"), ("OnlyPassing", "bool")))),
    ("Redirect", _s(*_TARGET, ("SamenessGroup", "str"))),
    ("Failover", MapOf(_s(("Service", "str"), ("ServiceSubset", "str"), ("Namespace", "str"),
                          ("Datacenters", "strings"), ("Targets", ListOf(_s(*_TARGET))),
                          ("SamenessGroup", "str")))),
    ("ConnectTimeout", "duration"), ("RequestTimeout", "duration"),
    ("LoadBalancer", _s(("Policy", "str"),
                        ("RingHashConfig", _s(("MinimumRingSize", "int"), ("MaximumRingSize", "int"))),
                        ("LeastRequestConfig", _s(("ChoiceCount", "int"))),
                        ("HashPolicies", ListOf(_s(("Field", "str"), ("FieldValue", "str"), ("SourceIP", "bool"),
                                                   ("Terminal", "bool")))))),
    ("Meta", "opaque"),
)

_HEADER = _s(("Name", "str"), ("Present", "bool"), ("Exact", "str"), ("Prefix", "str"), ("Suffix", "str"),
             ("Regex", "str"), ("Invert", "bool"))
_PERMISSION = _s(("Action", "str", True),
                 ("HTTP", _s(("PathExact", "str"), ("PathPrefix", "str"), ("PathRegex", "str"),
                             ("Header", ListOf(_HEADER)), ("Methods", "strings"))))

SERVICE_INTENTIONS = _s(
    ("Kind", "str", True), ("Name", "str", True), ("Namespace", "str"), ("Partition", "str"),
    ("Sources", ListOf(_s(("Name", "str", True), ("Namespace", "str"), ("Partition", "str"), ("Peer", "str"),
                          ("Action", "str"), ("Permissions", ListOf(_PERMISSION)), ("Precedence", "int", True),
                          ("Type", "str", True), ("Description", "str"))), True),
    ("Meta", "opaque"),
)

KINDS: dict[str, Struct] = {
    "proxy-defaults": PROXY_DEFAULTS,
    "service-defaults": SERVICE_DEFAULTS,
    "service-resolver": SERVICE_RESOLVER,
    "service-intentions": SERVICE_INTENTIONS,
}
