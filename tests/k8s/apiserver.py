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
    "gateway.networking.k8s.io/v1/gatewayclasses": ("GatewayClass", False),
    "gateway.networking.k8s.io/v1/gateways": ("Gateway", True),
    "gateway.networking.k8s.io/v1/httproutes": ("HTTPRoute", True),
    "gateway.networking.k8s.io/v1/grpcroutes": ("GRPCRoute", True),
    "gateway.networking.k8s.io/v1alpha2/tcproutes": ("TCPRoute", True),
    "gateway.networking.k8s.io/v1alpha2/tlsroutes": ("TLSRoute", True),
    "gateway.networking.k8s.io/v1beta1/referencegrants": ("ReferenceGrant", True),
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
    "GatewayClass": "/apis/gateway.networking.k8s.io/v1/gatewayclasses",
    "Gateway": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways",
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
    "GRPCRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/grpcroutes",
    "TCPRoute": "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/{ns}/tcproutes",
    "TLSRoute": "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/{ns}/tlsroutes",
    "ReferenceGrant": "/apis/gateway.networking.k8s.io/v1beta1/namespaces/{ns}/referencegrants",
}


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
