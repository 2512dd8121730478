"""Helpers for cluster integration tests: real certificates, real TLS websockets on 127.0.0.1:0."""
from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

from meshway.cluster import ClusterClient, ClusterServer
from meshway.settings import load_settings


def snapshot_for_test(n: int) -> tuple[dict[str, Any], str]:
    snap = {"_format_version": "3.0", "services": [{"id": f"svc-{n}", "host": "example.test", "port": 80}]}
    return snap, hashlib.md5(json.dumps(snap, sort_keys=True).encode()).hexdigest()


class SnapshotSource_for_test:
    """What the node's store would give: the current snapshot and hash, and how often it was asked."""

    def __init__(self) -> None:
        self.version = 0
        self.reads = 0

    def bump(self) -> str:
        self.version += 1
        return snapshot_for_test(self.version)[1]

    @property
    def hash(self) -> str:
        return snapshot_for_test(self.version)[1]

    def __call__(self) -> tuple[dict[str, Any], str]:
        self.reads += 1
        return snapshot_for_test(self.version)


class Applier_for_test:
    """A plain `apply` callback recording what it got; raises for hashes listed in `reject`."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str]] = []
        self.reject: dict[str, str] = {}

    async def __call__(self, snapshot: dict[str, Any], config_hash: str) -> float:
        self.calls.append((snapshot, config_hash))
        if config_hash in self.reject:
            raise ValueError(self.reject[config_hash])
        return 1.5

    @property
    def hashes(self) -> list[str]:
        return [h for _, h in self.calls]


async def wait_for_test(cond: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll `cond` every 10 ms up to `timeout`; returns the time it took, fails the test otherwise."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not cond():
        if loop.time() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return loop.time() - start


def run_for_test(coro: Awaitable[Any], timeout: float = 20.0, loop: str = "asyncio") -> Any:
    """Run a scenario on the stdlib loop or on uvloop (what nodes run), bounded in time."""
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    if loop == "uvloop":
        import uvloop

        return uvloop.run(bounded())
    return asyncio.run(bounded())


def settings_for_test(prefix: Path, cert: Path, key: Path, **overrides: str):
    values = {"prefix": str(prefix), "cluster_cert": str(cert), "cluster_cert_key": str(key), **overrides}
    return load_settings(env={}, overrides=values)


class Cluster_for_test:
    """One CP and any number of DPs in this event loop, all torn down at the end."""

    def __init__(self, tmp: Path, cert: Path, key: Path, **cp_overrides: str) -> None:
        self.tmp, self.cert, self.key = tmp, cert, key
        self.source = SnapshotSource_for_test()
        self.cp_settings = settings_for_test(tmp / "cp", cert, key, **cp_overrides)
        self.server: ClusterServer | None = None
        self.clients: list[ClusterClient] = []

    async def start_cp(self, port: int = 0, *, sock: socket.socket | None = None, **kw: Any) -> ClusterServer:
        self.server = ClusterServer(self.cp_settings, get_snapshot=self.source, **kw)
        if sock is not None:
            await self.server.start(sock=sock)
        else:
            await self.server.start("127.0.0.1", port)
        return self.server

    @property
    def port(self) -> int:
        return self.server.address[1]

    async def start_dp(self, name: str = "dp1", *, cert: Path | None = None, key: Path | None = None,
                       port: int | None = None, applier: Applier_for_test | None = None,
                       client_class: type[ClusterClient] = ClusterClient, **kw: Any):
        overrides = {"cluster_control_plane": f"127.0.0.1:{port or self.port}", **kw.pop("settings", {})}
        settings = settings_for_test(self.tmp / name, cert or self.cert, key or self.key, **overrides)
        applier = applier or Applier_for_test()
        kw.setdefault("backoff_initial", 0.05)
        kw.setdefault("backoff_cap", 0.2)
        client = client_class(settings, apply=applier, hostname=name, **kw)
        await client.start()
        self.clients.append(client)
        return client, applier

    async def close(self) -> None:
        for client in self.clients:
            await client.stop()
        if self.server is not None:
            await self.server.stop()


