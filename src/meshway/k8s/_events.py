"""Kubernetes Warning events for objects the translation left out, as KIC emits them
(`--emit-kubernetes-events`, reason `KongConfigurationTranslationFailed`), naming the field and why.

An error is reported once while it lasts: the controller remembers what it reported and emits
again only for an error that is new, or came back after being fixed: then the Event it wrote the
first time gets `count` + 1 and a new `lastTimestamp` (as client-go aggregates repeated events).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

TRANSLATION_FAILED = "KongConfigurationTranslationFailed"
COMPONENT = "meshway-ingress-controller"
API_VERSIONS = {
    "Ingress": "networking.k8s.io/v1", "IngressClass": "networking.k8s.io/v1", "Service": "v1", "Secret": "v1",
    "KongPlugin": "configuration.konghq.com/v1", "KongClusterPlugin": "configuration.konghq.com/v1",
    "KongConsumer": "configuration.konghq.com/v1", "KongIngress": "configuration.konghq.com/v1",
    "KongUpstreamPolicy": "configuration.konghq.com/v1beta1", "KongConsumerGroup": "configuration.konghq.com/v1beta1",
    "GatewayClass": "gateway.networking.k8s.io/v1", "Gateway": "gateway.networking.k8s.io/v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1", "GRPCRoute": "gateway.networking.k8s.io/v1",
    "TCPRoute": "gateway.networking.k8s.io/v1alpha2", "UDPRoute": "gateway.networking.k8s.io/v1alpha2",
    "TLSRoute": "gateway.networking.k8s.io/v1alpha2",
}


def event_for(error, uid: str | None = None, now: datetime | None = None) -> dict:
    """A core/v1 Event on the object an ObjectError names."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hashlib.sha256(f"{error}{stamp}".encode()).hexdigest()[:16]
    involved = {"apiVersion": API_VERSIONS.get(error.kind, "v1"), "kind": error.kind, "name": error.name}
    if error.namespace:
        involved["namespace"] = error.namespace
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1", "kind": "Event",
        # cluster-scoped objects (KongClusterPlugin, GatewayClass) get their events in "default", as client-go does
        "metadata": {"name": f"{error.name}.{digest}", "namespace": error.namespace or "default"},
        "involvedObject": involved, "type": "Warning", "reason": TRANSLATION_FAILED,
        "message": f"{error.field}: {error.reason}", "count": 1,
        "firstTimestamp": stamp, "lastTimestamp": stamp,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
    }
