"""Processes under test: pinned spawning, free ports, /proc accounting (CPU ticks, RSS, children).

Rules: every wait here is bounded in time; we only ever signal processes we spawned ourselves
(or discovered under a prefix directory we created).
"""
from __future__ import annotations

import http.client
import os
import select
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterable, Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORE_PROXY = "1"
CORE_LOAD = "0"


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: str, cmd: Sequence[str]) -> list[str]:
    return ["taskset", "-c", core, *cmd]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without MESHWAY_* overrides, which would change what we measure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    env.update(extra or {})
    return env


class Proc:
    """A long-running process we spawned; stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, core: str | None, env=None, stdout_pipe=False):
        self.name = name
        self.log = log
        full = pinned(core, cmd) if core else list(cmd)
        self._logf = open(log, "ab")
        out = subprocess.PIPE if stdout_pipe else self._logf
        self.popen = subprocess.Popen(full, stdout=out, stderr=self._logf, env=env or clean_env(),
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        """This process and its descendants (nginx master + worker, etc.)."""
        return [self.pid, *descendants([self.pid])]

    def read_line(self, timeout: float) -> str:
        """One stdout line (stdout_pipe=True), or '' after `timeout` seconds."""
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        return self.popen.stdout.readline().decode().strip() if ready else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 5) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._logf.close()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from #3 (state) on; comm may hold spaces


def cpu_ticks(pids: Iterable[int]) -> int:
    """utime + stime (fields 14 and 15 of /proc/<pid>/stat) summed over `pids`, in clock ticks."""
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f:
            total += int(f[11]) + int(f[12])
    return total


def ticks_to_us(ticks: int) -> float:
    return ticks * 1e6 / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def total_rss(pids: Iterable[int]) -> int:
    return sum(rss_bytes(p) for p in pids)


def _all_parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat_fields(int(entry))
            if f:
                parents[int(entry)] = int(f[1])
    return parents


def descendants(roots: Iterable[int]) -> list[int]:
    """All live descendants of `roots` (breadth first, bounded by the process table)."""
    parents = _all_parents()
    found: list[int] = []
    frontier = set(roots)
    for _ in range(64):  # process trees here are a few levels deep
        kids = {p for p, pp in parents.items() if pp in frontier and p not in found}
        if not kids:
            break
        found.extend(sorted(kids))
        frontier = kids
    return found


def pids_with_cmdline(needle: str) -> list[int]:
    """Live processes whose command line contains `needle` (a unique temp path of ours)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and "taskset" not in cmd.split(" ")[0]:
            out.append(int(entry))
    return out


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def wait_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def http_status(port: int, path: str = "/", host_header: str | None = None, tls: bool = False,
                headers: dict[str, str] | None = None, timeout: float = 2.0, method: str = "GET",
                body: bytes | None = None) -> tuple[int, bytes]:
    """One request over a fresh connection: (status, body); (0, error text) on a connection error."""
    if tls:
        ctx = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = dict(headers or {})
    if host_header:
        hdrs["Host"] = host_header
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e).encode()
    finally:
        conn.close()


def wait_http(port: int, timeout: float, path: str = "/", want: int = 200, **kw) -> tuple[bool, str]:
    """Poll until a request answers `want`; (ok, last status or error)."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        status, body = http_status(port, path, **kw)
        if status == want:
            return True, str(status)
        last = f"{status} {body[:120]!r}" if status else body.decode(errors="replace")[:120]
        time.sleep(0.01)
    return False, last
