"""Load generators: wrk (HTTP/1.1, HTTPS) and h2load (HTTP/2), pinned to the load core.

Each run samples the CPU ticks of the proxy's processes around the load so that CPU per request
is (utime+stime delta) / requests. wrk prints its figures through a Lua `done` hook as one JSON
line, so we read exact microseconds instead of wrk's rounded text.
"""
from __future__ import annotations

import dataclasses
import json
import re
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from .procs import CORE_LOAD, CORE_PROXY, cpu_ticks, pinned, ticks_to_us, total_rss

WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclasses.dataclass
class Target:
    """One thing to load: a URL, headers, and the pids whose CPU counts as 'the proxy'."""

    name: str
    url: str = ""
    headers: tuple[str, ...] = ()
    pids: Callable[[], list[int]] | None = None
    error: str | None = None
    prefix: tuple[str, ...] = ()  # wrk runs under it: `ip netns exec NS` for the mesh scenario


class LoadError(RuntimeError):
    """A load run did not produce figures."""


def lua_script(workdir: Path) -> Path:
    path = workdir / "done.lua"
    if not path.exists():
        path.write_text(WRK_LUA)
    return path


def _sample_rss(pids: list[int], stop: threading.Event, out: list[int]) -> None:
    for _ in range(100_000):  # bounded: stops with the run anyway
        if stop.wait(0.1):
            return
        out.append(total_rss(pids))


def core_times() -> dict[str, tuple[int, int, int]]:
    """Per core from /proc/stat: (busy, steal, total) ticks; tells whether others shared our cores."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]  # user nice system idle iowait irq softirq steal
            out[name] = (v[0] + v[1] + v[2] + v[5] + v[6], v[7], sum(v))
    return out


def core_usage(before: dict, after: dict, proxy_ticks: int | None) -> dict:
    """busy% and steal% per core over a run, and the share of the proxy core used by processes
    that are not the proxy (other users of this shared machine): kept in the JSON."""
    out = {}
    for core in (f"cpu{CORE_LOAD}", f"cpu{CORE_PROXY}"):
        if core in before and core in after:
            d = [a - b for a, b in zip(after[core], before[core])]
            if d[2] > 0:
                out[f"{core}_busy_pct"] = round(100 * d[0] / d[2], 1)
                out[f"{core}_steal_pct"] = round(100 * d[1] / d[2], 1)
                if core == f"cpu{CORE_PROXY}":
                    out["proxy_core_foreign_pct"] = round(max(0, 100 * (d[0] - (proxy_ticks or 0)) / d[2]), 1)
    return out


class _Accounting:
    """CPU ticks and peak RSS of the target's processes over one run, and how busy each core was."""

    def __init__(self, target: Target):
        self.pids_fn = target.pids
        self.rss: list[int] = []
        self._stop = threading.Event()

    def __enter__(self):
        self.cores0 = core_times()
        self.pids0 = self.pids_fn() if self.pids_fn else []
        self.ticks0 = cpu_ticks(self.pids0)
        if self.pids_fn:
            self._thread = threading.Thread(target=_sample_rss, args=(self.pids0, self._stop, self.rss), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self.ticks = cpu_ticks(self.pids0) - self.ticks0 if self.pids_fn else None
        self.cores = core_usage(self.cores0, core_times(), self.ticks)
        self._stop.set()
        if self.pids_fn:
            self._thread.join(2)


def _finish(acc: _Accounting, fig: dict) -> dict:
    fig["cpu_us_per_req"] = round(ticks_to_us(acc.ticks) / fig["requests"], 2) if acc.ticks is not None and fig["requests"] else None
    fig["peak_rss_mib"] = round(max(acc.rss) / 2**20, 1) if acc.rss else None
    fig.update(acc.cores)
    return fig


def run_wrk(target: Target, workdir: Path, conns: int, duration: float, path: str = "") -> dict:
    """One wrk run; figures in req/s, ms, µs/req."""
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "-s", str(lua_script(workdir))]
    for h in target.headers:
        cmd += ["-H", h]
    cmd.append(target.url + path)
    with _Accounting(target) as acc:
        proc = subprocess.run([*target.prefix, *pinned(CORE_LOAD, cmd)], capture_output=True, text=True,
                              timeout=duration + 60)
    m = re.search(r"^BENCHJSON (\{.*\})$", proc.stdout, re.M)
    if not m:
        raise LoadError(f"wrk rc={proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    fig = _wrk_figures(json.loads(m.group(1)))
    _check_answers(fig["requests"], fig["non_2xx"] + fig["socket_errors"], "non-2xx or socket errors")
    return _finish(acc, fig)


def _check_answers(total: int, bad: int, what: str) -> None:
    """A run where the proxy mostly answers errors measures the error path: reject it."""
    if total == 0 or bad > 0.01 * total:
        raise LoadError(f"{bad} {what} in {total} requests")


def _wrk_figures(raw: dict) -> dict:
    secs = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"], "rps": round(raw["requests"] / secs, 1),
        "mb_per_s": round(raw["bytes"] / secs / 1e6, 1),
        "p50_ms": raw["p50"] / 1000, "p90_ms": raw["p90"] / 1000, "p99_ms": raw["p99"] / 1000,
        "max_ms": raw["max"] / 1000, "mean_ms": round(raw["mean"] / 1000, 3),
        "socket_errors": errors, "non_2xx": raw["status"],
    }


_H2_RPS = re.compile(r"finished in ([\d.]+)s, ([\d.]+) req/s")
_H2_REQ = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored")
_H2_TIME = re.compile(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)")


def _h2_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_h2load(target: Target, conns: int, duration: float, streams: int = 1) -> dict:
    """One h2load run (h2 over TLS via ALPN); h2load gives mean/max, not percentiles."""
    # No --warm-up-time: its requests are not counted while the proxy's CPU for them is (the
    # scenario runs its own warm-up before the measured runs).
    cmd = ["h2load", "-t1", f"-c{conns}", f"-m{streams}", "-D", str(max(1, round(duration)))]
    for h in target.headers:
        cmd += ["-H", h]
    cmd.append(target.url)
    with _Accounting(target) as acc:
        proc = subprocess.run(pinned(CORE_LOAD, cmd), capture_output=True, text=True, timeout=duration + 60)
    out = proc.stdout
    rps, req, tim = _H2_RPS.search(out), _H2_REQ.search(out), _H2_TIME.search(out)
    if not (rps and req and tim):
        raise LoadError(f"h2load rc={proc.returncode}: {(proc.stderr or out).strip()[-300:]}")
    fig = {"requests": int(req.group(3)), "rps": float(rps.group(2)), "min_ms": _h2_ms(tim.group(1)),
           "max_ms": _h2_ms(tim.group(2)), "mean_ms": _h2_ms(tim.group(3)),
           "failed": int(req.group(4)), "errored": int(req.group(5))}
    try:
        _check_answers(int(req.group(1)), fig["failed"] + fig["errored"], "failed/errored")
    except LoadError as e:  # h2load's own words say why (no ALPN h2, resets...)
        raise LoadError(f"{e}; h2load: {_h2_why(out)}") from None
    return _finish(acc, fig)


def _h2_why(out: str) -> str:
    keep = ("requests:", "status codes:", "Application protocol", "No protocol", "error", "Error")
    lines = [ln.strip() for ln in out.splitlines() if any(k in ln for k in keep)]
    return " | ".join(lines[:4])[:300]


def median_figures(runs: Sequence[dict]) -> dict:
    """Median of each numeric figure across runs (each figure independently)."""
    out: dict = {"runs": len(runs)}
    for key in runs[0]:
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = round(statistics.median(vals), 3) if vals else None
    if "rps" in runs[0]:
        out["rps_all"] = [r["rps"] for r in runs]  # the spread tells how noisy the rounds were
    return out


def interleave(targets: Sequence[Target], rounds: int, run: Callable[[Target], dict],
               warmup: Callable[[Target], object] | None = None) -> dict[str, dict]:
    """Run each healthy target once per round, in turn; median per target; errors kept per target."""
    runs: dict[str, list[dict]] = {t.name: [] for t in targets}
    errors: dict[str, str] = {t.name: t.error for t in targets if t.error}
    for t in targets:
        if warmup and not t.error:
            _guard(errors, t, warmup)
    for _ in range(rounds):
        for t in targets:
            if t.name in errors:
                continue
            fig = _guard(errors, t, run)
            if fig is not None:
                runs[t.name].append(fig)
            time.sleep(0.2)  # let TIME_WAIT / GC settle between neighbours
    return {t.name: ({"error": errors[t.name]} if t.name in errors else median_figures(runs[t.name]))
            for t in targets}


def _guard(errors: dict, t: Target, fn):
    try:
        return fn(t)
    except Exception as e:  # one target failing must not stop the others
        errors[t.name] = f"{type(e).__name__}: {e}"[:400]
        return None
