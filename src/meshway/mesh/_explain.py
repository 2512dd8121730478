"""`meshway explain`: what happens to a call from a source to a destination in a mesh, and why.

The same pure functions the data planes run (`_permissions`, `_mtls`), applied to the resources
the control plane holds, so the answer is what the traffic does:
- source and destination are data plane names, services, or `address[:port]`;
- the identity each side presents (Kuma's SANs) and who issues its certificate;
- whether mTLS applies (the Mesh's `enabledBackend`, its mode), whether the destination is among
  the source's reachable services, which permission matched (policy and `from` entry), the
  endpoint (inbound address:port and the app behind it), or why the call is refused.
"""
from __future__ import annotations

from typing import Any

from ._mtls import DEFAULT_DP_EXPIRATION, enabled_backend
from ._permissions import (LEGACY, client_identity, compile_inbound, decide, kuma_uris, policies_of, reachable_services)
from ._resources import inbounds, services


class ExplainError(ValueError):
    """A source or destination names nothing in the mesh."""


def _split(text: str) -> tuple[str, int | None]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host:
        return host.strip("[]"), int(port)
    return text, None


def find_source(dataplanes: list[dict], text: str) -> dict:
    by_name = [d for d in dataplanes if d["name"] == text]
    by_service = [d for d in dataplanes if text in services(d)]
    host, _ = _split(text)
    by_address = [d for d in dataplanes if (d.get("networking") or {}).get("address") == host]
    found = by_name or by_service or by_address
    if not found:
        raise ExplainError(f"source {text!r}: no data plane, service or address of that name in the mesh")
    return found[0]


def find_destinations(dataplanes: list[dict], text: str) -> list[tuple[dict, int, dict]]:
    """(data plane, inbound index, inbound) for each endpoint the destination names: a service's
    inbounds (`web` or `web.mesh`), else a data plane's, else the inbounds at that address (and port)."""
    host, port = _split(text)
    if port is None and text.lower().endswith(".mesh"):  # `<service>.mesh`, the DNS name
        text = text[:-len(".mesh")]
    every = [(dp, i, inbound) for dp in dataplanes for i, inbound in enumerate(inbounds(dp))]
    out = [e for e in every if e[2]["service"] == text] or [e for e in every if e[0]["name"] == text] or \
        [e for e in every if e[2]["address"] == host and (port is None or e[2]["port"] == port)]
    if not out:
        raise ExplainError(f"destination {text!r}: no data plane, service or inbound address of that name in the mesh")
    return out


def _certificate(mesh_resource: dict | None) -> str:
    backend = enabled_backend(mesh_resource)
    if backend is None:
        return "the control plane's node CA (mTLS is off for this mesh)"
    rotation = ((backend.get("dpCert") or {}).get("rotation") or {}).get("expiration") or DEFAULT_DP_EXPIRATION
    return f"the mesh CA of backend {backend['name']} ({backend.get('type', 'builtin')}), valid {rotation}"


def explain(section: dict[str, Any], mesh: str, source: str, destination: str) -> tuple[list[str], bool]:
    """(lines to print, allowed) for a call from `source` to `destination` in `mesh`."""
    dataplanes = [d for d in section.get("dataplanes") or () if d.get("mesh", mesh) == mesh]
    mesh_resource = next((m for m in section.get("meshes") or () if m.get("name") == mesh), None)
    src = find_source(dataplanes, source)
    targets = find_destinations(dataplanes, destination)
    uris = kuma_uris(mesh, src)
    lines = [f"source: dataplane {src['name']} (mesh {mesh}), identity {', '.join(uris) or '-'}",
             f"  certificate issued by {_certificate(mesh_resource)}"]
    backend = enabled_backend(mesh_resource)
    if backend is None:
        lines.append("mTLS: off (permissions do not apply: every call is allowed, as in Kuma)")
    else:
        lines.append(f"mTLS: on, backend {backend['name']} ({backend.get('type', 'builtin')}), "
                     f"mode {backend.get('mode') or 'STRICT'}")
    others = [d for d in dataplanes if d["name"] != src["name"]]
    reachable = reachable_services(section, mesh, src, others)
    identity = client_identity(mesh, uris)
    policies = policies_of(section, mesh)
    allowed_any = False
    for dp, index, inbound in targets:
        lines.append(f"destination: service {inbound['service']}, endpoint {inbound['address']}:{inbound['port']} "
                     f"(dataplane {dp['name']} inbound[{index}], app at {inbound['serviceAddress']}:"
                     f"{inbound['servicePort']}), identity {', '.join(kuma_uris(mesh, dp))}")
        if dp["name"] == src["name"]:
            lines.append("  the source's own inbound: reached directly, no mesh hop")
            allowed_any = True
            continue
        if reachable is not None and inbound["service"] not in reachable:
            lines.append(f"  REFUSED by the source's data plane: service {inbound['service']} is not among its "
                         "reachable services (reachableServices, or no MeshTrafficPermission allows it)")
            continue
        if backend is None:
            lines.append("  ALLOWED (mTLS off)")
            allowed_any = True
            continue
        decision = decide(compile_inbound(policies, dp, inbound), identity)
        verdict = "ALLOWED" if decision.allowed else "REFUSED by the destination's data plane"
        lines.append(f"  {verdict}: {decision.why()}")
        allowed_any = allowed_any or decision.allowed
    return lines, allowed_any


def kri(kind_short: str, mesh: str, zone: str, name: str, section_name: str = "") -> str:
    """Kuma's resource identifier (`pkg/core/kri`): kri_<short>_<mesh>_<zone>_<namespace>_<name>_<section>;
    no namespace outside Kubernetes."""
    return f"kri_{kind_short}_{mesh}_{zone}__{name}_{section_name}"


def _dataplane(section: dict[str, Any], mesh: str, name: str) -> dict:
    dp = next((d for d in section.get("dataplanes") or () if d.get("name") == name and d.get("mesh", mesh) == mesh),
              None)
    if dp is None:
        raise ExplainError(f"no dataplane {name!r} in mesh {mesh!r}")
    return dp


def policies_list(section: dict[str, Any], mesh: str, name: str, zone: str) -> dict[str, Any]:
    """Kuma's `GET /meshes/{mesh}/dataplanes/{name}/_policies` shape, which `kumactl inspect dataplane
    NAME --type=policies` prints as a Kind / Origins table: each policy kind that selects the data plane,
    its origins (KRIs), and `conf`: here, per inbound, the merged rules strongest first."""
    dp = _dataplane(section, mesh, name)
    by_kind: dict[str, tuple[str, dict[str, list[dict]], list[str]]] = {}  # kind -> (KRI short name, conf, origins)
    for inbound in inbounds(dp):
        for rule in compile_inbound(policies_of(section, mesh), dp, inbound):
            if rule.policy.startswith(f"{LEGACY}/"):
                kind, short, policy = LEGACY, "tp", rule.policy[len(LEGACY) + 1:]
            else:
                kind, short, policy = "MeshTrafficPermission", "mtp", rule.policy
            _, conf, origins = by_kind.setdefault(kind, (short, {}, []))
            conf.setdefault(f"{inbound['address']}:{inbound['port']}", []).append(
                {"from": dict(sorted(rule.requires)), "action": rule.action,
                 "origin": kri(short, mesh, zone, policy), "fromIndex": rule.index})
            if policy not in origins:
                origins.append(policy)
    return {"policies": [{"kind": kind, "conf": {"inbounds": conf},
                          "origins": [{"kri": kri(short, mesh, zone, p)} for p in sorted(origins)]}
                         for kind, (short, conf, origins) in by_kind.items()]}


def policies_table(listed: dict[str, Any]) -> list[str]:
    """kumactl's table for `inspect dataplane NAME --type=policies`: Kind, Origins (comma-separated)."""
    rows = [("Kind", "Origins")] + [(p["kind"], ",".join(o["kri"] for o in p["origins"])) for p in listed["policies"]]
    width = max(len(kind) for kind, _ in rows) + 3
    return [f"{kind:<{width}}{origins}".rstrip() for kind, origins in rows]


def inbound_policies(section: dict[str, Any], mesh: str, name: str) -> list[str]:
    """`inspect dataplane NAME --type policies`, after Kuma's table: per inbound, the permission rules,
    strongest first."""
    dp = _dataplane(section, mesh, name)
    on = enabled_backend(next((m for m in section.get("meshes") or () if m.get("name") == mesh), None)) is not None
    lines = [f"MeshTrafficPermission ({'enforced: mTLS is on' if on else 'not applied: mTLS is off'}):"]
    for i, inbound in enumerate(inbounds(dp)):
        lines.append(f"  inbound[{i}] {inbound['address']}:{inbound['port']} (service {inbound['service']}):")
        rules = compile_inbound(policies_of(section, mesh), dp, inbound)
        for rule in rules:
            who = ", ".join(f"{k}={v}" for k, v in sorted(rule.requires)) or "any client of the mesh"
            origin = (f"TrafficPermission {rule.policy[len(LEGACY) + 1:]} sources[{rule.index}]"
                      if rule.policy.startswith(f"{LEGACY}/") else f"{rule.policy} from[{rule.index}]")
            lines.append(f"    {rule.action:<20} from {who}  ({origin})")
        lines.append(f"    {'Deny':<20} anything else (default)" if on or not rules else "")
    return [line for line in lines if line]
