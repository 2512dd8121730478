"""HTTP scenarios: keep-alive small responses (1 route, 10,000 routes, plugins), HTTPS, HTTP/2,
1 MiB responses, a streamed upload, unloaded latency. Each returns {"targets", "ratios", ...}."""
from __future__ import annotations

import dataclasses
import http.client
import json
import subprocess
import sys
import threading

from . import meshway as mw
from .lab import Lab, Scope
from .load import Target, interleave, run_h2load
from .procs import CORE_LOAD, clean_env, free_port, http_status, pinned, total_rss, wait_http
from .servers import BENCH_DIR


def ratio(a: dict, b: dict, key: str = "rps") -> float | None:
    if not a or not b or "error" in a or "error" in b or not a.get(key) or not b.get(key):
        return None
    return round(a[key] / b[key], 3)


def rps_ratios(res: dict, subject: str, refs: tuple[str, ...]) -> dict:
    """subject/ref in req/s (what the targets use) and in CPU per request (ref cpu / subject cpu):
    the CPU figure holds up when other processes share the proxy core, req/s does not."""
    out = {}
    for ref in refs:
        out[f"{subject}/{ref}"] = ratio(res[subject], res[ref])
        out[f"{subject}/{ref} by cpu"] = ratio(res[ref], res[subject], "cpu_us_per_req")
    return out


def meshway_target(scope: Scope, name: str, doc: dict, path: str = "/", host: str | None = None,
                   headers: tuple[str, ...] = (), tls: bool = False, extra: dict | None = None,
                   label: str = "meshway") -> Target:
    """Start a node with one plain (and optionally one `ssl http2`) listener; error Target on failure."""
    port, tls_port = free_port(), free_port()
    listen = f"127.0.0.1:{port}" + (f", 127.0.0.1:{tls_port} ssl http2" if tls else "")
    settings = {"proxy_listen": listen, **(extra or {})}
    if tls:
        settings.update(ssl_cert=str(scope.lab.cert), ssl_cert_key=str(scope.lab.key))
    try:
        node = scope.meshway(name, doc, settings)
        hdrs = dict(h.split(": ", 1) for h in headers)
        ok, last = wait_http(tls_port if tls else port, 30, path, host_header=host, tls=tls, headers=hdrs)
        if not ok:
            raise RuntimeError(f"GET {path} never answered 200 within 30 s: {last}")
    except Exception as e:
        return Target(label, error=str(e)[:400])
    url = f"https://127.0.0.1:{tls_port}" if tls else f"http://127.0.0.1:{port}"
    host_hdr = (f"Host: {host}",) if host else ()
    target = Target(label, url + (path if path != "/" else ""), headers=headers + host_hdr, pids=node.pids)
    target.node = node  # type: ignore[attr-defined]  # rss/startup scenarios read worker pids
    return target


def plain_doc(lab: Lab) -> dict:
    return mw.declarative(mw.base_services(lab.origin_port, lab.upload_port))


def plain_target(lab: Lab, label: str = "meshway") -> Target:
    """The 1-route node (plus /upload), shared by the scenarios that load it the same way."""
    t = lab.shared_target("plain", lambda scope: meshway_target(scope, "plain", plain_doc(lab)))
    return dataclasses.replace(t, name=label)


def tls_target(lab: Lab) -> Target:
    """The same node shape with an extra `ssl http2` listener, shared by https and http2."""
    return lab.shared_target("tls", lambda scope: meshway_target(scope, "tls", plain_doc(lab), tls=True))


def http1(lab: Lab) -> dict:
    """HTTP/1.1 keep-alive, 5-byte response: meshway (full default path) vs nginx, HAProxy, direct."""
    with Scope(lab) as scope:
        targets = [plain_target(lab), scope.nginx_target(),
                   scope.haproxy_target(), lab.direct()]
        seen = _default_path_headers(targets[0])
        res = interleave(targets, lab.cfg.rounds, lab.wrk(), lab.warm())
    return {"targets": res, "ratios": rps_ratios(res, "meshway", ("nginx", "haproxy")),
            "notes": f"meshway response headers of the default path: {seen}"}


def _default_path_headers(target: Target) -> str:
    """Evidence that the measured path is the full default one (Via, latency headers...)."""
    if target.error:
        return "n/a"
    conn = http.client.HTTPConnection("127.0.0.1", int(target.url.rsplit(":", 1)[1]), timeout=5)
    try:
        conn.request("GET", "/")
        names = [k for k, _ in conn.getresponse().getheaders()]
    except (OSError, http.client.HTTPException) as e:
        return f"error {e}"
    finally:
        conn.close()
    return ", ".join(n for n in names if n.lower() not in ("date", "content-length", "connection", "content-type"))


def routes10k(lab: Lab) -> dict:
    """The same load on a node with 10,000 host+path routes, against the 1-route node."""
    many = mw.declarative([mw.many_routes(lab.origin_port, 10_000)])
    with Scope(lab) as scope:
        targets = [plain_target(lab, "meshway-1-route"),
                   meshway_target(scope, "routes10k", many, path="/r5000", host="r5000.bench.test",
                                  label="meshway-10k-routes")]
        res = interleave(targets, lab.cfg.rounds, lab.wrk(), lab.warm())
    node = getattr(targets[1], "node", None)
    if node and "error" not in res["meshway-10k-routes"]:
        res["meshway-10k-routes"]["start_s"] = round(node.start_seconds, 2)
    return {"targets": res, "ratios": {"10k/1-route": ratio(res["meshway-10k-routes"], res["meshway-1-route"]),
                                       "10k/1-route by cpu": ratio(res["meshway-1-route"], res["meshway-10k-routes"],
                                                                   "cpu_us_per_req")},
            "notes": "10k routes each with its own host and path; load hits route r5000 (Host + path)"}


def plugins(lab: Lab) -> dict:
    """key-auth + rate-limiting (local, limit never reached) + prometheus vs plain nginx."""
    services, consumers = mw.plugin_services(lab.origin_port)
    doc = mw.declarative(services, consumers, plugins=[{"name": "prometheus"}])
    with Scope(lab) as scope:
        mesh = meshway_target(scope, "plugins", doc, headers=(f"apikey: {mw.BENCH_KEY}",))
        enforced = _key_auth_enforced(mesh)
        if enforced is False:
            mesh = Target("meshway", error="key-auth not enforced: a request without a key got 200")
        res = interleave([mesh, scope.nginx_target()], lab.cfg.rounds, lab.wrk(), lab.warm())
    return {"targets": res, "ratios": rps_ratios(res, "meshway", ("nginx",)),
            "notes": "nginx runs plain proxy_pass (no auth, no limits, no metrics)"}


def _key_auth_enforced(target: Target) -> bool | None:
    if target.error:
        return None
    port = int(target.url.rsplit(":", 1)[1].split("/")[0])
    status, _ = http_status(port, "/")
    return status == 401


def _tls_targets(lab: Lab, scope: Scope) -> list[Target]:
    return [tls_target(lab), scope.nginx_target(tls=True)]


def https(lab: Lab) -> dict:
    """HTTPS termination with keep-alive (wrk, TLS 1.3 by default) vs nginx."""
    with Scope(lab) as scope:
        res = interleave(_tls_targets(lab, scope), lab.cfg.rounds, lab.wrk(), lab.warm())
    return {"targets": res, "ratios": rps_ratios(res, "meshway", ("nginx",))}


def http2(lab: Lab) -> dict:
    """HTTP/2 over TLS (ALPN h2) with h2load -c50 -m1 vs nginx."""
    cfg = lab.cfg
    with Scope(lab) as scope:
        res = interleave(_tls_targets(lab, scope), cfg.rounds,
                         lambda t: run_h2load(t, cfg.conns, cfg.duration),
                         (lambda t: run_h2load(t, cfg.conns, cfg.warmup)) if cfg.warmup else None)
    return {"targets": res, "ratios": rps_ratios(res, "meshway", ("nginx",)),
            "notes": "h2load reports mean/max latency, not percentiles; 1 stream per connection"}


def large(lab: Lab) -> dict:
    """1 MiB responses (wrk -c50 on /1m): req/s and MB/s."""
    with Scope(lab) as scope:
        targets = [plain_target(lab), scope.nginx_target(), lab.direct()]
        res = interleave(targets, lab.cfg.rounds, lab.wrk(path="/1m"), lab.warm(path="/1m"))
    return {"targets": res, "ratios": rps_ratios(res, "meshway", ("nginx",))}


def unloaded(lab: Lab) -> dict:
    """wrk -c1: latency each proxy adds over direct (p50, p99)."""
    with Scope(lab) as scope:
        targets = [plain_target(lab), scope.nginx_target(), lab.direct()]
        res = interleave(targets, lab.cfg.rounds, lab.wrk(conns=1), lab.warm())
    direct = res["direct"]
    for name in ("meshway", "nginx"):
        fig = res[name]
        if "error" not in fig and "error" not in direct:
            fig["added_p50_ms"] = round(fig["p50_ms"] - direct["p50_ms"], 3)
            fig["added_p99_ms"] = round(fig["p99_ms"] - direct["p99_ms"], 3)
    added = ratio(res["meshway"], res["nginx"], "added_p99_ms")
    return {"targets": res, "ratios": {"meshway/nginx added p99": added if added and added > 0 else None},
            "notes": "added = proxy figure - direct figure; lower is better"}


def upload(lab: Lab) -> dict:
    """A streamed upload (Content-Length) through each proxy to a sink: seconds, MB/s, RSS growth."""
    size = lab.cfg.upload_bytes
    with Scope(lab) as scope:
        targets = [plain_target(lab), scope.nginx_target(),
                   Target("direct", f"http://127.0.0.1:{lab.upload_port}")]
        res = interleave(targets, lab.cfg.rounds, lambda t: _upload_once(t, size))
    return {"targets": res, "ratios": {"meshway/nginx": ratio(res["meshway"], res["nginx"], "mb_per_s")},
            "notes": f"{size >> 20} MiB body, POST /upload with Content-Length"}


def _upload_once(target: Target, size: int) -> dict:
    port = int(target.url.rsplit(":", 1)[1])
    pids = target.pids() if target.pids else []
    base = total_rss(pids)
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        for _ in range(1_000_000):
            if stop.wait(0.02):
                return
            peak[0] = max(peak[0], total_rss(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = run_client(["upload-client", "127.0.0.1", str(port), str(size)], size)
    finally:
        stop.set()
        sampler.join(2)
    if out.get("status") != "200" or out.get("echoed") != str(size):
        raise RuntimeError(f"upload answered {out.get('status')} {out.get('echoed')!r}")
    out.pop("echoed")
    out.update(rss_before_mib=round(base / 2**20, 1), rss_growth_mib=round((peak[0] - base) / 2**20, 1))
    return out


def run_client(args: list[str], size: int) -> dict:
    """A sinks.py client pinned to the load core; returns its JSON line."""
    cmd = pinned(CORE_LOAD, [sys.executable, "-m", "meshbench.sinks", *args])
    timeout = 60 + size / 50e6  # even at 50 MB/s it finishes
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=clean_env({"PYTHONPATH": str(BENCH_DIR)}))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]  # the exception, not the stack
        raise RuntimeError(f"client failed: {last[:300]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
