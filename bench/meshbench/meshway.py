"""A meshway node under test: conf + declarative file, `meshway start` pinned to the proxy core,
pid discovery, `meshway stop`.

Pids: `PREFIX/pids/*.pid` and `PREFIX/*.pid` when present, plus any process whose command
line names our unique prefix, plus all their descendants. A node started with `workers = 1`
is a master and one worker; the worker is a descendant of the master.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from .procs import (CORE_PROXY, clean_env, descendants, pid_alive, pids_with_cmdline, pinned)

MESHWAY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "meshway"
BENCH_KEY = "bench-secret-key"
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 6x faster on 10,000 routes


def meshway_available() -> str | None:
    """None when `meshway --help` runs; else the reason, for `error: ...` rows."""
    if not MESHWAY.exists():
        return f"{MESHWAY} not found"
    try:
        proc = subprocess.run([str(MESHWAY), "--help"], capture_output=True, text=True, timeout=30, env=clean_env())
    except subprocess.TimeoutExpired:
        return "meshway --help timed out"
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return f"meshway --help failed: {last[0][:200]}"
    compile_bytecode()
    return None


def compile_bytecode() -> None:
    """Write meshway's bytecode (`__pycache__`) before any node starts, as an installed package
    has it. Without it, in an environment with PYTHONDONTWRITEBYTECODE (or a tree whose bytecode
    is older than its sources), every node process compiles its modules at each start: slower
    starts, and an idle worker 1.7 MiB larger (the compiler's garbage left in pymalloc arenas
    among live objects: bench/README.md, "Idle worker memory")."""
    code = "import compileall, os, meshway; compileall.compile_dir(os.path.dirname(meshway.__file__), quiet=1)"
    subprocess.run([str(MESHWAY.with_name("python")), "-c", code], capture_output=True, timeout=300, env=clean_env())


def service(name: str, port: int, routes: list[dict], plugins: list[dict] | None = None) -> dict:
    svc = {"name": name, "url": f"http://127.0.0.1:{port}", "routes": routes}
    if plugins:
        svc["plugins"] = plugins
    return svc


def base_services(origin: int, upload: int) -> list[dict]:
    """The route every HTTP scenario hits, and /upload to the body sink."""
    return [service("origin", origin, [{"name": "root", "paths": ["/"]}]),
            service("upload", upload, [{"name": "upload", "paths": ["/upload"], "strip_path": False}])]


def many_routes(origin: int, count: int, tag: str = "r") -> dict:
    """`count` routes, each on its own host and path (what a large gateway looks like)."""
    routes = [{"name": f"{tag}{i}", "hosts": [f"{tag}{i}.bench.test"], "paths": [f"/{tag}{i}"]} for i in range(count)]
    return service(f"many-{tag}", origin, routes)


def plugin_services(origin: int) -> tuple[list[dict], list[dict]]:
    """key-auth + rate-limiting (local, a limit never reached) on the service, prometheus global."""
    plugins = [{"name": "key-auth", "config": {"key_names": ["apikey"]}},
               {"name": "rate-limiting", "config": {"second": 100_000_000, "policy": "local"}}]
    svc = service("guarded", origin, [{"name": "guarded-root", "paths": ["/"]}], plugins)
    consumers = [{"username": "bench", "keyauth_credentials": [{"key": BENCH_KEY}]}]
    return [svc], consumers


def declarative(services: list[dict], consumers: list[dict] | None = None,
                plugins: list[dict] | None = None, certificates: list[dict] | None = None) -> dict:
    doc: dict = {"_format_version": "3.0", "services": services}
    if consumers:
        doc["consumers"] = consumers
    if plugins:
        doc["plugins"] = plugins
    if certificates:
        doc["certificates"] = certificates
    return doc


class MeshwayNode:
    """One DB-less meshway node in its own prefix, started with `workers = 1`."""

    def __init__(self, workdir: Path, name: str, doc: dict, settings: dict[str, str]):
        self.name = name
        self.prefix = workdir / f"meshway-{name}"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.doc_path = self.prefix / "meshway.yml"
        self.doc_path.write_text(yaml.dump(doc, Dumper=_DUMPER, sort_keys=False))
        self.conf = self.prefix / "meshway.conf"
        lines = {"prefix": str(self.prefix), "database": "off", "declarative_config": str(self.doc_path),
                 "workers": "1", "status_listen": "off", "admin_listen": "off", "stream_listen": "off",
                 "log_level": "notice",
                 # as the nginx proxy's `keepalive_requests 10000000` (which also bounds its HTTP/2
                 # streams per connection): with Kong's default of 1000 streams, h2load's 50
                 # connections each got a GOAWAY after 1,000 requests, and h2load does not reconnect,
                 # so a 10 s run counted 50,000 requests (5,000 req/s) while the worker sat idle
                 "http2_max_requests": "10000000", "upstream_keepalive_max_requests": "10000000",
                 **settings}
        self.conf.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        self._known: set[int] = set()
        self.start_seconds: float | None = None

    def start(self, timeout: float = 90) -> None:
        """`taskset -c 1 meshway start`; raises with the CLI's own words when it fails."""
        t0 = time.perf_counter()
        cmd = pinned(CORE_PROXY, [str(MESHWAY), "start", "-p", str(self.prefix), "-c", str(self.conf)])
        log = open(self.prefix / "bench-start.log", "wb")
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, timeout=timeout, env=clean_env())
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"meshway start did not return within {timeout}s") from None
        finally:
            log.close()
        self.start_seconds = time.perf_counter() - t0
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"meshway start rc={proc.returncode}: {self._why(out)}")
        self._remember()

    def _why(self, out: str) -> str:
        err = (self.prefix / "bench-start.log").read_text(errors="replace").strip()
        text = (err or out).strip().splitlines()
        why = " | ".join(text[-3:])[:300] or "no output"
        return why + self._log_tail()

    def _log_tail(self) -> str:
        """The node's own error log often says why a worker died."""
        for log in sorted(self.prefix.glob("logs/*error*.log")):
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                return f" [{log.name}: {' | '.join(lines[-2:])[:300]}]"
        return ""

    def _pidfile_pids(self) -> set[int]:
        found = set()
        for path in [*self.prefix.glob("pids/*.pid"), *self.prefix.glob("*.pid")]:
            try:
                found.add(int(path.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
        return {p for p in found if pid_alive(p)}

    def _remember(self) -> None:
        roots = self._pidfile_pids() | set(pids_with_cmdline(str(self.prefix)))
        self._known |= roots | set(descendants(roots))

    def pids(self) -> list[int]:
        """Every live process of this node (master and workers)."""
        self._remember()
        self._known = {p for p in self._known if pid_alive(p)}
        return sorted(self._known)

    def worker_pids(self) -> list[int]:
        """The proxy workers: descendants of the other pids; the node itself if it does not fork."""
        pids = self.pids()
        forked = set(descendants(pids))
        kids = [p for p in pids if p in forked]
        return kids or pids

    def stop(self) -> None:
        pids = self.pids()
        try:
            subprocess.run([str(MESHWAY), "stop", "-p", str(self.prefix)], capture_output=True,
                           timeout=30, env=clean_env())
        except (subprocess.TimeoutExpired, OSError):
            pass
        _reap(pids)


def _reap(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL after 5 s, the node processes we found under our prefix."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        live = [p for p in pids if pid_alive(p)]
        for p in live:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(pid_alive(p) for p in live):
            time.sleep(0.05)
