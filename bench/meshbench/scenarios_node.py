"""Node-level scenarios: worker RSS (idle, loaded), start-up to first proxied request, a burst
of 1,000 new connections to a fresh node, and a 10,000-route config swap through the admin API
while traffic flows."""
from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import threading
import time

from . import meshway as mw
from .burst import burst as one_burst
from .lab import Lab, Scope
from .load import Target, lua_script, run_wrk
from .procs import CORE_LOAD, free_port, http_status, pinned, rss_bytes, wait_http
from .scenarios_http import meshway_target, plain_doc

MIB = 2**20


def rss(lab: Lab) -> dict:
    """RSS of the data-plane worker idle (after one request) and its peak under wrk -c50."""
    with Scope(lab) as scope:
        mesh = meshway_target(scope, "rss", plain_doc(lab))
        nginx = scope.nginx_target()
        res = {"meshway": _rss_of(lab, mesh, lambda: mesh.node.worker_pids()) if not mesh.error else {"error": mesh.error},
               "nginx": _rss_of(lab, nginx, lambda: nginx.pids()[1:]) if not nginx.error else {"error": nginx.error}}
    return {"targets": res, "ratios": {},
            "notes": "worker = processes forked by the master; nginx: its worker process"}


def _rss_of(lab: Lab, target: Target, workers) -> dict:
    time.sleep(1.0)  # let start-up garbage settle before calling it idle
    idle = [rss_bytes(p) for p in workers()]
    all_idle = sum(rss_bytes(p) for p in target.pids())
    loaded = Target(target.name, target.url, target.headers, pids=workers)
    fig = run_wrk(loaded, lab.workdir, lab.cfg.conns, lab.cfg.duration)
    return {"worker_pids": len(idle), "idle_worker_rss_mib": round(max(idle, default=0) / MIB, 1),
            "idle_total_rss_mib": round(all_idle / MIB, 1),
            "loaded_worker_rss_mib": fig["peak_rss_mib"], "rps": fig["rps"]}


def startup(lab: Lab) -> dict:
    """`meshway start` (pinned) until the first proxied request answers 200; nginx for scale."""
    runs: list[dict] = []
    error = lab.meshway_error()
    for i in range(lab.cfg.rounds if not error else 0):
        try:
            runs.append(_start_once(lab, i))
        except Exception as e:
            error = str(e)[:400]
            break
    mesh = {"error": error} if error else {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    return {"targets": {"meshway": mesh, "nginx": _nginx_start(lab)}, "ratios": {}}


def _start_once(lab: Lab, i: int) -> dict:
    port = free_port()
    with Scope(lab) as scope:
        t0 = time.perf_counter()
        scope.meshway(f"startup{i}", plain_doc(lab), {"proxy_listen": f"127.0.0.1:{port}"})
        cli = time.perf_counter() - t0
        ok, last = wait_http(port, 30)
        first = time.perf_counter() - t0
    if not ok:
        raise RuntimeError(f"no 200 within 30 s after start: {last}")
    return {"cli_returned_s": round(cli, 3), "first_request_s": round(first, 3)}


def _nginx_start(lab: Lab) -> dict:
    with Scope(lab) as scope:
        t0 = time.perf_counter()
        try:
            _, port, _ = scope.nginx()
        except Exception as e:
            return {"error": str(e)}
        ok, _ = wait_http(port, 10)
        return {"first_request_s": round(time.perf_counter() - t0, 3)} if ok else {"error": "no 200"}


BURST_CONNS, BURST_REQUESTS = 1000, 20


def burst(lab: Lab) -> dict:
    """1,000 clients connect at once to a freshly started proxy, then again to the same warm one;
    per round a fresh nginx and a fresh node; medians over rounds of each figure."""
    runs: dict[str, list[dict]] = {"meshway": [], "nginx": []}
    error = lab.meshway_error()
    for i in range(lab.cfg.rounds):
        with Scope(lab) as scope:
            _, port, _ = scope.nginx()
            runs["nginx"].append(_burst_pair(port))
        if error:
            continue
        port = free_port()
        with Scope(lab) as scope:
            try:
                scope.meshway(f"burst{i}", plain_doc(lab), {"proxy_listen": f"127.0.0.1:{port}", "proxy_access_log": "off"})
            except Exception as e:
                error = str(e)[:400]
                continue
            time.sleep(0.5)  # `start` returns once the worker listens; let it settle as nginx has
            runs["meshway"].append(_burst_pair(port))
    targets = {name: _medians(figs) for name, figs in runs.items() if figs}
    if error:
        targets["meshway"] = {"error": error}
    return {"targets": targets, "ratios": _burst_ratio(targets),
            "notes": f"{BURST_CONNS} connections at once, {BURST_REQUESTS} requests each; fresh_ = first burst, warm_ = second"}


def _burst_pair(port: int) -> dict:
    fresh, warm = one_burst(port, BURST_CONNS, BURST_REQUESTS), one_burst(port, BURST_CONNS, BURST_REQUESTS)
    return {**{f"fresh_{k}": v for k, v in fresh.items()}, **{f"warm_{k}": v for k, v in warm.items()}}


def _medians(figs: list[dict]) -> dict:
    return {k: round(statistics.median(f[k] for f in figs), 2) for k in figs[0]}


def _burst_ratio(targets: dict) -> dict:
    m, n = targets.get("meshway", {}).get("fresh_first_p99_ms"), targets.get("nginx", {}).get("fresh_first_p99_ms")
    return {"meshway/nginx first p99": round(m / n, 3)} if m and n else {}


def config_swap(lab: Lab) -> dict:
    """POST /config with 10,000 routes to a DB-less node under wrk -c50; stall = max latency - baseline max."""
    admin = free_port()
    with Scope(lab) as scope:
        mesh = meshway_target(scope, "swap", plain_doc(lab), extra={"admin_listen": f"127.0.0.1:{admin}"})
        if mesh.error:
            return {"targets": {"meshway": {"error": mesh.error}}, "ratios": {}}
        try:
            fig = _swap(lab, mesh, admin)
        except Exception as e:
            fig = {"error": f"{type(e).__name__}: {e}"[:400]}
    return {"targets": {"meshway": fig}, "ratios": {}}


def _swap(lab: Lab, mesh: Target, admin: int) -> dict:
    base = run_wrk(mesh, lab.workdir, lab.cfg.conns, lab.cfg.duration)
    doc = mw.declarative(mw.base_services(lab.origin_port, lab.upload_port)
                         + [mw.many_routes(lab.origin_port, 10_000, tag="s")])
    body = json.dumps(doc).encode()
    wrk = _start_wrk(mesh, lab)
    try:
        time.sleep(1.0)  # steady traffic before the swap
        t0 = time.perf_counter()
        status, answer = _post_config(admin, body)
        posted = time.perf_counter() - t0
        if status not in (200, 201):
            raise RuntimeError(f"POST /config answered {status}: {answer[:200]!r}")
        port = int(mesh.url.rsplit(":", 1)[1])
        ok, last = wait_http(port, 120, "/s9999", host_header="s9999.bench.test")
        applied = time.perf_counter() - t0
        time.sleep(1.0)  # requests that straddled the swap complete inside the window
    finally:
        during = _stop_wrk(wrk)
    if not ok:
        raise RuntimeError(f"new route never answered: {last}")
    return {"apply_s": round(applied, 3), "post_returned_s": round(posted, 3),
            "baseline_p99_ms": base["p99_ms"], "baseline_max_ms": base["max_ms"],
            "swap_p99_ms": during["p99"] / 1000, "swap_max_ms": during["max"] / 1000,
            "stall_ms": round((during["max"] - base["max_ms"] * 1000) / 1000, 3),
            "swap_requests": during["requests"],
            "swap_errors": during["connect"] + during["read"] + during["write"] + during["timeout"] + during["status"]}


def _post_config(admin: int, body: bytes) -> tuple[int, bytes]:
    """Kong accepts the document as the JSON body, or as a `config` string; try both."""
    headers = {"Content-Type": "application/json"}
    status, answer = http_status(admin, "/config", method="POST", body=body, headers=headers, timeout=120)
    if status in (400, 415, 422):
        wrapped = json.dumps({"config": body.decode()}).encode()
        status, answer = http_status(admin, "/config", method="POST", body=wrapped, headers=headers, timeout=120)
    return status, answer


def _start_wrk(target: Target, lab: Lab) -> subprocess.Popen:
    cmd = ["wrk", "-t1", f"-c{lab.cfg.conns}", "-d300s", "--timeout", "10s", "-s", str(lua_script(lab.workdir))]
    for h in target.headers:
        cmd += ["-H", h]
    cmd.append(target.url)
    return subprocess.Popen(pinned(CORE_LOAD, cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_wrk(proc: subprocess.Popen) -> dict:
    """SIGINT makes wrk stop and still print its summary (our Lua `done` line)."""
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    m = re.search(r"^BENCHJSON (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no summary: {(err or out)[-200:]}")
    return json.loads(m.group(1))
