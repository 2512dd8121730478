"""`meshway dp run`: a mesh data plane in one process tree, built on the node's data-plane machinery.

Theory of operation:
- The options (see `meshway.cli._dp`) become a node `Settings` for a data plane whose prefix is
  the work directory: stream listeners from the Dataplane (transparent proxying: one outbound
  listener on `redirectPortOutbound`, one inbound on `redirectPortInbound`; otherwise each
  inbound's `address:port` and each outbound's `address:port`), one proxy worker per
  `--concurrency`. The same master and workers as any data plane serve them.
- `DataplaneClient` is the hybrid client with another trust: TLS to `--cp-address` verified
  against the mesh CA the token pins (or `--ca-cert-file`), the control plane's certificate
  named `spiffe://meshway/control-plane`; the hello carries the token and the Dataplane. The
  node identity (key made here, CSR over the link) works as for any data plane.
- Each pushed snapshot is turned into this data plane's routes (`_translate`) before the
  workers compile it; the DNS proxy's table comes from the same snapshot.
- Ready (`/ready` on `--readiness-port` answers 200) once a configuration that contains this
  Dataplane has been applied; only then is the app (`-- APP ARGS`) started. The same port serves
  the per-service metrics (`/metrics`, or Envoy's `/stats/prometheus`; see `_metrics`).
- SIGTERM: `goodbye` (the control plane deletes the Dataplane at once), the app gets SIGTERM,
  in-flight connections drain, the process exits with the app's exit code (0 without an app).
  The app exiting on its own stops the data plane the same way.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import ssl
import subprocess
import uuid
from typing import Any

from meshway import tlspolicy
from meshway.cluster import ClusterClient
from meshway.cluster._protocol import encode_message
from meshway.node.master import Master, StartError

from ._dpserver import verify_control_plane
from ._permissions import dns_vips
from ._resources import inbounds
from ._translate import INBOUND_SOURCE, dataplane_snapshot, registered
from ._vips import dns_table

log = logging.getLogger("meshway.mesh")
HEALTH_INTERVAL = 2.0
METRICS_PATHS = (b"/metrics", b"/stats/prometheus")
MTLS_SWITCH_DELAY = 1.5  # s between seeing a new mTLS backend and asking for its certificate


@dataclasses.dataclass
class DpOptions:
    cp_host: str
    cp_port: int
    token: str
    ca_file: str | None
    dataplane: dict | None
    mesh: str
    name: str
    work_dir: str
    skip_verify: bool = False
    dns_enabled: bool = True
    dns_port: int = 15053
    readiness_port: int = 9902
    drain_time: float = 30.0
    app: list[str] = dataclasses.field(default_factory=list)
    # every control plane given (`--cp-address` repeated or comma separated); (cp_host, cp_port) is the first
    control_planes: tuple[tuple[str, int], ...] = ()

    def cp_targets(self) -> list[str]:
        """The control planes as `host:port` (`[v6]:port`)."""
        return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.control_planes or ((self.cp_host, self.cp_port),)]


def listeners(dataplane: dict | None) -> list[str]:
    """`stream_listen` entries for this Dataplane (see the module's rules)."""
    net = (dataplane or {}).get("networking") or {}
    tp = net.get("transparentProxying")
    if dataplane is None or tp:
        tp = tp or {}
        return [f"0.0.0.0:{tp.get('redirectPortOutbound') or 15001}", f"0.0.0.0:{tp.get('redirectPortInbound') or 15006}"]
    out = [f"{i['address']}:{i['port']}" for i in inbounds(dataplane)]
    out += [f"{o.get('address') or '127.0.0.1'}:{o['port']}" for o in net.get("outbound") or ()]
    return out


class DataplaneClient(ClusterClient):
    """The control-plane link of `meshway dp run`: token in the hello, CA from the token; pushes
    are incremental (what changed since the version we run, see `meshway.cluster._delta`)."""

    DELTA = True

    def __init__(self, settings: Any, *, options: DpOptions, on_refused, **kw: Any) -> None:
        self._opts = options
        self._on_refused = on_refused
        super().__init__(settings, **kw)
        # Several control planes on one database share the data planes: each starts on the one its
        # node id picks (spread, and the same one again after a restart), then moves on to the next
        # when its control plane goes away, keeping its configuration meanwhile.
        self._targets = options.cp_targets()
        self._target = first_control_plane(self._node_id, self._targets)
        self._server_name = _host(self._target)

    def _next_target(self) -> str:
        target = super()._next_target()
        self._server_name = _host(target)
        return target

    def _tls_setup(self, settings: Any) -> None:
        ctx = tlspolicy.context(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # the control plane is named by its SPIFFE id, checked after the handshake
        if self._opts.skip_verify:
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.load_verify_locations(cafile=self._opts.ca_file)
        self._ssl, self._creds, self._server_name = ctx, None, self._opts.cp_host

    def _peer_refusal(self, der: bytes | None) -> str | None:
        return None if self._opts.skip_verify else verify_control_plane(der)

    def _hello_fields(self) -> dict[str, Any]:
        fields = super()._hello_fields()
        fields.update(token=self._opts.token, mesh=self._opts.mesh, name=self._opts.name)
        if self._opts.dataplane is not None:
            fields["dataplane"] = self._opts.dataplane
        return fields

    async def _on_control(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "error" and msg["reason"] == "dataplane_refused":
            log.error("the control plane refused this data plane: %s", msg["message"])
            self._on_refused(msg["message"])
            return
        await super()._on_control(msg)

    async def send(self, kind: str, **fields: Any) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(encode_message(kind, **fields))
        except Exception:  # the link is going away; the caller falls back to what it can do
            return False
        return True


class DataplaneMaster(Master):
    """A data-plane master whose config is this Dataplane's view of the mesh."""

    def __init__(self, settings: Any, conf_path: str, ready, options: DpOptions) -> None:
        super().__init__(settings, conf_path, ready)
        self.options = options
        self.is_ready = False
        self.exit_code = 0
        self.refused: str | None = None
        self.dns = None
        self._app: subprocess.Popen | None = None
        self._extra_servers: list[Any] = []
        self._health: dict[str, bool] = {}
        self._tasks: set[asyncio.Task] = set()

    # ---- config ------------------------------------------------------------------------------
    async def _initial_from_cache(self) -> tuple[dict, str]:
        from meshway.cluster import load_cache
        from meshway.node._sources import empty_snapshot
        from meshway.model import snapshot_hash

        cached = await asyncio.to_thread(load_cache, self.prefix)
        self.cluster_client = DataplaneClient(
            self.settings, options=self.options, on_refused=self._refused, apply=self.apply,
            config_hash=cached[1] if cached else None, on_identity=self._mesh_identity_changed)
        if cached:
            log.info("serving the cached configuration %s until the control plane answers", cached[1])
            self.cluster_client.known(*cached)  # a control plane that still has this version sends what changed
            return cached
        snapshot = empty_snapshot()
        return snapshot, snapshot_hash(snapshot)

    def _view(self, snapshot: dict) -> dict:
        return dataplane_snapshot(snapshot, self.options.mesh, self.options.name)

    def _for_workers(self, snapshot: dict, config_hash: str) -> tuple[dict, str]:
        from . import worker_snapshot

        identity = self.cluster_client.mesh_identity if self.cluster_client else None
        return worker_snapshot(self._view(snapshot), config_hash, identity)

    async def _mesh_identity_changed(self, identity: dict) -> None:
        from . import worker_snapshot

        async with self._apply_lock:
            if self.workers and self.snapshot is not None:
                await self.workers.apply(*worker_snapshot(self._view(self.snapshot), self.config_hash, identity))

    async def apply(self, snapshot: dict, config_hash: str) -> float:
        ms = await super().apply(snapshot, config_hash)
        self._serving(snapshot)
        return ms

    def _serving(self, snapshot: dict) -> None:
        """The workers run `snapshot` (pushed, or cached at start): DNS table, readiness."""
        if self.dns is not None:
            from meshway.zones._catalog import elsewhere_services  # VIPs of services in other zones

            shown, hidden = dns_vips(snapshot.get("mesh_resources") or {}, self.options.mesh, self.options.name,
                                     elsewhere_services(snapshot, self.options.mesh))
            self.dns.set_table(dns_table({self.options.mesh: shown}), dns_table({self.options.mesh: hidden}))
        if not self.is_ready and registered(snapshot, self.options.mesh, self.options.name):
            self._became_ready()
        self._watch_mtls(snapshot)

    def _watch_mtls(self, snapshot: dict) -> None:
        """The mesh's enabled mTLS backend changed: ask for a certificate from the new CA, a moment
        later, once every data plane trusts it (the trust comes with this same push; see `_mtls`)."""
        from ._mtls import fingerprint

        seen = fingerprint(snapshot.get("mesh_resources") or {}, self.options.mesh)
        before, self._mtls_seen = getattr(self, "_mtls_seen", seen), seen
        if seen != before and self.cluster_client is not None and self.cluster_client.mesh_identity:
            self._spawn(self._new_certificate())

    async def _new_certificate(self) -> None:
        await asyncio.sleep(MTLS_SWITCH_DELAY)
        identity = self.cluster_client._identity
        if identity is not None and await self.cluster_client.send("csr", csr=await asyncio.to_thread(identity.csr)):
            log.info("mesh mTLS backend changed: asked for a new certificate")

    # ---- lifecycle -----------------------------------------------------------------------------
    async def _start(self) -> None:
        await self._start_readiness()
        if self.options.dns_enabled:
            await self._start_dns()
        await super()._start()
        if self.snapshot is not None:  # a cached configuration: serve it as if just pushed
            self._serving(self.snapshot)
        self._spawn(self._probe_inbounds())
        self._spawn(self._report_mesh_stats())

    async def _start_readiness(self) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                writer.close()
                return
            path = (head.split(b" ", 2)[1:2] or [b""])[0].split(b"?")[0]
            if path in METRICS_PATHS:  # the data plane's metrics, per service (`_metrics`)
                body, status = (await self._metrics_text()).encode(), b"200 OK"
            else:
                body, status = (b"READY", b"200 OK") if self.is_ready else (b"NOT READY", b"503 Service Unavailable")
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
            await writer.drain()
            writer.close()

        try:
            self._extra_servers.append(await asyncio.start_server(serve, "127.0.0.1", self.options.readiness_port))
        except OSError as e:
            raise StartError(f"--readiness-port {self.options.readiness_port}: {e.strerror}") from None

    async def _report_mesh_stats(self) -> None:
        """Send our per-service series to the control plane when they changed (`_meshstats`)."""
        from ._meshstats import MAX_TEXT, PERIOD, RESEND_EVERY, mesh_series

        sent, quiet, session = "", 0, 0
        while True:
            await asyncio.sleep(PERIOD)
            client = self.cluster_client
            if client is not None and client.sessions != session:  # a new connection: report at once
                sent, session = "", client.sessions
            try:
                text = mesh_series(await self._metrics_text())
            except Exception as e:  # a worker being replaced: try again next period
                log.debug("mesh metrics: %s", e)
                continue
            quiet += 1
            if len(text) > MAX_TEXT:
                if sent != "too big":
                    log.warning("mesh metrics: %d bytes, over the %d a report may hold: not sent to the control plane "
                                "(the data plane's own /metrics has them)", len(text), MAX_TEXT)
                sent = "too big"
                continue
            # unchanged series are sent again now and then: a restarted control plane gets them back
            if text and (text != sent or quiet >= RESEND_EVERY) and self.cluster_client is not None \
                    and await self.cluster_client.send("mesh_stats", text=text):
                sent, quiet = text, 0

    async def _metrics_text(self) -> str:
        """Every worker's series summed (as the status API's /metrics)."""
        from meshway.node._metrics import merge_worker_metrics

        texts = await self.workers.call("metrics") if self.workers else []
        return merge_worker_metrics([t for t in texts if isinstance(t, str)])

    async def _start_dns(self) -> None:
        from ._dns import DnsProxy, upstream_from_resolv_conf

        self.dns = DnsProxy("127.0.0.1", self.options.dns_port, upstream_from_resolv_conf())
        try:
            await self.dns.start()
        except OSError as e:
            raise StartError(f"--dns-proxy-port {self.options.dns_port}: {e.strerror}") from None

    def _became_ready(self) -> None:
        self.is_ready = True
        log.info("dataplane %s/%s ready (configuration %s applied)", self.options.mesh, self.options.name,
                 self.config_hash)
        if self.options.app and self._app is None:
            self._spawn(self._run_app())

    async def _run_app(self) -> None:
        try:
            self._app = subprocess.Popen(self.options.app)
        except OSError as e:
            log.error("cannot start %s: %s", self.options.app[0], e.strerror)
            self.exit_code = 127
            self._stop.set()
            return
        log.info("started %s (pid %d)", " ".join(self.options.app), self._app.pid)
        self.exit_code = _status(await asyncio.to_thread(self._app.wait))
        log.info("%s exited with %d; stopping the data plane", self.options.app[0], self.exit_code)
        self._stop.set()

    def _refused(self, message: str) -> None:
        self.refused = message
        self.exit_code = 1
        self._stop.set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe_inbounds(self) -> None:
        """Tell the control plane which inbounds' apps accept connections (for `inspect`)."""
        while True:
            own = next((d for d in (self.snapshot or {}).get("mesh_resources", {}).get("dataplanes", [])
                        if d.get("mesh") == self.options.mesh and d.get("name") == self.options.name), None)
            source = INBOUND_SOURCE if ((own or {}).get("networking") or {}).get("transparentProxying") else None
            health = {str(i["port"]): await _accepts(i["serviceAddress"], i["servicePort"], source)
                      for i in inbounds(own or {})}
            if health != self._health and self.cluster_client is not None and \
                    await self.cluster_client.send("health", inbound=health):
                self._health = health
            await asyncio.sleep(HEALTH_INTERVAL)

    async def _shutdown(self) -> None:
        client = self.cluster_client
        if client is not None and not self.refused and await client.send("goodbye"):
            log.info("dataplane %s/%s deregistered", self.options.mesh, self.options.name)
            await asyncio.sleep(0.1)  # let the frame leave before the close
        await self._stop_app()
        for task in list(self._tasks):
            task.cancel()
        for server in self._extra_servers:
            server.close()
        if self.dns is not None:
            await self.dns.stop()
        await super()._shutdown()

    async def _stop_app(self) -> None:
        app = self._app
        if app is None or app.poll() is not None:
            return
        app.send_signal(signal.SIGTERM)
        try:
            self.exit_code = _status(await asyncio.wait_for(asyncio.to_thread(app.wait), self.options.drain_time))
        except TimeoutError:
            app.kill()
            self.exit_code = _status(await asyncio.to_thread(app.wait))


def first_control_plane(node_id: str, targets: list[str]) -> str:
    """The control plane a data plane tries first: picked by its node id, so that the data planes
    spread over the nodes and one comes back to the same node after a restart."""
    return targets[uuid.UUID(node_id).int % len(targets)]


def _host(target: str) -> str:
    return target.rsplit(":", 1)[0].strip("[]")


def _status(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


async def _accepts(host: str, port: int, source: str | None = None) -> bool:
    """Whether the app accepts connections (from 127.0.0.6 with transparent proxying: straight
    to the app, not to our own inbound listener)."""
    local = (("::6" if ":" in host else source), 0) if source else None
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def run(settings: Any, conf_path: str, options: DpOptions) -> int:
    """Run the data plane until SIGTERM/SIGINT or the app's exit; the process exit status."""
    import uvloop

    def ready(error: str | None) -> None:
        if error is None:
            print(f"meshway dp {options.mesh}/{options.name} started", flush=True)

    master = DataplaneMaster(settings, conf_path, ready, options)
    try:
        uvloop.run(master.run())
    except StartError as e:
        print(f"Error: {e}", flush=True, file=__import__("sys").stderr)
        return 1
    if master.refused:  # exit 1 says so, whatever the app we stopped on the way returned
        print(f"Error: the control plane refused this data plane: {master.refused}", file=__import__("sys").stderr)
        return 1
    return master.exit_code


def prepare_work_dir(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path
