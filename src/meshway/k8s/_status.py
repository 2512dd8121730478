"""Status written back after a successful push, as KIC writes it (pure: objects in, status bodies out).

- Ingress: `.status.loadBalancer.ingress` = the published addresses (`--publish-status-address`, or
  the `--publish-service` Service's load-balancer ingress, external IPs, or cluster IP).
- GatewayClass of ours: Accepted/Accepted.
- Gateway of ours: Accepted/Accepted, Programmed/Programmed, the published addresses, and per
  listener its attached routes and conditions (a listener that is not HTTP, HTTPS, TLS, TCP or UDP
  is not accepted: UnsupportedProtocol).
- HTTPRoute: per parent of ours, Accepted (Accepted, or NotAllowedByListeners,
  NoMatchingListenerHostname, NoMatchingParent), ResolvedRefs (ResolvedRefs, or the first backend's
  failure: BackendNotFound, RefNotPermitted, InvalidKind, UnsupportedValue) and Programmed
  (ConfiguredInGateway, or TranslationError), KIC's reasons.
"""
from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timezone

from meshway.k8s._gateway import GROUP, LISTENER_KINDS


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def published_addresses(status_addresses: list[str], publish_service: str, services: dict) -> list[str]:
    if status_addresses:
        return list(status_addresses)
    if not publish_service:
        return []
    ns, _, name = publish_service.partition("/")
    svc = services.get((ns, name)) or {}
    lb = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    found = [entry.get("ip") or entry.get("hostname") for entry in lb if entry.get("ip") or entry.get("hostname")]
    spec = svc.get("spec") or {}
    return found or list(spec.get("externalIPs") or []) or ([spec["clusterIP"]] if spec.get("clusterIP") else [])


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def ingress_status(addresses: list[str]) -> dict:
    return {"loadBalancer": {"ingress": [{"ip": a} if _is_ip(a) else {"hostname": a} for a in addresses]}}


def _condition(kind: str, ok: bool, reason: str, obj: dict, message: str = "", now: str = "") -> dict:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": _meta(obj).get("generation") or 1, "lastTransitionTime": now}


def now_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def gateway_class_status(gc: dict, now: str) -> dict:
    return {"conditions": [_condition("Accepted", True, "Accepted", gc, now=now)]}


def gateway_status(gateway: dict, info: dict, addresses: list[str], now: str) -> dict:
    listeners = []
    for lst in (gateway.get("spec") or {}).get("listeners") or []:
        kinds = LISTENER_KINDS.get(lst.get("protocol"), ())
        ok = bool(kinds)
        reason = "Accepted" if ok else "UnsupportedProtocol"
        listeners.append({
            "name": lst.get("name"), "attachedRoutes": info["attached"].get(lst.get("name"), 0),
            "supportedKinds": [{"group": GROUP, "kind": kind} for kind in kinds],
            "conditions": [_condition("Accepted", ok, reason, gateway, now=now),
                           _condition("Programmed", ok, "Programmed" if ok else "Invalid", gateway, now=now),
                           _condition("ResolvedRefs", True, "ResolvedRefs", gateway, now=now)]})
    return {"addresses": [{"type": "IPAddress" if _is_ip(a) else "Hostname", "value": a} for a in addresses],
            "conditions": [_condition("Accepted", True, "Accepted", gateway, now=now),
                           _condition("Programmed", True, "Programmed", gateway, now=now)],
            "listeners": listeners}


def http_route_status(route: dict, info: dict, controller: str, now: str) -> dict:
    unresolved = info.get("unresolved") or []
    resolved = ("ResolvedRefs", "") if not unresolved else (
        unresolved[0]["reason"], "; ".join(f"{u['field']}: {u['message']}" for u in unresolved))
    parents = []
    for parent in info["parents"]:
        ref = {"group": GROUP, "kind": "Gateway", **parent["ref"]}
        ref.setdefault("namespace", parent["namespace"])
        programmed = ("ConfiguredInGateway", "") if not info.get("error") else ("TranslationError", info["error"])
        parents.append({"parentRef": ref, "controllerName": controller, "conditions": [
            _condition("Accepted", parent["accepted"], parent["reason"], route, now=now),
            _condition("ResolvedRefs", not unresolved, resolved[0], route, resolved[1], now),
            _condition("Programmed", parent["accepted"] and not info.get("error"),
                       programmed[0] if parent["accepted"] else "Pending", route, programmed[1], now)]})
    return {"parents": parents}


def comparable(status: dict) -> str:
    """The status without its timestamps: what decides whether it must be written again."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "lastTransitionTime"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return json.dumps(strip(status), sort_keys=True)
