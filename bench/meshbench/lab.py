"""The run's shared state: durations, temp dir, the origin and upload sink, and per-scenario scopes
that stop whatever a scenario started even when it fails."""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from . import servers
from .certs import self_signed
from .load import Target, run_wrk
from .meshway import MeshwayNode, meshway_available
from .procs import Proc


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How long and how often to load; --quick shrinks everything for a smoke run."""

    quick: bool
    duration: float = 10.0
    rounds: int = 3
    warmup: float = 2.0
    conns: int = 50
    tcp_bytes: int = 2 << 30
    tls_bytes: int = 2 << 30
    upload_bytes: int = 1 << 30

    @classmethod
    def make(cls, quick: bool) -> "RunConfig":
        if quick:
            return cls(quick=True, duration=1.0, rounds=1, warmup=0.0, tcp_bytes=256 << 20,
                       tls_bytes=128 << 20, upload_bytes=128 << 20)
        return cls(quick=False)


class Lab:
    """Origin + sink shared by all scenarios; proxies are started inside a scenario's scope."""

    def __init__(self, cfg: RunConfig, keep: bool = False):
        self.cfg = cfg
        self.workdir = Path(tempfile.mkdtemp(prefix="meshway-bench-"))
        self.keep = keep
        self._stack = contextlib.ExitStack()
        self._meshway_error: str | None | bool = False  # False: not checked yet
        self.shared_targets: dict[str, Target] = {}

    def __enter__(self) -> "Lab":
        origin, self.origin_port = servers.start_origin(self.workdir)
        self._stack.callback(origin.stop)
        sink, self.upload_port = servers.start_sink(self.workdir, "upload")
        self._stack.callback(sink.stop)
        self.origin_pids = origin.pids
        self.cert, self.key = self_signed(self.workdir)
        self.shared = Scope(self)  # nodes several scenarios load alike (started once, 1-2 s each)
        self._stack.callback(self.shared.__exit__)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def meshway_error(self) -> str | None:
        """Why meshway cannot run at all (checked once per run), or None."""
        if self._meshway_error is False:
            self._meshway_error = meshway_available()
        return self._meshway_error  # type: ignore[return-value]

    def wrk(self, conns: int | None = None, duration: float | None = None, path: str = "") -> Callable[[Target], dict]:
        conns = conns or self.cfg.conns
        secs = duration or self.cfg.duration
        return lambda t: run_wrk(t, self.workdir, conns, secs, path)

    def warm(self, path: str = "") -> Callable[[Target], dict] | None:
        """A short run first (pools, caches); skipped in --quick."""
        return self.wrk(duration=self.cfg.warmup, path=path) if self.cfg.warmup else None

    def shared_target(self, key: str, start: Callable[["Scope"], Target]) -> Target:
        """A target started on first use and kept until the run ends (a failure is kept too)."""
        if key not in self.shared_targets:
            self.shared_targets[key] = start(self.shared)
        return self.shared_targets[key]

    def direct(self) -> Target:
        return Target("direct", f"http://127.0.0.1:{self.origin_port}")


class Scope:
    """What one scenario started; everything is stopped on exit, in reverse order."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "Scope":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def keep(self, proc: Proc) -> Proc:
        self._stack.callback(proc.stop)
        return proc

    def nginx(self, tls: bool = False) -> tuple[Proc, int, int | None]:
        pair = (self.lab.cert, self.lab.key) if tls else None
        proc, port, tls_port = servers.start_nginx_proxy(self.lab.workdir, self.lab.origin_port,
                                                         self.lab.upload_port, pair)
        return self.keep(proc), port, tls_port

    def nginx_target(self, tls: bool = False, name: str = "nginx") -> Target:
        try:
            proc, port, tls_port = self.nginx(tls)
        except Exception as e:
            return Target(name, error=str(e))
        url = f"https://127.0.0.1:{tls_port}" if tls else f"http://127.0.0.1:{port}"
        return Target(name, url, pids=proc.pids)

    def haproxy_target(self) -> Target:
        try:
            proc, port = servers.start_haproxy_http(self.lab.workdir, self.lab.origin_port)
        except Exception as e:
            return Target("haproxy", error=str(e))
        self.keep(proc)
        return Target("haproxy", f"http://127.0.0.1:{port}", pids=proc.pids)

    def meshway(self, name: str, doc: dict, settings: dict[str, str]) -> MeshwayNode:
        """A started node (raises with the reason when meshway is missing or fails to start)."""
        why = self.lab.meshway_error()
        if why:
            raise RuntimeError(why)
        node = MeshwayNode(self.lab.workdir, name, doc, settings)
        self._stack.callback(node.stop)
        node.start()
        return node
