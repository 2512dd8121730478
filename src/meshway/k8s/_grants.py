"""ReferenceGrant (gateway.networking.k8s.io/v1beta1): what may point into another namespace.

A reference from an object in namespace A to one in namespace B is allowed when a ReferenceGrant
in B lists the referrer's group, kind and namespace A in `from`, and the target's group and kind
(and name, when given) in `to`. KIC uses it for route backendRefs and for `konghq.com/plugins:
<namespace>:<name>` (KIC's `GetPermittedForReferenceGrantFrom`, `isRemotePluginReferenceAllowed`).
"""
from __future__ import annotations

GROUPS = {"Ingress": "networking.k8s.io", "Service": "", "KongConsumer": "configuration.konghq.com",
          "KongConsumerGroup": "configuration.konghq.com",
          "HTTPRoute": "gateway.networking.k8s.io", "GRPCRoute": "gateway.networking.k8s.io",
          "TCPRoute": "gateway.networking.k8s.io",
          "UDPRoute": "gateway.networking.k8s.io", "TLSRoute": "gateway.networking.k8s.io",
          "KongPlugin": "configuration.konghq.com", "Gateway": "gateway.networking.k8s.io", "Secret": ""}


def kind_of(tags: list[str]) -> str:
    return next((t.split(":", 1)[1] for t in tags if t.startswith("k8s-kind:")), "")


def permitted(objects, from_kind: str, from_ns: str, to_kind: str, to_ns: str, to_name: str) -> bool:
    for (ns, _), grant in objects.reference_grants.items():
        if ns != to_ns:
            continue
        spec = grant.get("spec") or {}
        if not any((f.get("group") or "") == GROUPS.get(from_kind) and f.get("kind") == from_kind
                   and f.get("namespace") == from_ns for f in spec.get("from") or []):
            continue
        if any((t.get("group") or "") == GROUPS.get(to_kind) and t.get("kind") == to_kind
               and (not t.get("name") or t["name"] == to_name) for t in spec.get("to") or []):
            return True
    return False
