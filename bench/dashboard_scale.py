"""The dashboard at scale: a real `meshway start` control plane holding 5,000 mesh data planes
and 1,000 gateway services, and the time its pages take to render (issue 16: a page with 5,000
data planes in under a second; kuma#1240 was a GUI stuck on 80).

Data planes are written to the node's SQLite store before it starts, through the same
`parse_resource` and store calls as the Admin API's PUT (5,000 PUTs to a running control plane
take minutes, as each one recomputes what every data plane may reach: not what is measured here);
services are created through the Admin API. Each page is then fetched `--runs` times from the dashboard, over HTTP, as a browser would, and
the median and worst times are printed with PASS/MISS against the 1 s target.

    .venv/bin/python bench/dashboard_scale.py [--dataplanes 5000] [--services 1000] [--runs 5]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
MESHWAY = str(Path(sys.executable).with_name("meshway"))
TARGET_S = 1.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataplane(i: int) -> dict:
    return {"type": "Dataplane", "mesh": "default", "name": f"dp-{i}",
            "networking": {"address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                           "inbound": [{"port": 8080, "tags": {"kuma.io/service": f"svc-{i % 500}"}}]}}


def _store_dataplanes(conf: Path, prefix: Path, dataplanes: int) -> None:
    from meshway.mesh._resources import parse_resource
    from meshway.settings import load_settings
    from meshway.store import open_store

    subprocess.run([MESHWAY, "migrations", "bootstrap", "-p", str(prefix), "-c", str(conf)], check=True,
                   capture_output=True)
    store = open_store(load_settings(conf, env={}, overrides={"prefix": str(prefix)}))
    try:
        store.mesh.put(parse_resource({"type": "Mesh", "name": "default"}))
        for i in range(dataplanes):
            store.mesh.put(parse_resource(_dataplane(i)))
    finally:
        store.close()


def _post_services(admin: str, services: int) -> None:
    with httpx.Client(base_url=admin, timeout=60) as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        def post(i: int) -> None:
            client.post("/services", json={"name": f"svc-{i}", "url": f"http://10.0.{i // 256}.{i % 256}:80",
                                           "tags": [f"team-{i % 10}"]}).raise_for_status()

        list(pool.map(post, range(services)))


def _time(url: str, runs: int) -> dict:
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(runs):
            started = time.perf_counter()
            answer = client.get(url)
            times.append(time.perf_counter() - started)
            answer.raise_for_status()
    return {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3), "bytes": len(answer.content)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataplanes", type=int, default=5000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="meshway-bench-gui-"))
    admin_port, gui_port = _free_port(), _free_port()
    conf = tmp / "cp.conf"
    conf.write_text(f"role = control_plane\nadmin_listen = 127.0.0.1:{admin_port}\n"
                    f"admin_gui_listen = 127.0.0.1:{gui_port}\ncluster_listen = off\nmesh_dp_listen = off\n")
    prefix = tmp / "cp"
    started = time.perf_counter()
    _store_dataplanes(conf, prefix, args.dataplanes)
    subprocess.run([MESHWAY, "start", "-p", str(prefix), "-c", str(conf)], check=True, capture_output=True)
    try:
        _post_services(f"http://127.0.0.1:{admin_port}", args.services)
        filled = time.perf_counter() - started
        gui = f"http://127.0.0.1:{gui_port}"
        pages = {
            "data planes, first page": "/data-planes",
            "data planes, last page": f"/data-planes?start={max(0, args.dataplanes - 100)}",
            "data planes, search": "/data-planes?q=svc-42",
            "data planes, live refresh": "/data-planes?fragment=rows",
            "mesh (graph, services, data planes)": "/meshes/default",
            "gateway services, first page": "/services",
            "gateway services, search": f"/services?q=svc-{args.services - 1}",
            "gateway services, tag filter": "/services?tags=team-3",
        }
        results = {name: _time(gui + path, args.runs) for name, path in pages.items()}
    finally:
        subprocess.run([MESHWAY, "stop", "-p", str(prefix)], capture_output=True)
    print(f"{args.dataplanes} data planes and {args.services} services created in {filled:.1f} s")
    for name, r in results.items():
        verdict = "PASS" if r["median_s"] < TARGET_S else "MISS"
        print(f"{name:40s} median {r['median_s']:6.3f} s  max {r['max_s']:6.3f} s  {r['bytes']:8d} B  {verdict}")
    out = HERE / "results" / "dashboard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"dataplanes": args.dataplanes, "services": args.services, "runs": args.runs,
                               "target_s": TARGET_S, "pages": results}, indent=2) + "\n")
    return 0 if all(r["median_s"] < TARGET_S for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
