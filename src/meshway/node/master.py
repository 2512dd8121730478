"""The master process of a node: binds listeners, holds the config, runs the Admin API and
supervises the proxy workers.

Start-up order matters: every socket is bound first (so "port in use" fails the start before
anything runs), then the config is loaded (an invalid declarative file fails the start), then
workers are spawned and must apply the first config, then the node's own HTTP servers start,
and only then is the node reported ready.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

from meshway import __version__
from meshway.logs import notice
from meshway.node import _prefix, _status
from meshway.node._servers import HttpServers
from meshway.node._sources import StorePoller, empty_snapshot, load_declarative_file
from meshway.node._workers import BoundListener, WorkerPool, child_env
from meshway.settings import ListenSpec, Settings, effective_listeners

log = logging.getLogger("meshway.node")


class StartError(RuntimeError):
    """The node cannot start; the message says why and what to do."""


def bind(settings: Settings, key: str) -> list[tuple[socket.socket, ListenSpec]]:
    from meshway.proxy.netutil import prepare_listener_socket

    out = []
    for spec in effective_listeners(settings, key):
        try:
            out.append((prepare_listener_socket(spec), spec))
        except OSError as e:
            for s, _ in out:
                s.close()
            raise StartError(f"could not bind {spec.host}:{spec.port} ({key}): {e.strerror}") from None
    return out


class DblessConfig:
    """The DB-less config holder the Admin API reads and replaces (`POST /config`)."""

    def __init__(self, master: "Master", snapshot: dict, config_hash: str) -> None:
        self._master = master
        self.snapshot = snapshot
        self.hash = config_hash

    async def apply(self, snapshot: dict) -> None:
        from meshway.model import snapshot_hash

        await self._master.apply(snapshot, snapshot_hash(snapshot))


class Master:
    """One node: role, store or config source, workers, Admin API, status API, cluster."""

    def __init__(self, settings: Settings, conf_path: str | None, ready: Callable[[str | None], None]):
        self.settings = settings
        self.conf_path = conf_path
        self._ready = ready
        self.prefix = _prefix.prepare(settings)
        self.node_id = _prefix.node_id(self.prefix)
        self.store = None
        self.workers: WorkerPool | None = None
        self.dbless: DblessConfig | None = None
        self.poller: StorePoller | None = None
        self.cluster_server = None
        self.cluster_client = None
        self.http = HttpServers()
        self.config_hash: str | None = None
        self.snapshot: dict | None = None
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._apply_lock = asyncio.Lock()

    # ---- lifecycle -------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        self._ready(None)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGQUIT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        await self._stop.wait()
        notice(log, "stopping (pid %d)", os.getpid())
        await self._shutdown()

    async def _start(self) -> None:
        s = self.settings
        proxy = bind(s, "proxy_listen")
        stream = bind(s, "stream_listen")
        admin = bind(s, "admin_listen")
        status = bind(s, "status_listen")
        cluster = bind(s, "cluster_listen")
        self._sockets = proxy + stream + admin + status + cluster
        _prefix.default_certificate(self.prefix, "default")
        _check_certificates(s)
        snapshot, config_hash = await self._initial_config()
        if proxy or stream:
            listeners = [BoundListener("proxy", i, sk) for i, (sk, _) in enumerate(proxy)]
            listeners += [BoundListener("stream", i, sk) for i, (sk, _) in enumerate(stream)]
            self.workers = WorkerPool(s.workers, listeners, self.conf_path, child_env(str(self.prefix)))
            try:
                await self.workers.start(snapshot, config_hash)
            except Exception as e:
                raise StartError(f"the proxy workers could not start: {e}") from None
        self.snapshot, self.config_hash = snapshot, config_hash
        if s.role == "control_plane":
            await self._start_cluster_server(cluster)
        if admin:
            self._add_admin(admin)
        if status:
            self.http.add(_status.create_status_app(self), status, "", "", access_log=False)
        await self.http.start()
        if self.poller:
            self.poller.start()
        if s.role == "data_plane":
            await self._start_cluster_client()
        _prefix.write_pid(self.prefix)
        notice(log, "meshway %s started (role %s, pid %d)", __version__, s.role, os.getpid())

    async def _initial_config(self) -> tuple[dict, str]:
        from meshway.model import DeclarativeError, snapshot_hash

        s = self.settings
        if s.role == "data_plane":
            return await self._initial_from_cache()
        if s.database == "off":
            try:
                snapshot = load_declarative_file(s.declarative_config) if s.declarative_config else empty_snapshot()
            except DeclarativeError as e:
                raise StartError(f"declarative_config {s.declarative_config} is invalid: {_format_errors(e)}") from None
            except ValueError as e:
                raise StartError(str(e)) from None
            self.dbless = DblessConfig(self, snapshot, snapshot_hash(snapshot))
            return snapshot, self.dbless.hash
        self.store = await asyncio.to_thread(self._open_store)
        self.poller = StorePoller(self.store, s.db_update_frequency, self.apply)
        return await self.poller.initial()

    def _open_store(self):
        from meshway.store import open_store

        try:
            store = open_store(self.settings)
            status = store.migrations_status()
        except Exception as e:
            raise StartError(f"cannot open the {self.settings.database} database: {e}") from None
        if not status["bootstrapped"]:
            if self.settings.database != "sqlite":
                raise StartError("database needs bootstrapping; run 'meshway migrations bootstrap'")
            store.bootstrap()
        elif status["pending"]:
            raise StartError(
                f"database has pending migrations ({', '.join(status['pending'])}); run 'meshway migrations up'"
            )
        return store

    async def _initial_from_cache(self) -> tuple[dict, str]:
        from meshway.cluster import load_cache
        from meshway.model import snapshot_hash

        cached = await asyncio.to_thread(load_cache, self.prefix)
        if cached:
            notice(log, "serving the cached configuration %s until the control plane answers", cached[1])
            return cached
        snapshot = empty_snapshot()
        return snapshot, snapshot_hash(snapshot)

    async def apply(self, snapshot: dict, config_hash: str) -> float:
        """Swap the whole config: workers first; the previous one keeps serving on failure."""
        async with self._apply_lock:
            if config_hash == self.config_hash:
                return 0.0
            ms = await self.workers.apply(snapshot, config_hash) if self.workers else 0.0
            self.snapshot, self.config_hash = snapshot, config_hash
            if self.dbless:
                self.dbless.snapshot, self.dbless.hash = snapshot, config_hash
            if self.cluster_server:
                self.cluster_server.notify_changed()
            log.info("configuration %s applied in %.1f ms", config_hash, ms)
            return ms

    async def reload(self) -> None:
        """SIGHUP: re-read the declarative file (DB-less) or the database, and apply it."""
        notice(log, "reloading configuration")
        try:
            if self.dbless and self.settings.declarative_config:
                from meshway.model import snapshot_hash

                snapshot = await asyncio.to_thread(load_declarative_file, self.settings.declarative_config)
                await self.apply(snapshot, snapshot_hash(snapshot))
            elif self.poller:
                self.poller.poke()
        except Exception as e:
            log.error("reload failed, the previous configuration keeps serving: %s", e)

    async def _shutdown(self) -> None:
        for closer in (self.http.stop, self._stop_cluster, self._stop_poller, self._stop_workers):
            try:
                await closer()
            except Exception as e:
                log.error("error while stopping: %s", e)
        for sock, _ in getattr(self, "_sockets", []):
            sock.close()
        if self.store:
            self.store.close()
        _prefix.remove_pid(self.prefix)

    async def _stop_poller(self) -> None:
        if self.poller:
            await self.poller.stop()

    async def _stop_workers(self) -> None:
        if self.workers:
            await self.workers.stop()

    async def _stop_cluster(self) -> None:
        for part in (self.cluster_server, self.cluster_client):
            if part:
                await part.stop()

    # ---- parts -----------------------------------------------------------------------
    def _add_admin(self, socks) -> None:
        from meshway.admin import create_admin_app
        from meshway.node._admin_extra import extra_routes

        app = create_admin_app(
            settings=self.settings, store=self.store, dbless=self.dbless,
            node_info=self.node_info(), extra_routes=extra_routes(self),
        )
        crt, key = self._admin_cert()
        self.http.add(app, socks, crt, key, access_log=False)

    def _admin_cert(self) -> tuple[str, str]:
        s = self.settings
        if s.admin_ssl_cert and s.admin_ssl_cert_key:
            return s.admin_ssl_cert, s.admin_ssl_cert_key
        crt, key = _prefix.default_certificate(self.prefix, "admin")
        return str(crt), str(key)

    def node_info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "node_id": self.node_id,
            "hostname": socket.gethostname(),
            "role": self.settings.role,
            "configuration": self.settings.redacted(),
            "prefix": str(self.prefix),
        }

    async def _start_cluster_server(self, socks) -> None:
        from meshway.cluster import ClusterServer

        self.cluster_server = ClusterServer(self.settings, get_snapshot=lambda: (self.snapshot, self.config_hash))
        for sock, _ in socks:
            await self.cluster_server.start(sock=sock)

    async def _start_cluster_client(self) -> None:
        from meshway.cluster import ClusterClient

        self.cluster_client = ClusterClient(self.settings, apply=self.apply)
        await self.cluster_client.start()


def _check_certificates(settings: Settings) -> None:
    """Fail the start on a certificate a listener could not load, naming the setting."""
    import ssl

    for cert_key, key_key in (("ssl_cert", "ssl_cert_key"), ("admin_ssl_cert", "admin_ssl_cert_key")):
        cert, key = settings.values[cert_key], settings.values[key_key]
        if bool(cert) != bool(key):
            raise StartError(f"{cert_key} and {key_key} must be set together")
        if not cert:
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
        except FileNotFoundError as e:
            raise StartError(f"cannot load {cert_key}/{key_key}: {e.filename}: no such file") from None
        except PermissionError as e:
            raise StartError(f"cannot load {cert_key}/{key_key}: {e.filename}: permission denied") from None
        except (ssl.SSLError, OSError) as e:
            raise StartError(f"cannot load {cert_key} {cert} with {key_key} {key}: {e}") from None


def _format_errors(err) -> str:
    errors = getattr(err, "errors", None)
    if isinstance(errors, dict) and errors:
        return "; ".join(f"{path}: {msg}" for path, msg in errors.items())
    return str(err)


def prefix_path(settings: Settings) -> Path:
    return settings.prefix_path
