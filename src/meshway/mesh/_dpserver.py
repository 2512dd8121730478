"""The control plane's listener for `meshway dp run` data planes (Kuma's DP server, port 5678).

Rules:
- Same websocket protocol and push as hybrid data planes (`meshway.cluster`), on its own
  listener, `mesh_dp_listen` (default `0.0.0.0:5678`, Kuma's port), because the trust differs:
  a hybrid data plane shows the cluster certificate; a `dp run` data plane shows a **dataplane
  token** in its hello and verifies the control plane against the mesh CA its token pins. The
  control plane's certificate here is issued by the mesh CA and named `CONTROL_PLANE_ID`, which
  no node certificate carries, so a data plane cannot pose as the control plane.
- A hello carries the token and, usually, the Dataplane resource (`--dataplane-file`). The token
  must verify (signature, expiry, revocation) and be bound to that mesh, name and tags; the
  resource is validated and stored (registration). Without a resource, the stored one of that
  name is used. Any refusal is an `error` message with the reason, then close: nothing stored.
- Insights are kept in the store: a subscription per connection (connect/disconnect times,
  pushes sent/applied/rejected, counted and written every second by `_acks`, versions), the
  certificate, the inbounds' health.
- One data plane per name: while a data plane of a mesh and name is connected, another one with
  that name (another host, another work dir) is refused with `dataplane_busy` and retries, as
  Kuma refuses a second xDS stream for a proxy ("there is already an active stream from this
  node, try again later"); it gets in once the first has left. The same node (same work dir)
  reconnecting replaces its own old session.
- A revoked token also ends a live session (beyond Kuma, which checks a token only when a data
  plane connects): the revocation lists of the meshes with connected data planes are read every
  `REVOCATION_CHECK` seconds, and a data plane whose token is on one gets `dataplane_refused`
  and is disconnected (`dp run` exits 1 with the reason; its Dataplane stays, Offline).
- A `goodbye` (SIGTERM on the data plane) deletes the Dataplane at once (kuma#13403); a data
  plane that merely disconnects stays, Offline, as in Kuma.
- Several control plane nodes on one database (see `_instances`): each beats a heartbeat row;
  the one-per-name rule holds across them (a data plane of that name connected to another live
  node under another node id is `dataplane_busy`; the same node id is the same data plane moving
  to us), and the connections a dead node held are closed for it by the first node to notice.
  Insights are updated under the row's lock, so two nodes never lose each other's changes.
- Certificates for these data planes also name their services: `spiffe://meshway/mesh/<mesh>/service/<svc>`.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
import uuid
from typing import Any, Callable

from meshway import tlspolicy
from meshway.cluster._protocol import encode_message
from meshway.cluster.server import ClusterServer

from . import _insights
from ._acks import AckCounts
from ._instances import BEAT, Instances
from ._meshstats import MESH_STATS
from ._ca import CONTROL_PLANE_ID, MeshCA, service_spiffe_id
from ._permissions import kuma_uris
from ._resources import SERVICE_TAG, ResourceError, parse_resource, services
from ._tokens import TokenError, check_binding, verify

log = logging.getLogger("meshway.mesh")
REVOCATION_CHECK = 5.0  # seconds between reads of the revocation lists for live sessions


class DataplaneBusy(Exception):
    """Another data plane with this mesh and name is connected."""


class DataplaneServer(ClusterServer):
    """`meshway dp run` data planes: token-authenticated, registered in the store."""

    def __init__(self, settings: Any, *, store: Any, changed: Callable[[], None], **kw: Any) -> None:
        self._settings = settings
        self._store = store
        self._changed_store = changed
        self._who: dict[str, tuple[str, str, str]] = {}  # node id -> (mesh, name, subscription id)
        # (mesh, name) -> node id of the connected data plane; registrations run in threads
        self._claims: dict[tuple[str, str], str] = {}
        self._claims_lock = threading.Lock()
        self._jti: dict[str, str] = {}  # node id -> id of the token it connected with
        self._cp_id = str(uuid.uuid4())
        self._instances: Instances | None = None  # set at start (see `_instances`)
        super().__init__(settings, **kw)
        self._acks = AckCounts(store, self._spawn)

    # ---- trust ----------------------------------------------------------------------------------
    def _tls_setup(self, settings: Any) -> None:
        ca = MeshCA.load_or_create(settings.prefix_path / "mesh")
        crt, key = ca.control_plane_pair(settings.prefix_path / "mesh")
        ctx = tlspolicy.context(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.verify_mode = ssl.CERT_NONE  # the token authenticates the data plane
        self._ssl, self._creds = ctx, None

    def _peer_refusal(self, der: bytes | None) -> str | None:
        return None

    def _requirement(self) -> str:
        return "dataplane token: data planes must present a token this control plane signed"

    # ---- registration ---------------------------------------------------------------------------
    async def _admit(self, conn, hello: dict[str, Any], where: str) -> bool:
        try:
            mesh, name, jti, sub = await asyncio.to_thread(self._register, hello)
        except DataplaneBusy as e:
            log.warning("refused data plane %s (%s): %s", hello.get("name") or hello["node_id"], where, e)
            conn.send(encode_message("error", reason="dataplane_busy", message=str(e)))
            conn.close(1008, "dataplane busy")
            return False
        except (TokenError, ResourceError, LookupError) as e:
            log.warning("refused data plane %s (%s): %s", hello.get("name") or hello["node_id"], where, e)
            conn.send(encode_message("error", reason="dataplane_refused", message=str(e)))
            conn.close(1008, "dataplane refused")
            return False
        before = self._who.get(hello["node_id"])
        if before is not None and before[:2] != (mesh, name):  # the same node under another name
            self._release(before[0], before[1], hello["node_id"])
        self._who[hello["node_id"]] = (mesh, name, sub)
        self._jti[hello["node_id"]] = jti
        log.info("dataplane %s/%s registered from %s", mesh, name, where)
        self._changed_store()
        return True

    def _register(self, hello: dict[str, Any]) -> tuple[str, str, str, str]:
        """(mesh, name, token id, subscription id) of an admitted data plane; raises the refusal."""
        from meshway.store._mesh import MeshNotFound

        token = hello.get("token") or ""
        if not token:
            raise TokenError("no dataplane token (use --dataplane-token-file; see 'meshway generate dataplane-token')")
        resource = hello.get("dataplane")
        if resource is not None:
            resource = parse_resource(resource, kind="Dataplane")
        else:
            mesh, name = hello.get("mesh") or "default", hello.get("name") or ""
            resource = self._store.mesh.get("Dataplane", mesh, name)
            if resource is None:
                raise LookupError(f"no Dataplane {name!r} in mesh {mesh!r}: give --dataplane-file or apply it first")
        mesh, name = resource["mesh"], resource["name"]
        ca = MeshCA.load_or_create(self._settings.prefix_path / "mesh")
        claims = verify(token, ca, self._store.mesh.revoked(mesh))
        check_binding(claims, mesh, name, _tags(resource))
        self._claim(mesh, name, hello["node_id"])
        sub = self._subscribe(mesh, name, hello)
        if hello.get("dataplane") is not None:
            try:
                self._store.mesh.put({k: v for k, v in resource.items() if k not in ("creationTime", "modificationTime")})
            except Exception as e:
                self._release(mesh, name, hello["node_id"])
                self._unsubscribe(mesh, name, sub)
                if isinstance(e, MeshNotFound):
                    raise LookupError(str(e)) from None
                raise
        return mesh, name, claims["jti"], sub

    def _subscribe(self, mesh: str, name: str, hello: dict[str, Any]) -> str:
        """The connection's subscription in the insight, written under the row's lock after checking
        that no other live control plane node holds a data plane of this name (DataplaneBusy)."""
        sub, node_id = str(uuid.uuid4()), hello["node_id"]
        versions = {"kumaDp": {"version": hello["version"]}, "meshway": {"version": hello["version"]}}
        before: list[str | None] = [None]  # the node this data plane was connected to last, if another

        def change(insight: dict | None) -> dict:
            holder = self._instances.held_elsewhere(insight, node_id) if self._instances else None
            if holder is not None:
                raise DataplaneBusy(f"data plane {name!r} of mesh {mesh!r} is already connected to control plane "
                                    f"{holder}: there is already an active stream from this node, try again later")
            before[0] = _insights.last_holder(insight)
            return _insights.connected(insight, sub, self._cp_id, versions, node_id)

        try:
            self._store.mesh.update_insight(mesh, name, change)
            if self._instances and before[0] not in (None, self._cp_id):
                self._instances.moved_here(before[0])
        except DataplaneBusy:
            self._release(mesh, name, node_id)
            raise
        except Exception as e:  # insights are status: never refuse a data plane over them
            log.warning("cannot record the insight of dataplane %s/%s: %s", mesh, name, e)
        return sub

    def _unsubscribe(self, mesh: str, name: str, sub: str) -> None:
        try:
            self._store.mesh.update_insight(mesh, name, lambda i: _insights.disconnected(i, sub))
        except Exception as e:
            log.warning("cannot record the insight of dataplane %s/%s: %s", mesh, name, e)

    def _claim(self, mesh: str, name: str, node_id: str) -> None:
        """Before anything is stored: a second data plane must not replace the connected one's
        registration (its inbounds, its address) behind its back."""
        with self._claims_lock:
            holder = self._claims.get((mesh, name))
            if holder is not None and holder != node_id:
                raise DataplaneBusy(f"data plane {name!r} of mesh {mesh!r} is already connected (node {holder}): "
                                    "there is already an active stream from this node, try again later")
            self._claims[(mesh, name)] = node_id

    def _release(self, mesh: str, name: str, node_id: str) -> None:
        with self._claims_lock:
            if self._claims.get((mesh, name)) == node_id:
                del self._claims[(mesh, name)]

    async def _insight(self, mesh: str, name: str, change) -> None:
        try:
            await asyncio.to_thread(self._store.mesh.update_insight, mesh, name, change)
        except Exception as e:  # insights are status: never break a session over them
            log.warning("cannot record the insight of dataplane %s/%s: %s", mesh, name, e)

    async def _left(self, session) -> None:
        who = self._who.get(session.node_id)
        if who is None or self._sessions.get(session.node_id) not in (None, session):
            return
        del self._who[session.node_id]
        self._jti.pop(session.node_id, None)
        mesh, name, sub = who
        MESH_STATS.forget(mesh, name)  # it reports again wherever it reconnects (`_meshstats`)
        self._release(mesh, name, session.node_id)
        await self._insight(mesh, name, lambda i: _insights.disconnected(i, sub))

    # ---- messages ---------------------------------------------------------------------------------
    def _handle(self, session, msg: dict[str, Any]) -> None:
        who = self._who.get(session.node_id)
        kind = msg["type"]
        if who is None:
            return super()._handle(session, msg)
        mesh, name, _ = who
        if kind == "goodbye":
            MESH_STATS.forget(mesh, name)
            self._spawn(self._deregister(mesh, name))
            return
        if kind == "mesh_gateway":  # a mesh gateway's registration and TTL heartbeat (meshway.zones._gwlink)
            from meshway.zones._gwlink import on_message

            self._spawn(asyncio.to_thread(on_message, self._store, mesh, name, msg))
            return
        if kind == "mesh_stats":  # its per-service metrics, for the mesh-wide view (`_meshstats`)
            MESH_STATS.report(mesh, name, msg.get("text"))
            return
        if kind == "health":
            ready = {str(k): bool(v) for k, v in list(msg["inbound"].items())[:256]}
            self._spawn(self._insight(mesh, name, lambda i: _insights.health(i, ready)))
            return
        if kind in ("applied", "rejected"):  # counted, written in batches (`_acks`)
            self._acks.count(mesh, name, who[2], "acknowledged" if kind == "applied" else "rejected")
        super()._handle(session, msg)

    # ---- offline data planes (Kuma's runtime.universal.dataplaneCleanupAge) ------------------------
    async def start(self, *args: Any, **kw: Any) -> None:
        await super().start(*args, **kw)
        age = float(getattr(self._settings, "mesh_dataplane_cleanup_age", 0) or 0)
        if age > 0:
            self._spawn(self._cleanup_loop(age))
        self._spawn(self._revocation_loop())
        host, port = self.address[:2]
        self._instances = Instances(self._store, self._cp_id, {"address": f"{host}:{port}",
                                                               "hostname": socket.gethostname()},
                                    status=MESH_STATS.published)
        MESH_STATS.peers = self._instances.fresh_peers
        self._spawn(self._instance_loop())

    async def _instance_loop(self) -> None:
        """Heartbeat; close the connections of nodes found dead; reopen ours if we were (`_instances`)."""
        while True:
            try:
                dead, revived = await asyncio.to_thread(self._instances.beat)
                for instance in dead:
                    await asyncio.to_thread(self._instances.finalize, instance)
                if revived:
                    log.warning("this control plane had been taken for dead by another node (database unreachable?):"
                                " recording its %d data plane connection(s) again", len(self._who))
                    for mesh, name, sub in list(self._who.values()):
                        await self._insight(mesh, name, lambda i, sub=sub: _insights.reopened(i, sub))
            except Exception as e:  # a database hiccup: try again next beat
                log.error("cannot write this control plane's heartbeat: %s", e)
            await asyncio.sleep(BEAT)

    async def _revocation_loop(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_CHECK)
            try:
                await self._cut_revoked()
            except Exception as e:  # a database hiccup: try again next period
                log.error("cannot read the dataplane token revocations: %s", e)

    async def _cut_revoked(self) -> None:
        meshes = {mesh for mesh, _, _ in self._who.values()}
        revoked = {mesh: await asyncio.to_thread(self._store.mesh.revoked, mesh) for mesh in meshes}
        for node_id, (mesh, name, _) in list(self._who.items()):
            session = self._sessions.get(node_id)
            if session is None or self._jti.get(node_id) not in revoked.get(mesh, ()):
                continue
            log.warning("dataplane %s/%s disconnected: its token has been revoked", mesh, name)
            session.conn.send(encode_message("error", reason="dataplane_refused",
                                             message="the dataplane token has been revoked"))
            session.conn.close(1008, "dataplane token revoked")

    async def _cleanup_loop(self, age: float) -> None:
        """Delete the Dataplanes whose data plane has been offline for `age` seconds (a crashed
        host never says goodbye); checked every age/2, at most every minute."""
        period = min(max(age / 2, 0.5), 60.0)
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(self._cleanup_once, age)
            except Exception as e:  # a database hiccup: try again next period
                log.error("cannot clean up offline dataplanes: %s", e)

    def _cleanup_once(self, age: float) -> None:
        online = {(mesh, name) for mesh, name, _ in self._who.values()}
        now = time.time()
        for dp in self._store.mesh.list("Dataplane"):
            key = (dp["mesh"], dp["name"])
            if key in online:  # connected here: no need to read its insight (thousands per period)
                continue
            since = _insights.offline_since(self._store.mesh.insight(*key))
            if since is None or now - since < age:
                continue
            if self._store.mesh.delete("Dataplane", *key):
                log.info("dataplane %s/%s deleted: offline for %.0f s (mesh_dataplane_cleanup_age)",
                         key[0], key[1], now - since)

    async def _deregister(self, mesh: str, name: str) -> None:
        try:
            await asyncio.to_thread(self._store.mesh.delete, "Dataplane", mesh, name)
        except Exception as e:
            log.error("cannot deregister dataplane %s/%s: %s", mesh, name, e)
            return
        log.info("dataplane %s/%s deregistered (graceful shutdown)", mesh, name)
        self._changed_store()

    def _sign(self, session, csr: str) -> None:
        who = self._who.get(session.node_id)
        if who is None:
            return super()._sign(session, csr)
        mesh, name, _ = who
        resource = self._store.mesh.get("Dataplane", mesh, name) or {}
        uris = tuple(service_spiffe_id(mesh, s) for s in services(resource)) + kuma_uris(mesh, resource)
        from ._ca import CsrError
        from ._mtls import dataplane_issuer

        ca, hours, bundle = dataplane_issuer(self._store.mesh, mesh, self._ca, self._cert_hours)  # per-mesh mTLS
        try:
            cert = ca.sign(csr, session.node_id, session.hostname, hours, extra_uris=uris)
        except CsrError as e:
            session.conn.send(encode_message("error", reason="csr_refused", message=str(e)))
            return
        session.conn.send(encode_message("certificate", cert=cert, ca=bundle))
        from cryptography import x509

        not_after = x509.load_pem_x509_certificate(cert.encode()).not_valid_after_utc.timestamp()
        self._spawn(self._insight(mesh, name, lambda i: _insights.certificate(i, not_after)))
        log.info("dataplane %s/%s: mesh certificate issued", mesh, name)


def _tags(resource: dict[str, Any]) -> dict[str, set[str]]:
    net = resource.get("networking") or {}
    tags: dict[str, set[str]] = {}
    for part in [*(net.get("inbound") or ()), net.get("gateway") or {}]:
        for k, v in (part.get("tags") or {}).items():
            tags.setdefault(k, set()).add(v)
    tags.setdefault(SERVICE_TAG, set())
    return tags


def verify_control_plane(der: bytes | None) -> str | None:
    """The data plane's check after the handshake: None when the peer is the control plane."""
    from cryptography import x509

    from ._identity import spiffe_ids

    if not der:
        return "no certificate"
    if CONTROL_PLANE_ID not in spiffe_ids(x509.load_der_x509_certificate(der)):
        return f"certificate is not named {CONTROL_PLANE_ID} (a mesh node, not the control plane?)"
    return None
