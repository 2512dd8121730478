"""Hybrid mode at scale with real nodes: one control plane, 2 real data planes, N simulated ones.

A real `meshway start` control plane (SQLite) serves the Admin API and the cluster listener;
two real data-plane nodes proxy to a local origin; N light simulated data planes (the clients of
`cluster_scale.py`) connect over mutual TLS. A route is then created through the Admin API and
the time until (a) every simulated data plane has received the new config and (b) each real
data plane proxies the new route is measured from the moment the Admin API answered.

    .venv/bin/python bench/hybrid_scale.py [--dps 500] [--workers 2]
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MESHWAY = str(Path(sys.executable).with_name("meshway"))
sys.path.insert(0, str(HERE))

from cluster_scale import _percentile  # noqa: E402


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _origin() -> int:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def _node(tmp: Path, name: str, settings: dict[str, str]) -> Path:
    conf = tmp / f"{name}.conf"
    conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    out = subprocess.run([MESHWAY, "start", "-p", str(tmp / name), "-c", str(conf)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{name} did not start: {out.stderr}")
    return tmp / name


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if r.headers.get_content_type() == "application/json" else text
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait(check, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if check():
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    return None


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="hybrid-scale-"))
    cert, key = tmp / "cluster.crt", tmp / "cluster.key"
    subprocess.run([MESHWAY, "hybrid", "gen-cert", str(cert), str(key)], check=True, capture_output=True)
    admin, cluster, status = _free_port(), _free_port(), _free_port()
    common = {"cluster_cert": str(cert), "cluster_cert_key": str(key), "log_level": "warn"}
    nodes = [_node(tmp, "cp", {**common, "role": "control_plane", "admin_listen": f"127.0.0.1:{admin}",
                               "cluster_listen": f"127.0.0.1:{cluster}", "status_listen": f"127.0.0.1:{status}"})]
    origin = _origin()
    dp_ports = []
    for i in range(2):
        port = _free_port()
        dp_ports.append(port)
        nodes.append(_node(tmp, f"dp{i}", {**common, "role": "data_plane", "database": "off", "workers": "1",
                                           "cluster_control_plane": f"127.0.0.1:{cluster}", "status_listen": "off",
                                           "proxy_listen": f"127.0.0.1:{port}"}))
    try:
        _http("POST", f"http://127.0.0.1:{admin}/services", {"name": "origin", "url": f"http://127.0.0.1:{origin}"})
        for port in dp_ports:  # both real data planes have the service's first route's config
            _http("POST", f"http://127.0.0.1:{admin}/services/origin/routes", {"paths": [f"/warm{port}"]})
            _wait(lambda p=port: _http("GET", f"http://127.0.0.1:{p}/warm{p}")[0] == 200, 30)
        initial = _http("GET", f"http://127.0.0.1:{status}/status")[1]["configuration_hash"]
        share = [args.dps // args.workers + (1 if i < args.dps % args.workers else 0) for i in range(args.workers)]
        workers = [subprocess.Popen([sys.executable, str(HERE / "cluster_scale.py"), "--worker", str(cluster), str(n),
                                     str(cert), str(key), initial], stdout=subprocess.PIPE, text=True) for n in share]
        t_connect = time.monotonic()
        for w in workers:
            json.loads(w.stdout.readline())
        connect_s = time.monotonic() - t_connect
        time.sleep(1.0)
        listed = len(_http("GET", f"http://127.0.0.1:{admin}/clustering/data-planes")[1]["data"])
        code, _ = _http("POST", f"http://127.0.0.1:{admin}/services/origin/routes", {"paths": ["/changed"]})
        t0 = time.monotonic()
        assert code == 201, code
        real = [_wait(lambda p=p: _http("GET", f"http://127.0.0.1:{p}/changed")[0] == 200, 30) for p in dp_ports]
        results = [json.loads(w.stdout.readline()) for w in workers]
        for w in workers:
            w.wait()
    finally:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
        for node in nodes:
            subprocess.run([MESHWAY, "stop", "-p", str(node)], capture_output=True, env=env)
    simulated = [a - t0 for r in results for a in r["arrivals"]]
    real_s = [r - t0 for r in real if r is not None]
    everyone = simulated + real_s
    return {
        "simulated_data_planes": args.dps, "real_data_planes": 2, "listed_by_cp": listed,
        "received_simulated": len(simulated), "received_real": len(real_s), "connect_all_s": round(connect_s, 3),
        "p50_s": round(_percentile(everyone, 50), 4), "p99_s": round(_percentile(everyone, 99), 4),
        "max_s": round(max(everyone), 4), "real_s": [round(x, 4) for x in real_s],
        "errors": [e for r in results for e in r["errors"]],
        "note": "from the Admin API's 201 to arrival; includes the control plane's database poll (db_update_frequency)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dps", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "hybrid_scale.json"))
    args = parser.parse_args()
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    ok = result["p99_s"] < 2 and result["received_real"] == 2 and result["received_simulated"] == args.dps
    print(f"{result['received_simulated']}/{args.dps} simulated + {result['received_real']}/2 real data planes got the "
          f"change; listed by the CP: {result['listed_by_cp']}; p50 {result['p50_s'] * 1000:.0f} ms, "
          f"p99 {result['p99_s'] * 1000:.0f} ms, max {result['max_s'] * 1000:.0f} ms; target p99 < 2 s: "
          f"{'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
