"""`meshway ingress-controller`: list and watch the cluster, translate, push to a node.

One task per resource type lists it (replacing that kind in the cache), then watches from the list's
resourceVersion; after an error or `410 Gone` it lists again. A type the API server does not serve
(404 on the list) is logged once and retried quietly, so it is picked up if it appears later.
A sync loop translates the cache every `--proxy-sync-seconds` and sends `POST /config` only when the
document's hash changed, as KIC's DB-less push does (its check_hash); a failed push is retried.
A node with a database refuses a plain POST /config: the controller then sends every entity tagged
`managed-by-ingress-controller` with `_info.select_tags`, which the node applies to those only.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass

import httpx
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.core_v1 import Event, Namespace, Secret, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress, IngressClass

from meshway.k8s import _probes
from meshway.k8s._common import MANAGED_TAG, tagged_document
from meshway.k8s import _status as status_rules
from meshway.k8s._events import event_for
from meshway.k8s._gateway import DEFAULT_CONTROLLER
from meshway.k8s._translate import Objects, in_class, translate

log = logging.getLogger("meshway.ingress-controller")

KONG = "configuration.konghq.com"
KongPlugin = create_namespaced_resource(KONG, "v1", "KongPlugin", "kongplugins")
KongClusterPlugin = create_global_resource(KONG, "v1", "KongClusterPlugin", "kongclusterplugins")
KongConsumer = create_namespaced_resource(KONG, "v1", "KongConsumer", "kongconsumers")
KongConsumerGroup = create_namespaced_resource(KONG, "v1beta1", "KongConsumerGroup", "kongconsumergroups")
KongIngress = create_namespaced_resource(KONG, "v1", "KongIngress", "kongingresses")
KongUpstreamPolicy = create_namespaced_resource(KONG, "v1beta1", "KongUpstreamPolicy", "kongupstreampolicies")
GATEWAY = "gateway.networking.k8s.io"
GatewayClass = create_global_resource(GATEWAY, "v1", "GatewayClass", "gatewayclasses")
Gateway = create_namespaced_resource(GATEWAY, "v1", "Gateway", "gateways")
HTTPRoute = create_namespaced_resource(GATEWAY, "v1", "HTTPRoute", "httproutes")
GRPCRoute = create_namespaced_resource(GATEWAY, "v1", "GRPCRoute", "grpcroutes")
TCPRoute = create_namespaced_resource(GATEWAY, "v1alpha2", "TCPRoute", "tcproutes")
UDPRoute = create_namespaced_resource(GATEWAY, "v1alpha2", "UDPRoute", "udproutes")
TLSRoute = create_namespaced_resource(GATEWAY, "v1alpha2", "TLSRoute", "tlsroutes")
ReferenceGrant = create_namespaced_resource(GATEWAY, "v1beta1", "ReferenceGrant", "referencegrants")
CLUSTER_SCOPED = (IngressClass, KongClusterPlugin, GatewayClass, Namespace)
STATUS_OF = {"Ingress": Ingress.Status, "GatewayClass": GatewayClass.Status, "Gateway": Gateway.Status,
             "HTTPRoute": HTTPRoute.Status, "GRPCRoute": GRPCRoute.Status, "TCPRoute": TCPRoute.Status, "UDPRoute": UDPRoute.Status,
             "TLSRoute": TLSRoute.Status}

# resource type -> the Objects attribute caching it
KINDS = (
    (Ingress, "ingresses"),
    (IngressClass, "ingress_classes"),
    (Service, "services"),
    (EndpointSlice, "endpoint_slices"),
    (Secret, "secrets"),
    (KongPlugin, "kong_plugins"),
    (KongClusterPlugin, "kong_cluster_plugins"),
    (KongConsumer, "kong_consumers"),
    (KongConsumerGroup, "kong_consumer_groups"),
    (KongIngress, "kong_ingresses"),
    (KongUpstreamPolicy, "kong_upstream_policies"),
    (GatewayClass, "gateway_classes"),
    (Gateway, "gateways"),
    (HTTPRoute, "http_routes"),
    (GRPCRoute, "grpc_routes"),
    (TCPRoute, "tcp_routes"),
    (UDPRoute, "udp_routes"),
    (TLSRoute, "tls_routes"),
    (ReferenceGrant, "reference_grants"),
    (Namespace, "namespaces"),
)
RETRY_SECONDS = 2.0
MAX_REMEMBERED_EVENTS = 1000
NOT_SERVED_RETRY_SECONDS = 10.0


@dataclass
class Options:
    kong_admin_url: str = "http://localhost:8001"
    ingress_class: str = "kong"
    watch_namespace: str = ""  # "" = all namespaces, as KIC; "a,b" = those namespaces
    proxy_sync_seconds: float = 3.0
    emit_kubernetes_events: bool = True
    gateway_api_controller_name: str = DEFAULT_CONTROLLER
    update_status: bool = True
    publish_service: str = ""  # ns/name
    publish_status_address: tuple = ()
    health_probe_bind: tuple | None = None  # (host, port), or None: off


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _status(e: Exception) -> int | None:
    """The HTTP status of a failed call: lightkube raises ApiError when the body is a Status object,
    its HTTP client's own error otherwise (kmock's 404 for an unknown type has no Status body)."""
    if isinstance(e, ApiError):
        return e.status.code
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


class Controller:
    def __init__(self, client: AsyncClient, options: Options):
        self.client, self.options = client, options
        self.objects = Objects()
        self.changed = asyncio.Event()
        self.pushed_hash: str | None = None
        self.node_hash: str | None = None  # the node's configuration_hash right after our last push
        self.reported: set[str] = set()
        self.tagged = False  # the node has a database: POST /config with _info.select_tags
        self.events: dict[str, dict] = {}  # error -> the Event we wrote for it (oldest first, bounded)
        # KIC waits for its caches to sync before the first push: translating a half-listed cluster
        # would push (and warn about) Ingresses whose Services are not listed yet
        self.unsynced = {attr for _, attr in KINDS}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        probes = await _probes.serve(self.options.health_probe_bind, lambda: self.pushed_hash is not None) \
            if self.options.health_probe_bind else None
        tasks = [asyncio.create_task(self._follow(res, attr)) for res, attr in KINDS]
        tasks.append(asyncio.create_task(self._sync_loop()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if probes:
                probes.close()

    def _namespace(self, res) -> str | None:
        """One namespace is listed and watched as such; several (KIC's comma-separated list) are
        followed across all namespaces and filtered here, one list and one watch per type."""
        if res in CLUSTER_SCOPED:
            return None
        wanted = self._watched()
        return wanted[0] if len(wanted) == 1 else "*"

    def _watched(self) -> list[str]:
        return [n.strip() for n in self.options.watch_namespace.split(",") if n.strip()]

    def _ours(self, res, obj: dict) -> bool:
        wanted = self._watched()
        return res in CLUSTER_SCOPED or len(wanted) < 2 or _key(obj)[0] in wanted

    async def _follow(self, res, attr: str) -> None:
        logged_not_served = False
        while True:
            try:
                version = await self._list(res, attr)
                logged_not_served = False
                await self._watch(res, attr, version)
            except Exception as e:  # noqa: BLE001  (any failure: list again after a pause)
                code = _status(e)
                # not served (a CRD not installed...) or not granted by RBAC (a manifest older than
                # this controller): say so once, never hold the first push back for it
                if code in (403, 404):
                    if not logged_not_served:
                        log.warning("%s is not served by the API server: skipped" if code == 404 else
                                    "%s: listing is forbidden (RBAC): skipped", res.__name__)
                        logged_not_served = True
                    self._mark_synced(attr)
                    await asyncio.sleep(NOT_SERVED_RETRY_SECONDS)
                    continue
                if code == 410:  # Gone: our resourceVersion is too old, events were lost: list again at once
                    log.info("watching %s: 410 Gone (resourceVersion too old); listing again", res.__name__)
                else:
                    log.warning("watching %s failed: %s; listing again", res.__name__, e)
                await asyncio.sleep(0 if code == 410 else RETRY_SECONDS)

    async def _list(self, res, attr: str) -> str | None:
        listing = self.client.list(res, namespace=self._namespace(res))
        fresh = {}
        async for obj in listing:
            d = obj.to_dict()
            if self._ours(res, d):
                fresh[_key(d)] = d
        setattr(self.objects, attr, fresh)
        self._mark_synced(attr)
        self.changed.set()
        return getattr(listing, "resourceVersion", None)

    def _mark_synced(self, attr: str) -> None:
        self.unsynced.discard(attr)
        if not self.unsynced:
            self.synced.set()

    async def _watch(self, res, attr: str, version: str | None) -> None:
        cache = getattr(self.objects, attr)
        async for kind, obj in self.client.watch(res, namespace=self._namespace(res), resource_version=version):
            d = obj.to_dict()
            if not self._ours(res, d):
                continue
            if kind == "DELETED":
                cache.pop(_key(d), None)
            else:
                cache[_key(d)] = d
            self.changed.set()

    async def _sync_loop(self) -> None:
        async with httpx.AsyncClient(base_url=self.options.kong_admin_url, timeout=30) as admin:
            await self.synced.wait()
            while True:
                try:
                    await asyncio.wait_for(self.changed.wait(), self.options.proxy_sync_seconds)
                except asyncio.TimeoutError:  # nothing changed here: has the node lost what we pushed?
                    await self._check_node(admin)
                    continue
                self.changed.clear()
                try:
                    done = await self.sync(admin)
                except Exception:  # noqa: BLE001  (a bug must not stop the controller: log it, retry)
                    log.exception("sync failed")
                    done = False
                if not done:
                    self.changed.set()  # retry on the next tick
                await asyncio.sleep(self.options.proxy_sync_seconds)

    async def sync(self, admin: httpx.AsyncClient) -> bool:
        result = translate(self.objects, self.options.ingress_class, self.options.gateway_api_controller_name)
        for error in result.errors:
            if str(error) not in self.reported:
                log.warning("left out: %s", error)
                await self._emit(error)
        self.reported = {str(e) for e in result.errors}
        body = json.dumps(result.config, sort_keys=True).encode()
        digest = hashlib.sha256(body).hexdigest()
        if digest == self.pushed_hash:
            await self._write_statuses(result)
            return True
        response = await self._post(admin, result.config, body)
        if response is None:
            return False
        if response.status_code >= 300 and not self.tagged and _not_dbless(response):
            # a node with a database (a control plane, a traditional node): push the tagged document
            # instead, which replaces only our entities (KIC's DB mode syncs them with decK's --select-tag)
            self.tagged = True
            log.info("--kong-admin-url %s has a database: pushing the entities tagged %s only",
                     self.options.kong_admin_url, MANAGED_TAG)
            response = await self._post(admin, result.config, body)
            if response is None:
                return False
        if response.status_code >= 300:
            log.error("POST /config refused (%s): %s", response.status_code, response.text[:2000])
            return False
        log.info("configuration pushed: %d services, %d certificates", len(result.config["services"]),
                 len(result.config["certificates"]))
        self.node_hash = await self._node_hash(admin)
        self.pushed_hash = digest  # /readyz turns 200 only now, after the log line and the node's hash
        await self._write_statuses(result)
        return True

    async def _post(self, admin: httpx.AsyncClient, config: dict, body: bytes) -> httpx.Response | None:
        if self.tagged:
            body = json.dumps(tagged_document(config), sort_keys=True).encode()
        try:
            return await admin.post("/config", content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as e:
            log.warning("POST /config to %s failed: %s", self.options.kong_admin_url, e)
            return None

    async def _node_hash(self, admin: httpx.AsyncClient) -> str | None:
        try:
            return (await admin.get("/status")).json().get("configuration_hash")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    async def _check_node(self, admin: httpx.AsyncClient) -> None:
        """Push again when the node's configuration is no longer ours, as KIC compares Kong's
        configuration hash: a node restarted without its cache (a new container) serves nothing,
        and a config posted by someone else would otherwise stay until the cluster changes."""
        if self.pushed_hash is None or self.node_hash is None:
            return
        current = await self._node_hash(admin)
        if current is not None and current != self.node_hash:
            log.warning("the node's configuration changed under us (hash %s, ours %s): pushing again",
                        current, self.node_hash)
            self.pushed_hash = None
            self.changed.set()

    def _desired_statuses(self, result) -> dict[tuple, dict]:
        """(kind, namespace, name) -> the status body we want, for the objects we serve."""
        now, objects, options = status_rules.now_stamp(), self.objects, self.options
        addresses = status_rules.published_addresses(list(options.publish_status_address), options.publish_service,
                                                objects.services)
        out: dict[tuple, dict] = {}
        if addresses:
            for (ns, name), ingress in objects.ingresses.items():
                if in_class(ingress, options.ingress_class, objects.ingress_classes):
                    out[("Ingress", ns, name)] = status_rules.ingress_status(addresses)
        for (_, name), gc in objects.gateway_classes.items():
            if (gc.get("spec") or {}).get("controllerName") == options.gateway_api_controller_name:
                out[("GatewayClass", "", name)] = status_rules.gateway_class_status(gc, now)
        for (kind, ns, name), info in result.gateway_status.items():
            obj = objects.find(kind, ns, name)
            if obj is None:
                continue
            out[(kind, ns, name)] = (status_rules.gateway_status(obj, info, addresses, now) if kind == "Gateway" else
                                     status_rules.http_route_status(obj, info, options.gateway_api_controller_name, now))
        return out

    async def _write_statuses(self, result) -> None:
        """Merge-patch the status subresource of each object whose status changed since we wrote it."""
        if not self.options.update_status:
            return
        for (kind, ns, name), body in self._desired_statuses(result).items():
            # compared with the object as last seen (not with what we wrote: it may have been recreated),
            # on the keys we write only, so that keys written by others never make us write again
            current = (self.objects.find(kind, ns, name) or {}).get("status") or {}
            if status_rules.comparable({k: current.get(k) for k in body}) == status_rules.comparable(body):
                continue
            try:
                await self.client.patch(STATUS_OF[kind], name, {"status": body}, namespace=ns or None,
                                        patch_type=PatchType.MERGE)
            except Exception as e:  # noqa: BLE001  (the object may be gone; retried on the next change)
                log.warning("could not write the status of %s %s/%s: %s", kind, ns, name, e)
                continue
            log.debug("status of %s %s/%s written", kind, ns, name)


    async def _emit(self, error) -> None:
        """A Warning event on the object; failing to write it is logged, never fatal. An error that
        comes back (after being fixed, or after a restart of the object) updates the Event written
        for it the first time, `count` + 1 and `lastTimestamp`, as client-go's recorder aggregates a
        repeated event, instead of adding one more Event object."""
        if not self.options.emit_kubernetes_events:
            return
        key = str(error)
        known = self.events.get(key)
        if known is not None and await self._bump(known):
            return
        cached = self.objects.find(error.kind, error.namespace, error.name) or {}
        event = event_for(error, (cached.get("metadata") or {}).get("uid"))
        try:
            await self.client.create(Event.from_dict(event))
        except Exception as e:  # noqa: BLE001
            log.warning("could not write the event for %s/%s: %s", error.namespace, error.name, e)
            return
        self.events.pop(key, None)
        self.events[key] = event
        while len(self.events) > MAX_REMEMBERED_EVENTS:  # the oldest first (kube-apiserver drops events after 1 h)
            self.events.pop(next(iter(self.events)))

    async def _bump(self, event: dict) -> bool:
        """count + 1 and lastTimestamp now on an Event we wrote; False when it is gone (expired)."""
        meta = event["metadata"]
        change = {"count": event["count"] + 1, "lastTimestamp": status_rules.now_stamp()}
        try:
            await self.client.patch(Event, meta["name"], change, namespace=meta["namespace"],
                                    patch_type=PatchType.MERGE)
        except Exception as e:  # noqa: BLE001  (404: expired; anything else: write a new one)
            log.debug("could not update the event %s/%s: %s", meta["namespace"], meta["name"], e)
            return False
        event.update(change)
        return True


def _not_dbless(response: httpx.Response) -> bool:
    """Kong's (and meshway's) refusal of a plain POST /config on a node with a database."""
    return "only available when" in response.text and "not use a database" in response.text


async def run(kubeconfig: str | None, options: Options) -> None:
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    client = AsyncClient(config=config)
    try:
        await Controller(client, options).run()
    finally:
        await client.close()
