"""kmock's emulated Kubernetes API server, on a loopback port, for the ingress controller's tests.

No real kube-apiserver can run here (Debian has none), so these tests use kmock's
`KubernetesEmulator`: objects in memory, list, watch (`watch=true`), create, merge-patch, delete.
It runs in a thread with its own event loop, so the tests stay plain and the controller under test
is the real `meshway ingress-controller` process talking HTTP to it.
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import kmock
from kmock._internal import parsing as _kmock_parsing

# Declared so that listing a type with no objects yet is an empty list, not kmock's 404.
SERVED = {
    "networking.k8s.io/v1/ingresses": ("Ingress", True),
    "networking.k8s.io/v1/ingressclasses": ("IngressClass", False),
    "v1/services": ("Service", True),
    "v1/secrets": ("Secret", True),
    "discovery.k8s.io/v1/endpointslices": ("EndpointSlice", True),
    "v1/events": ("Event", True),
    "configuration.konghq.com/v1/kongplugins": ("KongPlugin", True),
    "configuration.konghq.com/v1/kongclusterplugins": ("KongClusterPlugin", False),
    "configuration.konghq.com/v1/kongconsumers": ("KongConsumer", True),
    "configuration.konghq.com/v1/kongingresses": ("KongIngress", True),
    "configuration.konghq.com/v1beta1/kongupstreampolicies": ("KongUpstreamPolicy", True),
    "configuration.konghq.com/v1beta1/kongconsumergroups": ("KongConsumerGroup", True),
    "gateway.networking.k8s.io/v1/gatewayclasses": ("GatewayClass", False),
    "gateway.networking.k8s.io/v1/gateways": ("Gateway", True),
    "gateway.networking.k8s.io/v1/httproutes": ("HTTPRoute", True),
    "gateway.networking.k8s.io/v1/grpcroutes": ("GRPCRoute", True),
    "gateway.networking.k8s.io/v1alpha2/tcproutes": ("TCPRoute", True),
    "gateway.networking.k8s.io/v1alpha2/udproutes": ("UDPRoute", True),
    "gateway.networking.k8s.io/v1alpha2/tlsroutes": ("TLSRoute", True),
    "gateway.networking.k8s.io/v1beta1/referencegrants": ("ReferenceGrant", True),
    "v1/namespaces": ("Namespace", False),
}
PATHS = {
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "EndpointSlice": "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
    "IngressClass": "/apis/networking.k8s.io/v1/ingressclasses",
    "Event": "/api/v1/namespaces/{ns}/events",
    "KongPlugin": "/apis/configuration.konghq.com/v1/namespaces/{ns}/kongplugins",
    "KongClusterPlugin": "/apis/configuration.konghq.com/v1/kongclusterplugins",
    "KongConsumer": "/apis/configuration.konghq.com/v1/namespaces/{ns}/kongconsumers",
    "KongIngress": "/apis/configuration.konghq.com/v1/namespaces/{ns}/kongingresses",
    "KongUpstreamPolicy": "/apis/configuration.konghq.com/v1beta1/namespaces/{ns}/kongupstreampolicies",
    "KongConsumerGroup": "/apis/configuration.konghq.com/v1beta1/namespaces/{ns}/kongconsumergroups",
    "GatewayClass": "/apis/gateway.networking.k8s.io/v1/gatewayclasses",
    "Gateway": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways",
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
    "GRPCRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/grpcroutes",
    "TCPRoute": "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/{ns}/tcproutes",
    "UDPRoute": "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/{ns}/udproutes",
    "TLSRoute": "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/{ns}/tlsroutes",
    "ReferenceGrant": "/apis/gateway.networking.k8s.io/v1beta1/namespaces/{ns}/referencegrants",
    "Namespace": "/api/v1/namespaces",
}
CLUSTER_KINDS = {"IngressClass", "KongClusterPlugin", "GatewayClass", "Namespace"}
_parse_path = _kmock_parsing.parse_path


def _parse_path_with_namespaces(path: str):
    """kmock 0.8 reads `/api/v1/namespaces[/NAME[/status]]` as a namespace prefix with no resource (and
    fails on the bare list), so Namespaces could not be stored; read them as the cluster-scoped
    resource `namespaces`, as kube-apiserver does. Every other path goes to kmock's own parser."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (len(parts) <= 4 or parts[4:] == ["status"]):
        return _kmock_parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) > 3 else None,
                                         "status" if len(parts) == 5 else None)
    return _parse_path(path)


_kmock_parsing.parse_path = _parse_path_with_namespaces


def _resource(path: str) -> kmock.resource:
    """kmock's key of a served type from its collection path (`/apis/G/V/namespaces/{ns}/P`, `/api/v1/P`)."""
    parts = path.strip("/").split("/")
    group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
    return kmock.resource(group=group, version=version, plural=parts[-1])


class EmulatedApiServer:
    def __init__(self, served: dict = SERVED):
        self.served = served
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.client = None

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            self._emulator = emulator
            for resource, (kind, namespaced) in self.served.items():
                emulator.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> "EmulatedApiServer":
        self._thread.start()
        assert self._ready.wait(10), "kmock did not start"
        self.client = httpx.Client(base_url=self.url, timeout=10)
        return self

    def stop(self) -> None:
        if self.client:
            self.client.close()
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: kmock, user: {}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: kmock, namespace: default}}]\n"
            "current-context: kmock\n")
        return path

    def _path(self, obj: dict) -> str:
        return PATHS[obj["kind"]].format(ns=obj["metadata"].get("namespace", "default"))

    def _in_loop(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def serve(self, resource: str, kind: str, namespaced: bool) -> None:
        """Start serving a type (as a CRD installed while the controller runs)."""
        async def add():
            self._emulator.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)
        self._in_loop(add())

    def lose_then_expire(self, obj: dict) -> None:
        """Delete `obj` without a watch event (the event lost, as when a watch connection drops and
        the server compacts its history meanwhile), then end every watch of its type with the ERROR
        event `410 Gone` kube-apiserver sends when a resourceVersion is too old. kmock has no
        resourceVersion history of its own: this is that behaviour, on kmock's store and watch bus.
        Only a client that lists again after the 410 learns that `obj` is gone."""
        meta = obj["metadata"]
        resource = _resource(PATHS[obj["kind"]])
        namespace = None if obj["kind"] in CLUSTER_KINDS else meta.get("namespace", "default")
        gone = {"type": "ERROR", "object": {
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 410,
            "reason": "Expired", "message": "too old resource version"}}

        async def expire():
            self._emulator.objects[resource, namespace, meta["name"]].delete()
            await self._emulator._buses[resource].put(gone)
        self._in_loop(expire())

    def create(self, obj: dict) -> dict:
        response = self.client.post(self._path(obj), json=obj)
        assert response.status_code < 300, response.text
        return response.json()

    def patch(self, obj: dict, patch: dict) -> dict:
        response = self.client.patch(f"{self._path(obj)}/{obj['metadata']['name']}", json=patch,
                                     headers={"Content-Type": "application/merge-patch+json"})
        assert response.status_code < 300, response.text
        return response.json()

    def list(self, kind: str, ns: str = "default") -> list[dict]:
        response = self.client.get(PATHS[kind].format(ns=ns))
        assert response.status_code < 300, response.text
        return response.json().get("items") or []

    def delete(self, obj: dict) -> None:
        response = self.client.delete(f"{self._path(obj)}/{obj['metadata']['name']}")
        assert response.status_code < 300, response.text
