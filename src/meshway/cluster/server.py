"""Control-plane side of hybrid mode: the cluster listener and the push of snapshots.

Theory of operation (the wire protocol itself is in `_protocol.py`):
- Each accepted TCP connection is one `WsConnection` Protocol running TLS (memory BIOs) and the
  websocket itself, so that a refused data plane produces one log line on `meshway.cluster`
  saying why (see `_wsconn.py`); a session task then walks it through upgrade, hello, pushes.
- The CP keeps one current (hash, compressed frame). `notify_changed()` only sets a flag; a single
  task waits `coalesce_delay` for the burst to settle, reads the snapshot once, and if the hash
  changed, compresses once and offers the frame to every session (each sends only the newest).
- A data plane is pushed a config when its reported hash differs and it was not already sent
  that hash: a rejected config is not re-sent on every heartbeat, only a newer one is.
- Mesh: each connected data plane's `mesh_inbound` joins the pushed snapshot's `mesh` section
  (with a derived hash); a join or leave that changes it is pushed like a config change, the
  joiner's first push already including itself. `csr` messages are signed by the mesh CA the
  control plane keeps in `<prefix>/mesh/` (see `meshway.mesh`), for the session's node id.
- Incremental: a data plane whose hello says `delta` gets, instead of the whole snapshot, what
  changed since the version it runs, when that version is among the last few (`_delta`); else,
  or when it asks (`resync`), the whole snapshot. Each delta is made once per base version.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import uuid
from typing import Any, Awaitable, Callable

from meshway import __version__
from meshway.mesh import NODE_CERT_HOURS, CsrError, InboundError, MeshCA, check_inbound, mesh_section, with_mesh
from meshway.pki import load_cluster_credentials

from . import _delta
from . import _registry as reg
from ._admin import admin_routes as _admin_routes
from ._certinfo import expiry_timestamp
from ._protocol import (
    EMPTY_HASH, MAX_CONTROL_MESSAGE, PATH, ProtocolError, decode_message, encode_config, encode_message,
    version_incompatibility,
)
from ._session import DataPlaneSession
from ._tls import describe_error, peer_refusal, requirement, server_context
from ._wsconn import Closed, WsConnection

log = logging.getLogger("meshway.cluster")
Snapshot = tuple[dict[str, Any], str]


def _handshake_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)) or "EOF" in str(exc):
        return "the data plane closed the connection (does it trust this control plane's certificate?)"
    return describe_error(exc)


def _check_hello(msg: dict[str, Any]) -> None:
    if msg["type"] != "hello":
        raise ProtocolError(f"expected hello first, got {msg['type']!r}")
    try:
        uuid.UUID(msg["node_id"])
    except ValueError:
        raise ProtocolError(f"node_id {msg['node_id'][:64]!r} is not a UUID") from None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in msg["labels"].items()):
        raise ProtocolError("labels must map strings to strings")
    try:
        msg["mesh_inbound"] = check_inbound(msg.get("mesh_inbound", []))
    except InboundError as e:
        raise ProtocolError(str(e)) from None


class ClusterServer:
    """The control plane's cluster listener: accepts data planes over mTLS websockets and pushes snapshots."""

    def __init__(
        self,
        settings: Any,
        *,
        get_snapshot: Callable[[], Snapshot | Awaitable[Snapshot]],
        version: str = __version__,
        coalesce_delay: float = 0.05,
        handshake_timeout: float = 10.0,
        mesh_cert_hours: float = NODE_CERT_HOURS,
    ) -> None:
        self._tls_setup(settings)
        self._get_snapshot = get_snapshot
        self._version = version
        self._delay = coalesce_delay
        self._handshake_timeout = handshake_timeout
        self._registry = reg.Registry()
        self._sessions: dict[str, DataPlaneSession] = {}
        self._frame: bytes | None = None
        self._hash: str | None = None
        self._versions = _delta.Versions()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self._mesh_dir = settings.prefix_path / "mesh"
        self._ca: MeshCA | None = None
        self._members: dict[str, tuple[str, ...]] = {}
        self._cert_hours = mesh_cert_hours

    def _tls_setup(self, settings: Any) -> None:
        """The cluster certificate data planes must present (`meshway dp run`'s server differs)."""
        self._creds = load_cluster_credentials(settings)
        self._ssl = server_context(self._creds)

    def _peer_refusal(self, der: bytes | None) -> str | None:
        return peer_refusal(self._creds, der)

    def _requirement(self) -> str:
        return requirement(self._creds)

    # Lifecycle
    async def start(self, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None) -> None:
        """Read the first snapshot and listen, on host:port or on a pre-bound socket."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._refreshing = asyncio.Lock()
        self._ca = await asyncio.to_thread(MeshCA.load_or_create, self._mesh_dir)
        await self._refresh()
        factory = lambda: WsConnection(self._ssl, MAX_CONTROL_MESSAGE, self._accepted)  # noqa: E731
        if sock is not None:
            self._server = await self._loop.create_server(factory, sock=sock, backlog=2048)
        else:
            self._server = await self._loop.create_server(factory, host, port, backlog=2048, reuse_address=True)
        self._spawn(self._push_loop())
        log.info("cluster listener on %s (%s)", self.address, self._requirement().split(":")[0])

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound; useful with port 0."""
        return self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        """Close the listener and every data-plane connection."""
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            session.conn.close(1001, "control plane shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Config changes
    def notify_changed(self) -> None:
        """The configuration may have changed: re-read it soon and push it. Safe from any thread."""
        if self._server is None:
            return  # not started (or stopped): start() reads the snapshot anyway
        self._loop.call_soon_threadsafe(self._changed.set)

    async def _push_loop(self) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(self._delay)  # let the burst land: one read serves all of it
            self._changed.clear()
            try:
                await self._refresh()
            except Exception as e:  # the store may fail; serving must not
                log.error("reading the configuration snapshot failed: %s; data planes keep their current config", e)

    async def _refresh(self) -> None:
        async with self._refreshing:  # the push loop and a joining sidecar: one version after the other
            await self._refresh_now()

    async def _refresh_now(self) -> None:
        result = self._get_snapshot()
        snapshot, config_hash = await result if inspect.isawaitable(result) else result
        snapshot, config_hash = with_mesh(snapshot, config_hash, mesh_section(self._members))
        if config_hash == self._hash:
            return
        before = self._hash
        self._frame, self._versions = await asyncio.to_thread(self._encode, snapshot, config_hash)
        self._hash = config_hash
        delta = self._versions.frame(before) if before is not None else None
        log.info("configuration %s: pushing to %d data plane(s) (whole: %d bytes%s)", config_hash,
                 len(self._sessions), len(self._frame),
                 f"; delta from {before}: {delta[1]} changed, {delta[2]} removed, {len(delta[0])} bytes" if delta else "")
        for session in self._sessions.values():
            self._offer(session)

    def _encode(self, snapshot: dict[str, Any], config_hash: str) -> tuple[bytes, _delta.Versions]:
        """Off the event loop: the whole frame, and the resources to make deltas from."""
        return encode_config(snapshot, config_hash), self._versions.next(snapshot, config_hash)

    def _offer(self, session: DataPlaneSession, whole: bool = False) -> None:
        """Offer the current version: a delta from the session's base when it takes them and we
        still know that base, else the whole snapshot."""
        if self._frame is None or self._hash in (session.reported, session.sent):
            return
        delta = self._versions.frame(session.base) if session.delta and not whole else None
        if session.delta and delta is None and not whole and session.base != EMPTY_HASH:
            log.info("data plane %s runs %s, not among the last %d versions: sending the whole configuration",
                     session.node_id, session.base, _delta.HISTORY)
        session.offer(delta[0] if delta else self._frame, self._hash)

    # Status
    def data_planes(self) -> list[dict[str, Any]]:
        """Entries of Kong 3's `GET /clustering/data-planes` (plus last_apply_ms, last_error)."""
        return self._registry.data_planes()

    def status_map(self) -> dict[str, dict[str, Any]]:
        """Kong 2.0's `GET /clustering/status` body."""
        return self._registry.status_map()

    def traffic_metrics(self) -> str:
        """`GET /clustering/metrics`: the data planes' request counters as they reported them (`_traffic`)."""
        from ._traffic import render

        return render(self._registry.traffic())

    def admin_routes(self) -> list:
        """Starlette routes for the two status endpoints, to mount in the Admin API app."""
        return _admin_routes(self)

    @property
    def config_hash(self) -> str | None:
        return self._hash

    # Connections
    def _accepted(self, conn: WsConnection) -> None:
        self._spawn(self._serve(conn))

    async def _serve(self, conn: WsConnection) -> None:
        peer = conn.transport.get_extra_info("peername") or ("?", 0)
        where = f"{peer[0]}:{peer[1]}"
        try:
            await conn.wait_tls(self._handshake_timeout)
        except (OSError, TimeoutError, ConnectionError) as e:
            log.warning("refused data plane %s: TLS handshake failed: %s (%s)", where, _handshake_reason(e),
                        self._requirement())
            return
        await self._guarded_session(conn, peer[0], where)

    async def _guarded_session(self, conn: WsConnection, ip: str, where: str) -> None:
        try:
            await self._session(conn, ip, where)
        except ProtocolError as e:
            log.warning("data plane %s: protocol error: %s; closing its connection", where, e)
            conn.close(1002, "protocol error")
        except TimeoutError:
            log.warning("data plane %s: silent for too long; closing its connection", where)
            conn.close(1001, "heartbeat timeout")
        except Closed as e:
            log.info("data plane %s disconnected: %s", where, e)
        except asyncio.CancelledError:
            conn.close(1001, "control plane shutting down")
            raise
        except Exception:  # a bug in handling one data plane must not take the listener down
            log.exception("data plane %s: unexpected error; closing its connection", where)
            conn.close(1011, "internal error")
        finally:
            if conn.transport is not None and not conn.closed:
                conn.close(1000)

    async def _upgrade(self, conn: WsConnection, where: str) -> bool:
        await conn.wait_request(self._handshake_timeout)
        refusal = self._peer_refusal(conn.peer_der)
        if refusal:
            log.warning("refused data plane %s: %s (%s)", where, refusal, self._requirement())
            conn.reject(403, f"certificate refused: {refusal}\n")
            return False
        conn.accept(PATH)
        return True

    async def _session(self, conn: WsConnection, ip: str, where: str) -> None:
        if not await self._upgrade(conn, where):
            return
        hello = decode_message(await conn.recv(self._handshake_timeout))
        _check_hello(hello)
        record = self._registry.hello(reg.DataPlaneRecord(
            id=hello["node_id"], ip=ip, hostname=hello["hostname"][:255], version=hello["version"][:64],
            labels=hello["labels"], config_hash=hello["config_hash"], cert_expiry=expiry_timestamp(conn.peer_der)))
        if not self._compatible(conn, record, where) or not await self._admit(conn, hello, where):
            return
        await self._join_mesh(record.id, hello["mesh_inbound"])
        session = self._attach(conn, record, where, delta=hello.get("delta") is True)
        try:
            await self._receive(conn, session, self._idle_timeout(hello["heartbeat"]))
        finally:
            session.stop()
            if self._sessions.get(record.id) is session:
                del self._sessions[record.id]
                self._leave_mesh(record.id)
            await self._left(session)

    async def _admit(self, conn: WsConnection, hello: dict[str, Any], where: str) -> bool:
        """Whether this hello may go on (hybrid data planes: their certificate already said so)."""
        return True

    async def _left(self, session: DataPlaneSession) -> None:
        """A session ended (any reason)."""

    async def _join_mesh(self, node_id: str, inbound: tuple[str, ...]) -> None:
        if self._members.get(node_id, ()) == inbound:
            return
        self._members[node_id] = inbound
        log.info("data plane %s fronts %s in the mesh", node_id, ", ".join(inbound) or "nothing")
        try:
            await self._refresh()  # the joiner's first push already lists it
        except Exception as e:  # the store may fail; the push loop will try again
            log.error("reading the configuration snapshot failed: %s", e)
            self._changed.set()

    def _leave_mesh(self, node_id: str) -> None:
        if self._members.pop(node_id, ()):
            self._changed.set()

    def _compatible(self, conn: WsConnection, record: reg.DataPlaneRecord, where: str) -> bool:
        reason = version_incompatibility(self._version, record.version)
        if reason is None:
            record.sync_status = reg.SYNC_NORMAL
            return True
        record.sync_status = reg.SYNC_VERSION_INCOMPATIBLE
        log.warning("refused data plane %s (%s): %s", record.id, where, reason)
        conn.send(encode_message("error", reason="version_incompatible", message=reason))
        conn.close(1008, "version incompatible")
        return False

    def _attach(self, conn: WsConnection, record: reg.DataPlaneRecord, where: str,
                delta: bool = False) -> DataPlaneSession:
        old = self._sessions.pop(record.id, None)
        if old is not None:  # the same node reconnected before we noticed the old link died
            old.stop()
            old.conn.close(1000, "replaced by a new connection")
        session = DataPlaneSession(conn, record.id, record.config_hash, hostname=record.hostname, delta=delta)
        self._sessions[record.id] = session
        log.info("data plane %s connected from %s (hostname %s, version %s, config %s)",
                 record.id, where, record.hostname, record.version, record.config_hash)
        self._offer(session)
        return session

    @staticmethod
    def _idle_timeout(heartbeat: float) -> float:
        # Three missed heartbeats mean the data plane is gone; clamp what a peer may ask for.
        return min(max(3 * float(heartbeat), 10.0), 3600.0)

    async def _receive(self, conn: WsConnection, session: DataPlaneSession, idle: float) -> None:
        while True:
            message = await conn.recv(idle)
            if isinstance(message, bytes):
                raise ProtocolError("data planes send text messages only")
            self._handle(session, decode_message(message))

    def _handle(self, session: DataPlaneSession, msg: dict[str, Any]) -> None:
        node_id, kind = session.node_id, msg["type"]
        if kind == "ping":
            self._registry.seen(node_id, msg["config_hash"], msg.get("traffic"))
            session.reported = msg["config_hash"]
            self._offer(session)
        elif kind == "resync":  # a delta it could not apply: the whole configuration
            log.info("data plane %s runs %s and asks for the whole configuration", node_id, msg["config_hash"])
            session.reported, session.sent = msg["config_hash"], None
            self._offer(session, whole=True)
        elif kind == "applied":
            self._registry.applied(node_id, msg["config_hash"], msg["ms"])
            session.reported = msg["config_hash"]
        elif kind == "rejected":
            self._registry.rejected(node_id, msg["config_hash"], msg["error"][:2000])
            session.rejected = msg["config_hash"]
            log.warning("data plane %s rejected configuration %s: %s", node_id, msg["config_hash"], msg["error"][:2000])
        elif kind == "csr":
            self._sign(session, msg["csr"])
        else:
            raise ProtocolError(f"unexpected {kind!r} message from a data plane")

    def _sign(self, session: DataPlaneSession, csr: str) -> None:
        try:
            cert = self._ca.sign(csr, session.node_id, session.hostname, self._cert_hours)
        except CsrError as e:
            log.warning("data plane %s: mesh certificate refused: %s", session.node_id, e)
            session.conn.send(encode_message("error", reason="csr_refused", message=str(e)))
            return
        session.conn.send(encode_message("certificate", cert=cert, ca=self._ca.cert_pem))
        log.info("data plane %s: mesh certificate issued", session.node_id)
