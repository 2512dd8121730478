"""L4 scenarios: a long TCP stream through each proxy to a sink, and TLS passthrough by SNI."""
from __future__ import annotations

from . import meshway as mw
from . import servers
from .lab import Lab, Scope
from .load import Target, core_times, core_usage, interleave
from .procs import cpu_ticks, free_port, ticks_to_us, wait_port
from .scenarios_http import run_client, ratio

SNI = "pass.bench.test"


def _stream_doc(sink: int, tls_sink: int, tcp_port: int) -> dict:
    tcp = {"name": "tcp-sink", "url": f"tcp://127.0.0.1:{sink}",
           "routes": [{"name": "tcp", "protocols": ["tcp"], "destinations": [{"ip": "127.0.0.1", "port": tcp_port}]}]}
    tls = {"name": "tls-sink", "url": f"tcp://127.0.0.1:{tls_sink}",
           "routes": [{"name": "tls-pass", "protocols": ["tls_passthrough"], "snis": [SNI]}]}
    return mw.declarative([tcp, tls])


def _meshway_stream(scope: Scope, sink: int, tls_sink: int) -> tuple[Target, Target]:
    tcp_port, tls_port = free_port(), free_port()
    settings = {"proxy_listen": f"127.0.0.1:{free_port()}",
                "stream_listen": f"127.0.0.1:{tcp_port}, 127.0.0.1:{tls_port}"}
    try:
        node = scope.meshway("stream", _stream_doc(sink, tls_sink, tcp_port), settings)
        if not wait_port(tcp_port, 20):
            raise RuntimeError(f"stream listener {tcp_port} never accepted")
    except Exception as e:
        return Target("meshway", error=str(e)[:400]), Target("meshway", error=str(e)[:400])
    return (Target("meshway", f"tcp://127.0.0.1:{tcp_port}", pids=node.pids),
            Target("meshway", f"tcp://127.0.0.1:{tls_port}", pids=node.pids))


def _haproxy_stream(scope: Scope, name: str, sink: int, tls_sink: int, bufsize: int | None) -> tuple[Target, Target]:
    try:
        proc, port, tls_port = servers.start_haproxy_tcp(scope.lab.workdir, name, sink, tls_sink, bufsize)
    except Exception as e:
        return Target(name, error=str(e)), Target(name, error=str(e))
    scope.keep(proc)
    return (Target(name, f"tcp://127.0.0.1:{port}", pids=proc.pids),
            Target(name, f"tcp://127.0.0.1:{tls_port}", pids=proc.pids))


def _stream_once(target: Target, size: int, sni: str | None) -> dict:
    port = target.url.rsplit(":", 1)[1]
    pids = target.pids() if target.pids else []
    cores0, t0 = core_times(), cpu_ticks(pids)
    out = run_client(["source", "127.0.0.1", port, str(size), *([sni] if sni else [])], size)
    ticks = cpu_ticks(pids) - t0
    out.update(core_usage(cores0, core_times(), ticks if pids else None))
    if out.pop("ack") != "K":
        raise RuntimeError(f"sink did not confirm {size} bytes")
    if pids:
        out["cpu_us_per_mb"] = round(ticks_to_us(ticks) / (size / 1e6), 1)
    return out


def _sinks(scope: Scope) -> tuple[int, int]:
    lab = scope.lab
    sink, port = servers.start_sink(lab.workdir, "tcp")
    scope.keep(sink)
    tls_sink, tls_port = servers.start_sink(lab.workdir, "tls", str(lab.cert), str(lab.key))
    scope.keep(tls_sink)
    return port, tls_port


def tcp(lab: Lab) -> dict:
    """One long TCP stream per run: meshway vs HAProxy (default and tune.bufsize 262144) vs direct."""
    size = lab.cfg.tcp_bytes
    with Scope(lab) as scope:
        sink, tls_sink = _sinks(scope)
        mesh, _ = _meshway_stream(scope, sink, tls_sink)
        hdef, _ = _haproxy_stream(scope, "haproxy", sink, tls_sink, None)
        hbig, _ = _haproxy_stream(scope, "haproxy-bufsize-256k", sink, tls_sink, 262144)
        direct = Target("direct", f"tcp://127.0.0.1:{sink}")
        res = interleave([mesh, hdef, hbig, direct], lab.cfg.rounds, lambda t: _stream_once(t, size, None))
    return {"targets": res, "notes": f"{size >> 20} MiB per stream, end to end at the sender",
            "ratios": {"meshway/haproxy": ratio(res["meshway"], res["haproxy"], "mb_per_s"),
                       "meshway/haproxy-256k": ratio(res["meshway"], res["haproxy-bufsize-256k"], "mb_per_s")}}


def tls_passthrough(lab: Lab) -> dict:
    """TLS passthrough routed by SNI (no termination): meshway vs HAProxy (req_ssl_sni) vs direct."""
    size = lab.cfg.tls_bytes
    with Scope(lab) as scope:
        sink, tls_sink = _sinks(scope)
        _, mesh = _meshway_stream(scope, sink, tls_sink)
        _, hdef = _haproxy_stream(scope, "haproxy", sink, tls_sink, None)
        direct = Target("direct", f"tcp://127.0.0.1:{tls_sink}")
        res = interleave([mesh, hdef, direct], lab.cfg.rounds, lambda t: _stream_once(t, size, SNI))
    return {"targets": res, "notes": f"{size >> 20} MiB per TLS stream, SNI {SNI}",
            "ratios": {"meshway/haproxy": ratio(res["meshway"], res["haproxy"], "mb_per_s")}}
