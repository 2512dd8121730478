"""`meshway explain SOURCE DESTINATION` and `meshway inspect dataplane NAME --type policies|config`.

Both read the control plane's resources over its Admin API (Kuma's paths) and run the same pure
functions as the data planes (`meshway.mesh._explain`, `_translate`), so what they print is what
the traffic does. `explain` exits 0 when the call is allowed, 3 when it is refused (1: an error).
"""
from __future__ import annotations

import json
from typing import Any

from ._mesh import CliError, _call, _cp_option, _guard

REFUSED = 3


def register(sub) -> None:
    p = sub.add_parser("explain", help="what happens to a call between two data planes, and why")
    p.add_argument("source", help="data plane name, service, or address[:port]")
    p.add_argument("destination", help="data plane name, service, or address[:port] of an inbound")
    p.add_argument("-m", "--mesh", default="default", help="mesh (default: default)")
    _cp_option(p)
    p.set_defaults(handler=_explain)


def resources(args, mesh: str) -> dict[str, Any]:
    """The mesh's resources from the control plane, in the snapshot section's shape."""
    meshes = [_call(args, "GET", f"/meshes/{mesh}").json()]
    dataplanes = _call(args, "GET", f"/meshes/{mesh}/dataplanes").json()["items"]
    policies = []
    for rtype, collection in (("MeshTrafficPermission", "meshtrafficpermissions"), ("TrafficPermission", "traffic-permissions")):
        for p in _call(args, "GET", f"/meshes/{mesh}/{collection}").json()["items"]:
            policies.append({"type": rtype, "mesh": mesh, **p})
    for d in dataplanes:
        d.setdefault("mesh", mesh)
    return {"meshes": meshes, "dataplanes": dataplanes, "policies": policies}


def _with_intentions(args, section: dict[str, Any]) -> dict[str, Any]:
    """The zone's Consul `service-intentions`, which the data planes enforce on the same permissions."""
    from meshway.zones._intentions import with_intentions

    try:
        entries = _call(args, "GET", "/v1/config/service-intentions").json()
    except (CliError, ValueError):
        return section  # a control plane without config entries
    return with_intentions(section, entries if isinstance(entries, list) else [])


def _zone(args) -> str:
    """This control plane's zone name (`GET /zones`), for the KRIs; Kuma's default zone name otherwise."""
    try:
        items = _call(args, "GET", "/zones").json().get("items") or []
    except CliError:
        items = []
    return (items[0].get("name") if items else None) or "default"


def _print_structured(fmt: str, value: Any) -> None:
    if fmt == "json":
        print(json.dumps(value, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(value, sort_keys=False), end="")


@_guard
def _explain(args) -> int:
    from meshway.mesh._explain import ExplainError, explain

    try:
        lines, allowed = explain(_with_intentions(args, resources(args, args.mesh)), args.mesh, args.source,
                                 args.destination)
    except ExplainError as e:
        lines, allowed = _other_zone(args, e)  # not in this zone: where it resolves (meshway.zones)
    print("\n".join(lines))
    return 0 if allowed else REFUSED


def _other_zone(args, error: Exception) -> tuple[list[str], bool]:
    """A destination service not in this zone: the zone's resolution of the call (config entries,
    gateways), or the original error when the control plane has no answer for it."""
    if ":" in args.destination:
        raise CliError(str(error)) from None
    try:
        found = _call(args, "GET", "/v1/zones/explain", params={"source": args.source, "mesh": args.mesh,
                                                               "service": args.destination.removesuffix(".mesh")})
        body = found.json()
    except (CliError, ValueError):
        raise CliError(str(error)) from None
    if body.get("routed") is None:  # no zone runs it: the local error stands
        raise CliError(str(error)) from None
    return body["lines"], body["routed"]


@_guard
def inspect_dataplane(args) -> int:
    """`inspect dataplane NAME --type policies|config`."""
    from meshway.mesh._explain import ExplainError, inbound_policies, policies_list, policies_table

    if not args.name:
        raise CliError("inspect dataplane needs the data plane's name")
    section = resources(args, args.mesh)
    try:
        if args.type == "config":
            from meshway.mesh._translate import declarative_view

            if not any(d["name"] == args.name for d in section["dataplanes"]):
                raise ExplainError(f"no dataplane {args.name!r} in mesh {args.mesh!r}")
            document, mesh_section = declarative_view(section, args.mesh, args.name)
            print(json.dumps({"routes": document, "mesh": mesh_section}, indent=2, sort_keys=True))
        else:
            listed = policies_list(section, args.mesh, args.name, _zone(args))
            if args.output in ("json", "yaml"):
                _print_structured(args.output, listed)
            else:
                print("\n".join([*policies_table(listed), "", *inbound_policies(section, args.mesh, args.name)]))
    except ExplainError as e:
        raise CliError(str(e)) from None
    return 0
