"""Data-plane side of hybrid mode: one long-lived link to the control plane.

Theory of operation (wire protocol in `_protocol.py`):
- Connect to `wss://<cluster_control_plane>/v1/outlet` over mutual TLS, send `hello` with the
  persistent node id and the hash we run, then `ping` every `cluster_data_plane_heartbeat` s.
- Each pushed config is applied in arrival order through the node's `apply` callback. An
  unchanged hash is skipped. Success: the cache is rewritten, then `applied` is reported;
  failure: the last good config keeps serving and `rejected` carries the reason.
- Any failure ends the session; the next attempt waits an exponential, jittered, capped delay
  and one line is logged per failed attempt. The delay resets only after a session that
  delivered a config or lasted a while, so a CP that accepts-then-drops is never hammered.
- Several control planes (`meshway dp run --cp-address A,B`): a session that ends moves the data
  plane on to the next one at once (a jitter of at most FAILOVER_JITTER s, so that the data planes
  of a dead control plane do not all land on the next in the same instant); the backoff applies
  once every one has failed in a row. Meanwhile the workers keep serving the current config.
- Mesh (unless `mesh_mtls = off`): the hello carries what this sidecar fronts; a `csr` for the
  node key follows when there is no valid certificate, and again at 2/3 of its lifetime (or
  every CSR_RETRY s until answered). Each `certificate` is checked, written to the prefix and
  handed to `on_identity`; the previous one keeps serving until then (no connection drops).
- Incremental (a client with DELTA, i.e. `meshway dp run`): the hello says `delta`; a
  `reconfigure_delta` is applied onto the resources of the version we run when it is its base,
  else we ask for the whole configuration (`resync`) and keep serving ours (see `_delta.py`).
- Given `traffic` (the node's /metrics text), its request counters go to the control plane as
  they change (`_traffic`).
"""
from __future__ import annotations

import asyncio
import json
import inspect
import logging
import random
import socket
import time
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from meshway import __version__
from meshway.mesh import MeshCredentials, NodeIdentity, inbound_entries
from meshway.pki import load_cluster_credentials

from . import _delta, _traffic
from ._backoff import Backoff
from ._identity import load_node_id
from ._protocol import (
    EMPTY_HASH, MAX_CONFIG_FRAME, PATH, ProtocolError, decode_frame, decode_message, encode_message, parse_labels,
)
from ._tls import client_context, describe_error, peer_refusal
from .cache import write_cache

log = logging.getLogger("meshway.cluster")
Apply = Callable[[dict[str, Any], str], Awaitable[float]]
STABLE_SESSION = 10.0  # seconds a session must last for the backoff to start over
CSR_RETRY = 30.0  # seconds before asking again when a CSR got no answer
MIN_RENEW_GAP = 1.0  # seconds between two CSRs after an answer
FAILOVER_JITTER = 0.5  # at most this many seconds before trying the next control plane (no herd at once)
OnIdentity = Callable[[dict[str, Any]], Any]


class ClusterClient:
    """The data plane's link to its control plane: receives, applies, caches and reports configs."""

    DELTA = False  # ask for incremental pushes (`_delta`)

    def __init__(
        self,
        settings: Any,
        *,
        apply: Apply,
        config_hash: str | None = None,
        version: str = __version__,
        hostname: str | None = None,
        backoff_initial: float = 1.0,
        backoff_cap: float = 30.0,
        connect_timeout: float = 10.0,
        on_identity: OnIdentity | None = None,
        traffic: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        if not settings.cluster_control_plane:
            raise ValueError("cluster_control_plane is not set: a data plane needs the control plane's host:port")
        self._target = settings.cluster_control_plane
        self._targets = [self._target]  # `meshway dp run` may be given several (see `_next_target`)
        self._tls_setup(settings)
        self._prefix = settings.prefix_path
        self._heartbeat = float(settings.cluster_data_plane_heartbeat)
        self._labels = parse_labels(settings.cluster_dp_labels)
        self._apply = apply
        self._hash = config_hash or EMPTY_HASH
        self._version = version
        self._hostname = hostname or socket.gethostname()
        self._backoff = Backoff(backoff_initial, backoff_cap)
        self._connect_timeout = connect_timeout
        self._node_id = load_node_id(self._prefix)
        self._mesh_on = getattr(settings, "mesh_mtls", "off") != "off"
        self._inbound = inbound_entries(settings.mesh_inbound, settings.origins) if self._mesh_on else ()
        self._identity = NodeIdentity(self._prefix, self._node_id) if self._mesh_on else None
        self._mesh_creds: MeshCredentials | None = self._identity.load() if self._identity else None
        self._cert_arrived = asyncio.Event()
        self._on_identity = on_identity
        self._traffic = traffic  # this node's /metrics text: its request counters go to the CP (`_traffic`)
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task | None = None
        self._delivered = False
        self._stopping = False
        self.sessions = 0  # connections made so far (a new one: the control plane may know nothing of us)
        self._applied = _delta.Applied()  # the resources of the version we run, for deltas

    def known(self, snapshot: dict[str, Any], config_hash: str) -> None:
        """The configuration we run already (the cache at start): deltas may build on it."""
        if self.DELTA and config_hash == self._hash:
            self._applied.commit(config_hash, _delta.texts(_delta.resources(snapshot)))

    def _tls_setup(self, settings: Any) -> None:
        """The cluster certificate and who we accept as control plane (`meshway dp run` differs)."""
        self._creds = load_cluster_credentials(settings)
        self._ssl = client_context(self._creds)
        self._server_name = self._creds.server_name or self._target.rsplit(":", 1)[0].strip("[]")

    def _peer_refusal(self, der: bytes | None) -> str | None:
        return peer_refusal(self._creds, der)

    def _hello_fields(self) -> dict[str, Any]:
        fields = dict(node_id=self._node_id, hostname=self._hostname, version=self._version,
                      labels=self._labels, config_hash=self._hash, heartbeat=self._heartbeat)
        if self._inbound:
            fields["mesh_inbound"] = list(self._inbound)
        if self.DELTA:
            fields["delta"] = True
        return fields

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def config_hash(self) -> str:
        """The hash of the configuration this data plane runs (EMPTY_HASH before the first)."""
        return self._hash

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def mesh_identity(self) -> dict[str, Any] | None:
        """The current mesh certificate, key and CA paths (for the workers), or None."""
        if self._mesh_creds is None:
            return None
        return {**self._mesh_creds.as_dict(), "node_id": self._node_id}

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Close the link politely (1001) and stop reconnecting."""
        self._stopping = True
        if self._ws is not None:
            try:
                await asyncio.wait_for(self._ws.close(1001, "data plane shutting down"), 3)
            except (OSError, TimeoutError, ConnectionClosed):
                pass
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._ws = None

    async def _run(self) -> None:
        failed: set[str] = set()  # control planes tried without a good session since the last one
        while True:
            loop = asyncio.get_running_loop()
            started, self._delivered = loop.time(), False
            try:
                await self._session()  # returns only by raising
            except Exception as e:  # network, TLS, HTTP, protocol or anything unforeseen: retry, never die
                reason = describe_error(e)
            if self._stopping:
                return
            if self._delivered or loop.time() - started >= STABLE_SESSION:
                self._backoff.reset()
                failed.clear()
            failed.add(self._target)
            left, target = self._target, self._next_target()
            if len(failed) < len(self._targets):  # another control plane not tried yet: at once (jittered)
                delay = random.uniform(0, FAILOVER_JITTER)
            else:  # every one failed: wait before the next round
                failed.clear()
                delay = self._backoff.next()
            if target == left:
                log.error("connection to control plane %s failed: %s; retrying in %.2f s", left, reason, delay)
            else:
                log.error("connection to control plane %s failed: %s; trying control plane %s in %.2f s",
                          left, reason, target, delay)
            await asyncio.sleep(delay)

    def _next_target(self) -> str:
        """Move on to the next control plane of the list (the same one when there is only one)."""
        self._target = self._targets[(self._targets.index(self._target) + 1) % len(self._targets)]
        return self._target

    def _connect(self) -> connect:
        return connect(
            f"wss://{self._target}{PATH}", ssl=self._ssl, server_hostname=self._server_name, proxy=None,
            open_timeout=self._connect_timeout, close_timeout=2, max_size=MAX_CONFIG_FRAME, compression=None,
            user_agent_header=f"meshway/{self._version}",
        )

    def _hello(self) -> str:
        return encode_message("hello", **self._hello_fields())

    async def _session(self) -> None:
        async with self._connect() as ws:
            refusal = self._peer_refusal(ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True))
            if refusal:
                raise ConnectionError(f"refusing the control plane: its {refusal}")
            await ws.send(self._hello())
            self._ws = ws
            self.sessions += 1
            log.info("connected to control plane %s as %s (config %s)", self._target, self._node_id, self._hash)
            beat = asyncio.get_running_loop().create_task(self._beat(ws))
            renew = asyncio.get_running_loop().create_task(self._renew(ws)) if self._identity else None
            traffic = asyncio.get_running_loop().create_task(
                _traffic.report(ws.send, self._traffic, lambda: self._hash)) if self._traffic else None
            try:
                async for message in ws:
                    await self._on_message(ws, message)
            finally:
                beat.cancel()
                for task in (renew, traffic):
                    if task is not None:
                        task.cancel()
                self._ws = None
        raise ConnectionError(f"control plane closed the connection ({ws.close_code} {ws.close_reason or ''})".strip())

    async def _beat(self, ws: ClientConnection) -> None:
        try:
            while True:
                await asyncio.sleep(self._heartbeat)
                await ws.send(encode_message("ping", config_hash=self._hash))
        except ConnectionClosed:
            return

    async def _on_message(self, ws: ClientConnection, message: str | bytes) -> None:
        try:
            if isinstance(message, str):
                await self._on_control(decode_message(message))
                return
            body = decode_frame(message)
            if body["config_hash"] == self._hash:
                log.debug("configuration %s unchanged; skipped", body["config_hash"])
                return
            if body["type"] == "reconfigure_delta":
                named, how = self._from_delta(body)
                if named is None:
                    await ws.send(encode_message("resync", config_hash=self._hash))
                    return
            elif self.DELTA:  # kept as resources, for the deltas that follow
                named, how = _delta.texts(_delta.resources(body["config_table"])), " (whole configuration)"
            else:
                await self._apply_config(ws, body["config_table"], body["config_hash"])
                return
        except ProtocolError as e:
            log.error("control plane sent an invalid message: %s; ignored", e)
            return
        await self._apply_config(ws, json.loads(_delta.assemble(named)), body["config_hash"], how=how, named=named)

    def _from_delta(self, body: dict[str, Any]) -> tuple[dict | None, str]:
        """(resources after this delta, how it came), or (None, "") when it does not build on ours."""
        try:
            put, removed = _delta.check_delta(body)
        except ValueError as e:
            raise ProtocolError(str(e)) from None
        try:
            named = self._applied.delta(body["base_hash"], put, removed)
        except LookupError as e:
            log.warning("configuration %s is a delta from %s, but %s: asking for the whole configuration",
                        body["config_hash"], body["base_hash"], e)
            return None, ""
        return named, f" (delta from {body['base_hash']}: {len(put)} changed, {len(removed)} removed)"

    async def _on_control(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "certificate" and self._identity is not None:
            await self._install(msg["cert"], msg["ca"])
        elif msg["type"] == "error":
            log.error("control plane refused this data plane (%s): %s", msg["reason"], msg["message"])
        else:
            log.warning("control plane sent an unexpected %r message; ignored", msg["type"])

    async def _apply_config(self, ws: ClientConnection, snapshot: dict[str, Any], config_hash: str, how: str = "",
                            named: dict | None = None) -> None:
        self._delivered = True
        try:
            ms = await self._apply(snapshot, config_hash)
        except Exception as e:  # the node's compile/validate error: its message is the reason
            error = str(e) or type(e).__name__
            log.error("configuration %s rejected: %s; still running %s", config_hash, error, self._hash)
            await ws.send(encode_message("rejected", config_hash=config_hash, error=error))
            return
        self._hash = config_hash
        if named is not None:
            self._applied.commit(config_hash, named)
        await self._write_cache(snapshot, config_hash)
        ms = float(ms) if isinstance(ms, (int, float)) else 0.0
        await ws.send(encode_message("applied", config_hash=config_hash, ms=ms))
        log.info("configuration %s applied in %.1f ms%s", config_hash, ms, how)

    async def _write_cache(self, snapshot: dict[str, Any], config_hash: str) -> None:
        try:
            await asyncio.to_thread(write_cache, self._prefix, snapshot, config_hash)
        except OSError as e:  # a full disk must not stop the data plane from serving
            log.error("cannot write the configuration cache in %s: %s", self._prefix, e)

    # ---- mesh identity -------------------------------------------------------------------
    async def _renew(self, ws: ClientConnection) -> None:
        """Ask for a certificate when there is none and at 2/3 of each one's lifetime."""
        try:
            while True:
                creds = self._mesh_creds
                if creds is None or time.time() >= creds.renew_at:
                    csr = await asyncio.to_thread(self._identity.csr)
                    await ws.send(encode_message("csr", csr=csr))
                    wait = CSR_RETRY
                else:
                    wait = creds.renew_at - time.time()
                self._cert_arrived.clear()
                try:
                    await asyncio.wait_for(self._cert_arrived.wait(), min(wait, 3600.0))
                except TimeoutError:
                    continue
                await asyncio.sleep(MIN_RENEW_GAP)  # a certificate already due is not re-requested in a loop
        except ConnectionClosed:
            return

    async def _install(self, cert: str, ca: str) -> None:
        try:
            creds = await asyncio.to_thread(self._identity.install, cert, ca)
        except (ValueError, OSError) as e:
            log.error("control plane sent an unusable mesh certificate: %s; keeping the current one", e)
            return
        self._mesh_creds = creds
        self._cert_arrived.set()
        log.info("mesh certificate %s installed (serial %s, renewal in %.0f s)", creds.spiffe_id, creds.serial,
                 creds.renew_at - time.time())
        if self._on_identity is None:
            return
        try:
            result = self._on_identity(self.mesh_identity)
            if inspect.isawaitable(result):
                await result
        except Exception as e:  # the workers keep their previous certificate
            log.error("cannot hand the new mesh certificate to the workers: %s", e)
