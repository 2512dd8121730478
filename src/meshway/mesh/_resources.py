"""Kuma 2.x `Mesh` and `Dataplane` resources (Universal YAML/JSON), validated with pydantic.

Rules (Kuma's `api/mesh/v1alpha1/dataplane.proto` and its validator, 2.x line):
- A resource is `{type, mesh, name, ...spec}`; unknown fields are refused, as Kuma's protobuf
  decoding refuses them. Errors name the field the way kumactl prints them:
  `networking.inbound[0].tags["kuma.io/service"]: tag has to exist`.
- A Dataplane has `networking.address` and at least one inbound or a gateway (not both); every
  inbound and the gateway carry a `kuma.io/service` tag; ports are 1..65535; `servicePort`
  defaults to `port`, `serviceAddress` to the inbound's `address`, which defaults to
  `networking.address`. `transparentProxying` takes both redirect ports, `reachableServices`
  (2.x) and `reachableBackends` (MeshService refs).
- The stored body is what the user wrote (minus `type`/`mesh`/`name`), plus Kuma's
  `creationTime`/`modificationTime`; effective values (servicePort...) are derived on use.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
PROTOCOLS = ("http", "http2", "grpc", "tcp", "kafka")
_NAME = re.compile(r"^[0-9a-z.\-_]{1,253}$")
_MESH_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TAG_KEY = re.compile(r"^[a-zA-Z0-9.\-_:/]+$")
_TAG_VALUE = re.compile(r"^[a-zA-Z0-9.\-_:/*]+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")
TYPES = ("Mesh", "Dataplane", "MeshTrafficPermission", "TrafficPermission")
POLICY_TYPES = ("MeshTrafficPermission", "TrafficPermission")  # mesh-scoped policies (see _permissions)


class ResourceError(ValueError):
    """A resource is invalid; `.causes` is a list of (field, message), in Kuma's field notation."""

    def __init__(self, causes: list[tuple[str, str]]) -> None:
        self.causes = causes
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in causes))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Loose(BaseModel):
    """Parts meshway stores and shows but does not act on (yet): any shape Kuma accepts."""
    model_config = ConfigDict(extra="allow")


Port = int


class Health(_Strict):
    ready: bool | None = None


class Inbound(_Strict):
    port: Port | None = None
    servicePort: Port | None = None
    serviceAddress: str | None = None
    address: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    serviceProbe: _Loose | None = None
    health: Health | None = None
    name: str | None = None
    state: Literal["Ready", "NotReady", "Ignored"] | None = None


class BackendRef(_Strict):
    kind: str = "MeshService"
    name: str | None = None
    namespace: str | None = None
    port: Port | None = None
    labels: dict[str, str] | None = None


class Outbound(_Strict):
    port: Port | None = None
    address: str | None = None
    tags: dict[str, str] | None = None
    backendRef: BackendRef | None = None


class Gateway(_Strict):
    type: Literal["DELEGATED", "BUILTIN"] = "DELEGATED"
    tags: dict[str, str] = Field(default_factory=dict)


class ReachableBackends(_Strict):
    refs: list[BackendRef] = Field(default_factory=list)


class TransparentProxying(_Strict):
    redirectPortInbound: Port | None = None
    redirectPortOutbound: Port | None = None
    redirectPortInboundV6: Port | None = None
    directAccessServices: list[str] | None = None
    reachableServices: list[str] | None = None
    reachableBackends: ReachableBackends | None = None
    ipFamilyMode: Literal["DualStack", "IPv4", "dualstack", "ipv4"] | None = None


class Admin(_Strict):
    port: Port | None = None


class Networking(_Strict):
    address: str | None = None
    advertisedAddress: str | None = None
    inbound: list[Inbound] = Field(default_factory=list)
    outbound: list[Outbound] = Field(default_factory=list)
    gateway: Gateway | None = None
    transparentProxying: TransparentProxying | None = None
    admin: Admin | None = None


class DataplaneSpec(_Strict):
    networking: Networking | None = None
    metrics: _Loose | None = None
    probes: _Loose | None = None


class MtlsBackend(_Strict):
    name: str
    type: str = "builtin"
    dpCert: _Loose | None = None
    conf: _Loose | None = None
    mode: Literal["STRICT", "PERMISSIVE"] | None = None


class Mtls(_Strict):
    enabledBackend: str | None = None
    backends: list[MtlsBackend] = Field(default_factory=list)
    skipValidation: bool | None = None

    @model_validator(mode="after")
    def _enabled_is_declared(self) -> "Mtls":
        if self.enabledBackend and self.enabledBackend not in {b.name for b in self.backends}:
            raise ValueError(f"enabledBackend: has to be set to one of the backends in the mesh")
        return self


class MeshSpec(_Strict):
    mtls: Mtls | None = None
    logging: _Loose | None = None
    metrics: _Loose | None = None
    tracing: _Loose | None = None
    networking: _Loose | None = None
    routing: _Loose | None = None
    constraints: _Loose | None = None
    skipCreatingInitialPolicies: list[str] | None = None
    meshServices: _Loose | None = None


_SPECS = {"Mesh": MeshSpec, "Dataplane": DataplaneSpec}
_META = ("type", "mesh", "name", "creationTime", "modificationTime", "labels")


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "model")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_causes(err: ValidationError) -> list[tuple[str, str]]:
    causes = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        field, _, rest = msg.partition(": ")
        if rest and " " not in field:  # a model validator naming its own field
            causes.append((".".join(p for p in (_path(e["loc"]), field) if p), rest))
        elif e["type"] == "extra_forbidden":
            causes.append((_path(e["loc"]), "unknown field"))
        else:
            causes.append((_path(e["loc"]), msg[:1].lower() + msg[1:] if msg[:1].isupper() and msg[1:2].islower() else msg))
    return causes


def parse_resource(data: Any, *, mesh: str | None = None, name: str | None = None,
                   kind: str | None = None) -> dict[str, Any]:
    """A checked resource `{type, mesh?, name, ...spec}`; ResourceError naming every bad field.

    `mesh`/`name`/`kind` come from the URL of a PUT and must agree with the body when it has them."""
    if not isinstance(data, dict):
        raise ResourceError([("", "a resource must be an object (YAML mapping)")])
    rtype = data.get("type", kind)
    causes: list[tuple[str, str]] = []
    if rtype not in TYPES:
        raise ResourceError([("type", f"must be one of {', '.join(TYPES)} (got {rtype!r})")])
    if kind and rtype != kind:
        causes.append(("type", f"is {rtype!r} but the path is for {kind!r}"))
    rname = data.get("name", name)
    if name is not None and rname != name:
        causes.append(("name", f"{rname!r} does not match the name in the path ({name!r})"))
    _check_name(rtype, rname, causes)
    rmesh = None
    if rtype != "Mesh":
        rmesh = data.get("mesh", mesh or "default")
        if mesh is not None and rmesh != mesh:
            causes.append(("mesh", f"{rmesh!r} does not match the mesh in the path ({mesh!r})"))
        elif not isinstance(rmesh, str) or not _MESH_NAME.match(rmesh):
            causes.append(("mesh", "must be a mesh name"))
    spec_in = {k: v for k, v in data.items() if k not in _META}
    try:
        spec = _SPECS[rtype].model_validate(spec_in)
    except ValidationError as e:
        raise ResourceError(causes + _pydantic_causes(e)) from None
    if rtype == "Dataplane":
        causes += dataplane_causes(spec)
    if rtype == "Mesh" and spec.mtls is not None:
        from ._mtls import backend_causes

        causes += backend_causes(spec.mtls.model_dump(exclude_none=True))
    if causes:
        raise ResourceError(causes)
    out: dict[str, Any] = {"type": rtype}
    if rmesh is not None:
        out["mesh"] = rmesh
    out["name"] = rname
    if isinstance(data.get("labels"), dict):
        out["labels"] = data["labels"]
    out.update(spec.model_dump(exclude_none=True, exclude_defaults=True))
    if rtype == "Dataplane":  # an empty inbound list is meaningful output in Kuma's shape
        out.setdefault("networking", {}).setdefault("inbound", [i.model_dump(exclude_none=True) for i in spec.networking.inbound])
    return out


def _check_name(rtype: str, name: Any, causes: list) -> None:
    pattern = _MESH_NAME if rtype == "Mesh" else _NAME
    if not isinstance(name, str) or not name:
        causes.append(("name", "cannot be empty"))
    elif not pattern.match(name):
        causes.append(("name", "invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'"
                       if rtype != "Mesh" else "must be a DNS-1123 label (lower case letters, digits and '-')"))


def _check_address(path: str, value: str | None, causes: list, *, required: bool = False, ip_only: bool = False) -> None:
    if value is None or value == "":
        if required:
            causes.append((path, "address can't be empty"))
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if ip_only or not _HOSTNAME.match(value):
            causes.append((path, "address has to be valid IP address" + ("" if ip_only else " or domain name")))


def _check_port(path: str, value: int | None, causes: list, *, required: bool = False) -> None:
    if value is None:
        if required:
            causes.append((path, "port has to be defined"))
    elif not 1 <= value <= 65535:
        causes.append((path, "port must be in the range [1, 65535]"))


def _check_tags(path: str, tags: dict[str, str] | None, causes: list, *, service: bool = True) -> None:
    tags = tags or {}
    if service and not tags.get(SERVICE_TAG):
        causes.append((f'{path}["{SERVICE_TAG}"]', "tag has to exist" if SERVICE_TAG not in tags else "tag value cannot be empty"))
    for key, value in tags.items():
        if not _TAG_KEY.match(key):
            causes.append((f"{path}", f"tag name {key!r} must consist of alphanumeric characters, dots, dashes, slashes and underscores"))
        elif value and not _TAG_VALUE.match(value):
            causes.append((f'{path}["{key}"]', "value must consist of alphanumeric characters, dots, dashes and underscores"))
        elif not value:
            causes.append((f'{path}["{key}"]', "tag value cannot be empty"))
    proto = tags.get(PROTOCOL_TAG)
    if proto and proto not in PROTOCOLS:
        causes.append((f'{path}["{PROTOCOL_TAG}"]', f"tag has to be one of {', '.join(PROTOCOLS)}"))


def dataplane_causes(spec: DataplaneSpec) -> list[tuple[str, str]]:
    """Kuma's Dataplane rules beyond the shape."""
    causes: list[tuple[str, str]] = []
    net = spec.networking
    if net is None:
        return [("networking", "must be defined")]
    _check_address("networking.address", net.address, causes, required=True)
    _check_address("networking.advertisedAddress", net.advertisedAddress, causes)
    if not net.inbound and net.gateway is None:
        causes.append(("networking", "has to contain at least one inbound interface or gateway"))
    if net.inbound and net.gateway is not None and net.gateway.type == "DELEGATED":
        causes.append(("networking.inbound", "inbound cannot be defined both with gateway"))
    for i, inbound in enumerate(net.inbound):
        p = f"networking.inbound[{i}]"
        _check_port(f"{p}.port", inbound.port, causes, required=True)
        _check_port(f"{p}.servicePort", inbound.servicePort, causes)
        _check_address(f"{p}.serviceAddress", inbound.serviceAddress, causes, ip_only=True)
        _check_address(f"{p}.address", inbound.address, causes, ip_only=True)
        _check_tags(f"{p}.tags", inbound.tags, causes)
    for i, outbound in enumerate(net.outbound):
        p = f"networking.outbound[{i}]"
        _check_port(f"{p}.port", outbound.port, causes, required=True)
        _check_address(f"{p}.address", outbound.address, causes, ip_only=True)
        if outbound.backendRef is None:
            _check_tags(f"{p}.tags", outbound.tags, causes)
    if net.gateway is not None:
        _check_tags("networking.gateway.tags", net.gateway.tags, causes)
    tp = net.transparentProxying
    if tp is not None:
        for field in ("redirectPortInbound", "redirectPortOutbound", "redirectPortInboundV6"):
            _check_port(f"networking.transparentProxying.{field}", getattr(tp, field), causes)
        for i, ref in enumerate((tp.reachableBackends.refs if tp.reachableBackends else [])):
            if not ref.name and not ref.labels:
                causes.append((f"networking.transparentProxying.reachableBackends.refs[{i}]", "name or labels are required"))
    if net.admin is not None:
        _check_port("networking.admin.port", net.admin.port, causes)
    return causes


# ---- effective values (what Kuma derives from the defaults) -----------------------------------
def inbounds(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Each inbound with `address`, `servicePort`, `serviceAddress` and `service` filled in."""
    net = resource.get("networking") or {}
    out = []
    for inbound in net.get("inbound") or ():
        address = inbound.get("address") or net.get("address")
        out.append({
            **inbound, "address": address, "servicePort": inbound.get("servicePort") or inbound["port"],
            "serviceAddress": inbound.get("serviceAddress") or address,
            "service": (inbound.get("tags") or {}).get(SERVICE_TAG, ""),
        })
    return out


def services(resource: dict[str, Any]) -> list[str]:
    """The `kuma.io/service` names a Dataplane provides (inbounds, or its gateway)."""
    net = resource.get("networking") or {}
    names = [i["service"] for i in inbounds(resource) if i.get("state") != "Ignored"]
    if net.get("gateway"):
        names.append((net["gateway"].get("tags") or {}).get(SERVICE_TAG, ""))
    return list(dict.fromkeys(n for n in names if n))


def default_mesh() -> dict[str, Any]:
    return {"type": "Mesh", "name": "default"}


# Policies validate in their own modules (they import the helpers above).
from ._mtp import MeshTrafficPermissionBody  # noqa: E402

_SPECS["MeshTrafficPermission"] = MeshTrafficPermissionBody
from ._tp import TrafficPermissionBody  # noqa: E402

_SPECS["TrafficPermission"] = TrafficPermissionBody
