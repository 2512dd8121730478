"""Normalise and validate decoded config entries, with Consul's rules and messages
(`agent/structs/config_entry*.go`). Consul stops at the first problem; so do we.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ._filter import FilterError, check_filter

GLOBAL = "global"
WILDCARD = "*"
MESH_GATEWAY_MODES = ("", "none", "local", "remote")
PROXY_MODES = ("", "direct", "transparent")
LB_POLICIES = ("", "random", "round_robin", "least_request", "ring_hash", "maglev")
_SUBSET = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


class EntryError(ValueError):
    """A config entry Consul would refuse; the message is Consul's."""


def normalize(entry: dict[str, Any]) -> dict[str, Any]:
    """Consul's `Normalize()`: defaults that are part of the stored entry."""
    out = dict(entry)
    kind = out["Kind"]
    if kind == "proxy-defaults":
        if out.get("Name", "") not in ("", GLOBAL):
            raise EntryError(f'invalid name ("{out["Name"]}"), only "{GLOBAL}" is supported')
        out["Name"] = GLOBAL
    if kind == "service-defaults" and out.get("Protocol"):
        out["Protocol"] = out["Protocol"].lower()
    if kind == "service-intentions":
        out["Sources"] = _normalize_sources(out)
    return out


def _normalize_sources(entry: dict[str, Any]) -> list[dict[str, Any]]:
    dest_exact = 1 if entry.get("Name") == WILDCARD else 2
    ceiling = {2: 9, 1: 6}[dest_exact]
    sources = []
    for src in entry.get("Sources") or ():
        src = dict(src)
        src.setdefault("Type", "consul")
        if not src.get("Type"):
            src["Type"] = "consul"
        src["Precedence"] = ceiling - (2 - (1 if src.get("Name") == WILDCARD else 2))
        for perm in src.get("Permissions") or ():
            http = perm.get("HTTP") or {}
            if http.get("Methods"):
                http["Methods"] = [m.upper() for m in http["Methods"]]
        sources.append(src)
    return sorted(sources, key=lambda s: -s["Precedence"])  # stable: the file's order within a precedence


def validate(entry: dict[str, Any]) -> None:
    """Raise EntryError with Consul's message for the first problem."""
    if not entry.get("Name"):
        raise EntryError("Name is required")
    _check_meta(entry.get("Meta"))
    _VALIDATORS[entry["Kind"]](entry)


def _check_meta(meta: Any) -> None:
    if not meta:
        return
    if len(meta) > 64:
        raise EntryError("Meta exceeds maximum element count 64")
    for key, value in meta.items():
        if len(key) > 128:
            raise EntryError(f'Meta key "{key}" exceeds maximum length 128')
        if not isinstance(value, str):  # Consul's Meta is map[string]string
            raise EntryError(f'Meta value for key "{key}" is not a string')
        if len(value) > 512:
            raise EntryError(f'Meta value for key "{key}" exceeds maximum length 512')


def _check_gateway_and_mode(entry: dict[str, Any]) -> None:
    mode = (entry.get("MeshGateway") or {}).get("Mode", "")
    if mode not in MESH_GATEWAY_MODES:
        raise EntryError(f'Invalid Mesh Gateway Mode: "{mode}"')
    if entry.get("Mode", "") not in PROXY_MODES:
        raise EntryError(f'Invalid Proxy Mode: "{entry["Mode"]}"')


def _proxy_defaults(entry: dict[str, Any]) -> None:
    if entry["Name"] != GLOBAL:
        raise EntryError(f'invalid name ("{entry["Name"]}"), only "{GLOBAL}" is supported')
    _check_gateway_and_mode(entry)


def _service_defaults(entry: dict[str, Any]) -> None:
    if entry["Name"] == WILDCARD:
        raise EntryError("service-defaults name must be the name of a service, and not a wildcard")
    _check_gateway_and_mode(entry)
    balance = entry.get("BalanceInboundConnections", "")
    if balance not in ("", "exact_balance"):
        raise EntryError(f"invalid value for balance_inbound_connections: {balance}")
    upstreams = entry.get("UpstreamConfig")
    if upstreams is not None and entry.get("Destination") is not None:
        raise EntryError("UpstreamConfig and Destination are mutually exclusive for service defaults")
    destination = entry.get("Destination")
    if destination is not None:
        if not destination.get("Addresses"):
            raise EntryError("Destination must contain at least one valid address")
        port = destination.get("Port", 0)
        if not 1 <= port <= 65535:
            raise EntryError(f"Invalid Port number {port}")


def _subsets_valid(entry: dict[str, Any]) -> Callable[[str], bool]:
    subsets = entry.get("Subsets") or {}
    for name, subset in subsets.items():
        if name == "":
            raise EntryError("Subset defined with empty name")
        if len(name) > 63 or not _SUBSET.match(name):
            raise EntryError(f'Subset "{name}" is invalid: must be 63 characters or fewer, begin or end with lower '
                             "case alphanumeric characters, and contain lower case alphanumeric characters or '-' in between")
        if subset.get("Filter"):
            try:
                check_filter(subset["Filter"])
            except FilterError as e:
                raise EntryError(f'Filter for subset "{name}" is not a valid expression: {e}') from None
    return lambda name: name in subsets


def _service_resolver(entry: dict[str, Any]) -> None:
    is_subset = _subsets_valid(entry)
    name = entry["Name"]
    default = entry.get("DefaultSubset", "")
    if default and not is_subset(default):
        raise EntryError(f'DefaultSubset "{default}" is not a valid subset')
    redirect, failover = entry.get("Redirect"), entry.get("Failover") or {}
    if redirect is not None:
        _redirect(entry, redirect, failover, is_subset)
    for subset, f in failover.items():
        _failover(name, subset, f, is_subset)
    for field in ("ConnectTimeout", "RequestTimeout"):
        if entry.get(field, 0) < 0:
            from ._decode import format_duration

            raise EntryError(f"Bad {field} '{format_duration(entry[field])}', must be >= 0")
    policy = (entry.get("LoadBalancer") or {}).get("Policy", "")
    if policy not in LB_POLICIES:
        raise EntryError(f'Bad LoadBalancer policy: "{policy}" is not supported')


def _redirect(entry: dict, r: dict, failover: dict, is_subset: Callable[[str], bool]) -> None:
    if r.get("Datacenter") and r.get("Partition", "default") not in ("", "default"):
        raise EntryError("Cross-datacenter and cross-partition redirect is not supported")
    if failover:
        raise EntryError("Redirect and Failover cannot both be set")
    if not any(r.get(k) for k in ("Service", "ServiceSubset", "Namespace", "Partition", "Datacenter", "Peer")):
        raise EntryError("Redirect is empty")
    if r.get("Peer") and r.get("ServiceSubset"):
        raise EntryError("Redirect.Peer cannot be set with Redirect.ServiceSubset")
    if r.get("Peer") and r.get("Partition"):
        raise EntryError("Redirect.Partition cannot be set with Redirect.Peer")
    if r.get("Peer") and r.get("Datacenter"):
        raise EntryError("Redirect.Peer cannot be set with Redirect.Datacenter")
    if not r.get("Service"):
        for field in ("ServiceSubset", "Namespace", "Partition", "Peer"):
            if r.get(field):
                raise EntryError(f"Redirect.{field} defined without Redirect.Service")
    elif r.get("ServiceSubset") and r["Service"] == entry["Name"] and not is_subset(r["ServiceSubset"]):
        raise EntryError(f'Redirect.ServiceSubset "{r["ServiceSubset"]}" is not a valid subset of "{entry["Name"]}"')


def _failover(name: str, subset: str, f: dict, is_subset: Callable[[str], bool]) -> None:
    prefix = f'Bad Failover["{subset}"]'
    if subset != WILDCARD and not is_subset(subset):
        raise EntryError(f"{prefix}: not a valid subset")
    if not any(f.get(k) for k in ("Service", "ServiceSubset", "Namespace", "Datacenters", "Targets", "SamenessGroup")):
        raise EntryError(f"{prefix}: one of Service, ServiceSubset, Namespace, Targets, or Datacenters is required")
    if f.get("ServiceSubset") and f.get("Service", name) in ("", name) and not is_subset(f["ServiceSubset"]):
        raise EntryError(f'{prefix}: ServiceSubset "{f["ServiceSubset"]}" is not a valid subset of "{name}"')
    targets = f.get("Targets") or []
    if f.get("Datacenters") and targets:
        raise EntryError(f"{prefix}: Targets cannot be set with Datacenters")
    if f.get("ServiceSubset") and targets:
        raise EntryError(f"{prefix}: Targets cannot be set with ServiceSubset")
    if f.get("Service") and targets:
        raise EntryError(f"{prefix}: Targets cannot be set with Service")
    for i, t in enumerate(targets):
        where = f"{prefix}.Targets[{i}]"
        for a, b in (("Peer", "ServiceSubset"), ("Partition", "Peer"), ("Peer", "Datacenter"), ("Partition", "Datacenter")):
            if t.get(a) and t.get(b):
                raise EntryError(f"{where}: {a} cannot be set with {b}")
        if t.get("ServiceSubset") and t.get("Service", name) in ("", name) and not is_subset(t["ServiceSubset"]):
            raise EntryError(f'{where}: ServiceSubset "{t["ServiceSubset"]}" is not a valid subset of "{name}"')
    if any(dc == "" for dc in f.get("Datacenters") or ()):
        raise EntryError(f"{prefix}.Datacenters: found empty datacenter")


def _wildcards(name: str) -> str | None:
    if name != WILDCARD and WILDCARD in name:
        return "Name: wildcard character '*' cannot be used with partial values"
    return None


def _service_intentions(entry: dict[str, Any]) -> None:
    problem = _wildcards(entry["Name"])
    if problem:
        raise EntryError(problem)
    sources = entry.get("Sources") or []
    if not sources:
        raise EntryError("At least one source is required")
    seen: set[str] = set()
    for i, src in enumerate(sources):
        _source(entry, i, src)
        if src["Name"] in seen:
            raise EntryError(f'Sources[{i}] defines "{src["Name"]}" more than once')
        seen.add(src["Name"])


def _source(entry: dict, i: int, src: dict) -> None:
    if not src.get("Name"):
        raise EntryError(f"Sources[{i}].Name is required")
    problem = _wildcards(src["Name"])
    if problem:
        raise EntryError(f"Sources[{i}].{problem}")
    if len(src.get("Description", "")) > 512:
        raise EntryError(f"Sources[{i}].Description exceeds maximum length 512")
    permissions = src.get("Permissions") or []
    if not permissions and src.get("Action") not in ("allow", "deny"):
        raise EntryError(f"Sources[{i}].Action must be set to 'allow' or 'deny'")
    if permissions and src.get("Action"):
        raise EntryError(f"Sources[{i}].Action must be omitted if Permissions are specified")
    if permissions and entry["Name"] == WILDCARD:
        raise EntryError(f"Sources[{i}].Permissions cannot be specified on intentions with wildcarded destinations")
    if src.get("Type") != "consul":
        raise EntryError(f"Sources[{i}].Type must be set to 'consul'")
    for j, perm in enumerate(permissions):
        _permission(i, j, perm)


def _permission(i: int, j: int, perm: dict) -> None:
    if perm.get("Action") not in ("allow", "deny"):
        raise EntryError(f"Sources[{i}].Permissions[{j}].Action must be set to 'allow' or 'deny'")
    prefix = f"Sources[{i}].Permissions[{j}].HTTP"
    http = perm.get("HTTP")
    if http is None:
        raise EntryError(f"{prefix} is required")
    paths = [k for k in ("PathExact", "PathPrefix", "PathRegex") if http.get(k)]
    for k in ("PathExact", "PathPrefix"):
        if http.get(k) and not http[k].startswith("/"):
            raise EntryError(f"{prefix}.{k} doesn't start with '/': \"{http[k]}\"")
    if len(paths) > 1:
        raise EntryError(f"{prefix} should only contain at most one of PathExact, PathPrefix, or PathRegex")
    for k, header in enumerate(http.get("Header") or ()):
        if not header.get("Name"):
            raise EntryError(f"{prefix}.Header[{k}] missing required Name field")
        if sum(bool(header.get(f)) for f in ("Present", "Exact", "Regex", "Prefix", "Suffix")) != 1:
            raise EntryError(f"{prefix}.Header[{k}] should only contain one of Present, Exact, Prefix, Suffix, or Regex")
    found: set[str] = set()
    for method in http.get("Methods") or ():
        if method not in _METHODS:
            raise EntryError(f'{prefix}.Methods contains an invalid method "{method}"')
        if method in found:
            raise EntryError(f'{prefix}.Methods contains "{method}" more than once')
        found.add(method)
    if not paths and not http.get("Header") and not http.get("Methods"):
        raise EntryError(f"{prefix} should not be empty")


_VALIDATORS = {
    "proxy-defaults": _proxy_defaults,
    "service-defaults": _service_defaults,
    "service-resolver": _service_resolver,
    "service-intentions": _service_intentions,
}
