"""The dashboard at scale: a real `meshway start` control plane holding 5,000 mesh data planes
and 1,000 gateway services, and the time its pages take to render (issue 16: a page with 5,000
data planes in under a second; kuma#1240 was a GUI stuck on 80).

Data planes are written to the node's SQLite store before it starts, through the same
`parse_resource` and store calls as the Admin API's PUT, each with the insight a connected data plane
has (one in ten disconnected) (5,000 PUTs to a running control plane
take minutes, as each one recomputes what every data plane may reach: not what is measured here);
services are created through the Admin API. Each page is then measured `--runs` times, two ways:
- server: the whole HTML answer fetched over HTTP (request sent to last byte read): what the node
  costs, network and browser aside;
- browser: headless Chromium (Debian's, driven by playwright as the ui tests do) opens the page;
  from the Navigation Timing entry, the time from navigation start to the load event's end (the
  table parsed, styled and laid out, the script run) and to the first contentful paint.
Medians and worst times are printed with PASS/MISS against the 1 s target (on the browser's
load time where there is one), with the machine's load average before and after (`os.getloadavg`),
since this machine is shared.

    .venv/bin/python bench/dashboard_scale.py [--dataplanes 5000] [--services 1000] [--runs 5] [--work DIR]

`--work DIR` keeps the filled node there: a second run with the same DIR starts it again without
filling it (filling takes minutes).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
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
    """500 services of 10 data planes each; the first data plane of each calls the next service (a graph to draw)."""
    networking = {"address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                  "inbound": [{"port": 8080, "tags": {"kuma.io/service": f"svc-{i % 500}"}}]}
    if i < 500:
        networking["outbound"] = [{"port": 10001, "tags": {"kuma.io/service": f"svc-{(i + 1) % 500}"}}]
    return {"type": "Dataplane", "mesh": "default", "name": f"dp-{i}", "networking": networking}


def _insight(i: int) -> dict:
    """What a connected data plane's insight holds (a subscription, config counts, its certificate);
    one in ten has disconnected: the pages count and draw them as live ones."""
    from meshway.mesh import _insights

    insight = _insights.connected(None, f"sub-{i}", "cp-1", {"meshway": {"version": "0.1.0"}}, node_id=f"node-{i}")
    insight = _insights.config_events(insight, f"sub-{i}", {"sent": 3, "acknowledged": 3})
    insight = _insights.certificate(insight, time.time() + 86400)
    return _insights.disconnected(insight, f"sub-{i}") if i % 10 == 9 else insight


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
            store.mesh.update_insight("default", f"dp-{i}", lambda current, i=i: _insight(i))
    finally:
        store.close()


def _post_services(admin: str, services: int) -> None:
    with httpx.Client(base_url=admin, timeout=60) as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        def post(i: int) -> None:
            client.post("/services", json={"name": f"svc-{i}", "url": f"http://10.0.{i // 256}.{i % 256}:80",
                                           "tags": [f"team-{i % 10}"]}).raise_for_status()

        list(pool.map(post, range(services)))


def _server(url: str, runs: int) -> dict:
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(runs):
            started = time.perf_counter()
            answer = client.get(url)
            times.append(time.perf_counter() - started)
            answer.raise_for_status()
    return {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3), "bytes": len(answer.content)}


_TIMING = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  const p = performance.getEntriesByName("first-contentful-paint")[0];
  return {load: n.loadEventEnd - n.startTime, fcp: p ? p.startTime : null, rows: document.querySelectorAll("tbody tr").length};
}"""


def _browser(browser, url: str, runs: int) -> dict:
    loads, paints = [], []
    for _ in range(runs):
        context = browser.new_context()  # nothing cached from the run before
        page = context.new_page()
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_function("performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
        timing = page.evaluate(_TIMING)
        context.close()
        loads.append(timing["load"] / 1000)
        if timing["fcp"] is not None:
            paints.append(timing["fcp"] / 1000)
    return {"load_median_s": round(statistics.median(loads), 3), "load_max_s": round(max(loads), 3),
            "fcp_median_s": round(statistics.median(paints), 3) if paints else None, "rows": timing["rows"]}


def _fill(work: Path, dataplanes: int, services: int) -> float:
    """Fill a new node in `work` (the data planes in its store, then the services through its Admin API)."""
    marker = work / "filled.json"
    if marker.exists():
        filled = json.loads(marker.read_text())
        if (filled["dataplanes"], filled["services"]) == (dataplanes, services):
            return filled["seconds"]
        raise SystemExit(f"{work} holds {filled['dataplanes']} data planes and {filled['services']} services: "
                         "give another --work")
    started = time.perf_counter()
    conf, prefix = _conf(work), work / "cp"
    _store_dataplanes(conf, prefix, dataplanes)
    admin = _start(conf, prefix)
    try:
        _post_services(admin, services)
    finally:
        subprocess.run([MESHWAY, "stop", "-p", str(prefix)], capture_output=True)
    seconds = round(time.perf_counter() - started, 1)
    marker.write_text(json.dumps({"dataplanes": dataplanes, "services": services, "seconds": seconds}))
    return seconds


def _conf(work: Path) -> Path:
    conf = work / "cp.conf"
    conf.write_text(f"role = control_plane\nadmin_listen = 127.0.0.1:{_free_port()}\n"
                    f"admin_gui_listen = 127.0.0.1:{_free_port()}\ncluster_listen = off\nmesh_dp_listen = off\n")
    return conf


def _start(conf: Path, prefix: Path) -> str:
    """Start the node; on a shared machine a free port may be taken before it binds: new ports, again."""
    # a node kept by --work from an older meshway: its database first
    subprocess.run([MESHWAY, "migrations", "up", "-p", str(prefix), "-c", str(conf)], capture_output=True)
    for attempt in range(3):
        done = subprocess.run([MESHWAY, "start", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
        if done.returncode == 0:
            break
        if attempt == 2:
            raise SystemExit(f"meshway start failed: {done.stderr or done.stdout}")
        conf = _conf(conf.parent)
    settings = dict(line.split(" = ", 1) for line in conf.read_text().splitlines())
    return "http://" + settings["admin_listen"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataplanes", type=int, default=5000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, help="keep the filled node here, and reuse it")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="meshway-bench-gui-"))
    work.mkdir(parents=True, exist_ok=True)
    filled = _fill(work, args.dataplanes, args.services)
    conf, prefix = work / "cp.conf", work / "cp"
    _start(_conf(work), prefix)
    settings = dict(line.split(" = ", 1) for line in conf.read_text().splitlines())
    gui = "http://" + settings["admin_gui_listen"]
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
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    try:
        for name, path in pages.items():
            results[name] = {"server": _server(gui + path, args.runs)}
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium")
            for name, path in pages.items():
                if "fragment=" not in path:  # a fragment is read by the page's script, not opened
                    results[name]["browser"] = _browser(browser, gui + path, args.runs)
            browser.close()
    finally:
        subprocess.run([MESHWAY, "stop", "-p", str(prefix)], capture_output=True)
    load_after = os.getloadavg()
    print(f"{args.dataplanes} data planes and {args.services} services (filled in {filled:.1f} s); "
          f"load average (1, 5, 15 min) before {_loads(load_before)}, after {_loads(load_after)} on {os.cpu_count()} cores")
    print(f"{'page':38s} {'server median':>13s} {'max':>7s} {'browser load':>12s} {'max':>7s} {'first paint':>11s} {'bytes':>8s}")
    for name, r in results.items():
        s, b = r["server"], r.get("browser")
        verdict = "PASS" if _worst_median(r) < TARGET_S else "MISS"
        browser = f"{b['load_median_s']:12.3f} {b['load_max_s']:7.3f} {b['fcp_median_s'] or 0:11.3f}" if b else f"{'-':>12s} {'-':>7s} {'-':>11s}"
        print(f"{name:38s} {s['median_s']:13.3f} {s['max_s']:7.3f} {browser} {s['bytes']:8d}  {verdict}")
    out = HERE / "results" / "dashboard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"dataplanes": args.dataplanes, "services": args.services, "runs": args.runs,
                               "target_s": TARGET_S, "cores": os.cpu_count(), "load_before": load_before,
                               "load_after": load_after, "pages": results}, indent=2) + "\n")
    return 0 if all(_worst_median(r) < TARGET_S for r in results.values()) else 1


def _worst_median(result: dict) -> float:
    browser = result.get("browser")
    return max(result["server"]["median_s"], browser["load_median_s"] if browser else 0.0)


def _loads(loads: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.1f}" for x in loads)


if __name__ == "__main__":
    sys.exit(main())
