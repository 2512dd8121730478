"""Screenshots of the dashboard's main pages for docs/ (the README shows one): a real control
plane with a hybrid data plane, gateway entities, a mesh with data planes and permissions, and
some traffic, photographed in Debian's chromium through playwright.

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs/images]
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

MESHWAY = str(Path(sys.executable).with_name("meshway"))
CHROMIUM = "/usr/bin/chromium"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(0.002 * (hash(self.path) % 7))
        code = 503 if self.path.endswith("/fail") else (404 if self.path.endswith("/missing") else 200)
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


def _start(tmp: Path, name: str, settings: dict[str, str]) -> Path:
    conf = tmp / f"{name}.conf"
    conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    subprocess.run([MESHWAY, "start", "-p", str(tmp / name), "-c", str(conf)], check=True, capture_output=True)
    return tmp / name


def _populate(admin: str, origin: str) -> None:
    def ok(r):
        r.raise_for_status()

    ok(httpx.post(f"{admin}/plugins", data={"name": "prometheus", "config.status_code_metrics": "true",
                                            "config.latency_metrics": "true"}))
    for name, tags in (("billing", "team-pay"), ("catalog", "team-shop"), ("checkout", "team-shop"),
                       ("search", "team-find")):
        ok(httpx.post(f"{admin}/services", json={"name": name, "url": f"{origin}/{name}", "tags": [tags]}))
        ok(httpx.post(f"{admin}/services/{name}/routes", json={"name": f"{name}-api", "paths": [f"/{name}"],
                                                               "methods": ["GET", "POST"]}))
    ok(httpx.post(f"{admin}/services/billing/plugins", data={"name": "key-auth"}))
    ok(httpx.post(f"{admin}/services/checkout/plugins", data={"name": "rate-limiting", "config.minute": "600",
                                                               "config.policy": "local"}))
    ok(httpx.post(f"{admin}/upstreams", data={"name": "catalog-pool"}))
    for target in ("10.0.0.11:8080", "10.0.0.12:8080"):
        ok(httpx.post(f"{admin}/upstreams/catalog-pool/targets", data={"target": target}))
    ok(httpx.post(f"{admin}/consumers", data={"username": "alice"}))
    ok(httpx.put(f"{admin}/meshes/default", json={"type": "Mesh", "name": "default", "mtls": {
        "enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}))
    calls = {"frontend": ["cart", "catalog"], "cart": ["payments", "catalog"], "payments": [], "catalog": [],
             "batch": ["payments"]}
    for i, (service, outs) in enumerate(calls.items()):
        ok(httpx.put(f"{admin}/meshes/default/dataplanes/{service}-1", json={
            "type": "Dataplane", "mesh": "default", "name": f"{service}-1", "networking": {
                "address": f"10.1.0.{i + 10}", "inbound": [{"port": 8080, "tags": {"kuma.io/service": service}}],
                "outbound": [{"port": 10000 + j, "tags": {"kuma.io/service": o}} for j, o in enumerate(outs)]}}))
    ok(httpx.put(f"{admin}/meshes/default/meshtrafficpermissions/allow-all", json={
        "type": "MeshTrafficPermission", "mesh": "default", "name": "allow-all", "spec": {
            "targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}))
    ok(httpx.put(f"{admin}/meshes/default/meshtrafficpermissions/deny-batch", json={
        "type": "MeshTrafficPermission", "mesh": "default", "name": "deny-batch", "spec": {
            "targetRef": {"kind": "MeshService", "name": "payments"},
            "from": [{"targetRef": {"kind": "MeshService", "name": "batch"}, "default": {"action": "Deny"}}]}}))


def _populate_gateway(admin: str, origin: str) -> None:
    httpx.post(f"{admin}/plugins", data={"name": "prometheus", "config.status_code_metrics": "true",
                                         "config.latency_metrics": "true"}).raise_for_status()
    for name in ("catalog", "checkout", "search"):
        httpx.post(f"{admin}/services", json={"name": name, "url": f"{origin}/{name}"}).raise_for_status()
        httpx.post(f"{admin}/services/{name}/routes", json={"name": f"{name}-api", "paths": [f"/{name}"]}).raise_for_status()


def _traffic(proxy: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client() as client:
        i = 0
        while time.monotonic() < deadline:
            path = ("/catalog/item", "/checkout/cart", "/search/q", "/checkout/fail", "/search/missing")[i % 5 if i % 3 else 0]
            client.get(proxy + path)
            i += 1
            time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="meshway-shots-"))
    origin = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    cert = (str(tmp / "cluster.crt"), str(tmp / "cluster.key"))
    subprocess.run([MESHWAY, "hybrid", "gen-cert", *cert], check=True, capture_output=True)
    admin, gui, cluster, proxy = _port(), _port(), _port(), _port()
    common = {"cluster_cert": cert[0], "cluster_cert_key": cert[1], "workers": "1", "cluster_data_plane_heartbeat": "2"}
    prefixes = [_start(tmp, "cp", {**common, "role": "control_plane", "admin_listen": f"127.0.0.1:{admin}",
                                   "admin_gui_listen": f"127.0.0.1:{gui}", "cluster_listen": f"127.0.0.1:{cluster}",
                                   "mesh_dp_listen": "off"})]
    try:
        prefixes.append(_start(tmp, "dp", {**common, "role": "data_plane", "database": "off",
                                           "cluster_control_plane": f"127.0.0.1:{cluster}",
                                           "proxy_listen": f"127.0.0.1:{proxy}"}))
        _populate(f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{origin.server_address[1]}")
        # traffic is counted where it is proxied: a traditional node of its own for that page
        gw_admin, gw_gui, gw_proxy = _port(), _port(), _port()
        prefixes.append(_start(tmp, "gw", {"workers": "1", "admin_listen": f"127.0.0.1:{gw_admin}",
                                           "admin_gui_listen": f"127.0.0.1:{gw_gui}",
                                           "proxy_listen": f"127.0.0.1:{gw_proxy}"}))
        _populate_gateway(f"http://127.0.0.1:{gw_admin}", f"http://127.0.0.1:{origin.server_address[1]}")
        _shoot(f"http://127.0.0.1:{gui}", f"http://127.0.0.1:{proxy}", out)
        _shoot_traffic(f"http://127.0.0.1:{gw_gui}", f"http://127.0.0.1:{gw_proxy}", out)
    finally:
        for prefix in reversed(prefixes):
            subprocess.run([MESHWAY, "stop", "-p", str(prefix)], capture_output=True)
        origin.shutdown()
    return 0


def _shoot(gui: str, proxy: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(gui + "/services")
        page.screenshot(path=str(out / "dashboard-services.png"))
        page.goto(gui + "/services/new")
        page.fill("#field-name", "orders")
        page.fill("#field-url", "htp://orders.internal:8080")
        page.get_by_role("button", name="Create").click()
        page.screenshot(path=str(out / "dashboard-field-error.png"))
        page.goto(gui + "/plugins/new?name=rate-limiting")
        page.screenshot(path=str(out / "dashboard-plugin-form.png"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and httpx.get(proxy + "/catalog/x").status_code != 200:
            time.sleep(0.2)  # the data plane has the config
        page.goto(gui + "/data-planes")
        page.screenshot(path=str(out / "dashboard-data-planes.png"))
        page.goto(gui + "/meshes/default?edge=batch%3Epayments")  # no #explain: the graph stays in view
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.screenshot(path=str(out / "dashboard-mesh.png"))
        browser.close()


def _shoot_traffic(gui: str, proxy: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 420})
        page.goto(gui + "/traffic")
        traffic = threading.Thread(target=_traffic, args=(proxy, 8.0))
        traffic.start()
        traffic.join()
        page.wait_for_timeout(2500)
        page.screenshot(path=str(out / "dashboard-traffic.png"))
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
