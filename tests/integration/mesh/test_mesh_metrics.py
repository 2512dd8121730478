"""Per-service metrics of real `meshway dp run` data planes on loopback, scraped from each data
plane's `/metrics` (its readiness port) with Prometheus's own parser: HTTP requests with their
response codes and latency histogram, TCP connections and bytes, errors (the app down: 502), and
denials (reachable services on the caller, a MeshTrafficPermission on the callee), each with
source and destination service labels, on both the calling and the called data plane."""
from __future__ import annotations

import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import Cp, Dp, dps, wait_until  # noqa: F401
from tests.integration.mesh.test_mesh_permissions import (ALLOW_ALL, CLIENT, DENY_CLIENT_TO_WEB, MTLS_ON, UNREACHABLE,
                                                          WEB, apply, echoes, http_status, mesh_get, start_echo)


def scrape(dp: Dp) -> dict[tuple, float]:
    """{(sample name, sorted labels...): value} of the data plane's mesh series."""
    text = httpx.get(f"http://127.0.0.1:{dp.ready_port}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("meshway_mesh_"):
                out[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return out


def key(name: str, direction: str, source: str, destination: str, **extra: str) -> tuple:
    labels = {"direction": direction, "source_service": source, "destination_service": destination, **extra}
    return (name, *sorted(labels.items()))


def test_per_service_metrics_on_both_data_planes(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    web_port, app_port, echo_port, echo_app = free_port(), free_port(), free_port(), free_port()
    web_out, echo_out = free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    # the app runs on its own (not after `--`), so that the test can stop it and see errors
    app = subprocess.Popen([sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1",
                            "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    echo = start_echo(echo_app)
    try:
        web = Dp(cp, tmp_path, "web", WEB, f"port={web_port}", f"app_port={app_port}", f"echo_port={echo_port}",
                 f"echo_app={echo_app}")
        dps.append(web)
        client = Dp(cp, tmp_path, "client", CLIENT, f"web_out={web_out}", f"echo_out={echo_out}")
        dps.append(client)
        wait_until(lambda: web.ready() and client.ready(), what="both ready")
        wait_until(lambda: http_status(web_out) == 200, what="web through the mesh")
        for _ in range(2):
            assert http_status(web_out) == 200
        assert httpx.get(f"http://127.0.0.1:{web_out}/missing", timeout=3).status_code == 404
        assert echoes(echo_out)

        # the calling side: its outbound listener relays TCP (an explicit outbound, no transparent
        # proxying), so each call to web is a TCP connection there, bytes counted as the app sent them
        wait_until(lambda: scrape(client).get(key("meshway_mesh_tcp_connections_total", "outbound", "client",
                                                  "echo")) == 1, what="outbound TCP connection to echo counted")
        got = scrape(client)
        assert got[key("meshway_mesh_tcp_connections_total", "outbound", "client", "web")] == 4, got
        assert got[key("meshway_mesh_tcp_sent_bytes_total", "outbound", "client", "echo")] == 5  # "ping\n"
        assert got[key("meshway_mesh_tcp_received_bytes_total", "outbound", "client", "echo")] == 5
        assert got[key("meshway_mesh_tcp_received_bytes_total", "outbound", "client", "web")] > 4 * 15
        # the called side: web's inbound is kuma.io/protocol http, so requests with codes and latency
        wait_until(lambda: scrape(web).get(key("meshway_mesh_tcp_connections_total", "inbound", "client",
                                               "echo")) == 1, what="inbound TCP connection from client counted")
        got = scrape(web)
        assert got[key("meshway_mesh_requests_total", "inbound", "client", "web", response_code="200")] == 3, got
        assert got[key("meshway_mesh_requests_total", "inbound", "client", "web", response_code="404")] == 1
        count = got[key("meshway_mesh_request_duration_seconds_count", "inbound", "client", "web")]
        assert count == 4
        assert got[key("meshway_mesh_request_duration_seconds_bucket", "inbound", "client", "web", le="+Inf")] == 4
        assert got[key("meshway_mesh_request_duration_seconds_bucket", "inbound", "client", "web", le="10.0")] == 4
        assert 0 < got[key("meshway_mesh_request_duration_seconds_sum", "inbound", "client", "web")] < 4
        assert got[key("meshway_mesh_tcp_sent_bytes_total", "inbound", "client", "echo")] == 5
        for dp in (client, web):
            assert not any(k[0] in ("meshway_mesh_denied_total", "meshway_mesh_request_errors_total")
                           for k in scrape(dp))

        # the control plane's mesh-wide view: both data planes' series summed, each side kept apart
        # by `direction` (reports every 5 s when they changed)
        def mesh_view() -> dict:
            text = httpx.get(f"{cp.node.admin}/meshes/default/metrics", timeout=5).text
            return {(s.name, *sorted(s.labels.items())): s.value
                    for f in text_string_to_metric_families(text) for s in f.samples}

        wait_until(lambda: mesh_view().get(key("meshway_mesh_requests_total", "inbound", "client", "web",
                                                response_code="200")) == 3, timeout=15, what="web in the view")
        wait_until(lambda: mesh_view().get(key("meshway_mesh_tcp_connections_total", "outbound", "client",
                                                "echo")) == 1, timeout=15, what="client in the view")
        view = mesh_view()
        assert view[key("meshway_mesh_tcp_connections_total", "outbound", "client", "web")] == 4
        assert view[key("meshway_mesh_tcp_connections_total", "inbound", "client", "echo")] == 1
        assert view[("meshway_mesh_dataplanes_reporting", ("mesh", "default"))] == 2
        assert httpx.get(f"{cp.node.admin}/meshes/nowhere/metrics").status_code == 404

        # mTLS on, no permission: the caller refuses (reachable services), the callee denies
        apply(cp, tmp_path, MTLS_ON)
        wait_until(lambda: str(http_status(web_out)).startswith(UNREACHABLE), timeout=10, what="unreachable")
        unreachable = key("meshway_mesh_denied_total", "outbound", "client", "web", reason="unreachable")
        wait_until(lambda: scrape(client).get(unreachable, 0) >= 1, what="unreachable counted")
        wait_until(lambda: "RBAC: access denied" in mesh_get(client, web_port), timeout=10, what="inbound deny")
        permission = key("meshway_mesh_denied_total", "inbound", "client", "web", reason="permission")
        wait_until(lambda: scrape(web).get(permission, 0) >= 1, what="permission deny counted on web")

        # AllowWithShadowDeny: allowed, and counted as what Deny would have refused
        apply(cp, tmp_path, ALLOW_ALL)
        apply(cp, tmp_path, DENY_CLIENT_TO_WEB, "action=AllowWithShadowDeny")
        wait_until(lambda: http_status(web_out) == 200, timeout=10, what="shadow deny allows")
        shadow = key("meshway_mesh_shadow_denied_total", "inbound", "client", "web")
        wait_until(lambda: scrape(web).get(shadow, 0) >= 1, what="shadow deny counted")

        # the app goes down: 502s, counted as errors on both sides, with code 502 in the requests
        app.kill()
        app.wait()
        wait_until(lambda: http_status(web_out) == 502, timeout=10, what="502 with the app down")
        error = key("meshway_mesh_request_errors_total", "inbound", "client", "web")
        wait_until(lambda: scrape(web).get(error, 0) >= 1, what="error counted on web")
        assert scrape(web)[key("meshway_mesh_requests_total", "inbound", "client", "web", response_code="502")] >= 1
    finally:
        for proc in (app, echo):
            proc.kill()
            proc.wait()


def test_envoy_stats_path_and_readiness_stay(node_factory, tmp_path, dps):
    """`/stats/prometheus` (Envoy's path, which Kuma's scrapers know) serves the same text; `/ready` is unchanged."""
    cp = Cp(node_factory)
    web = Dp(cp, tmp_path, "web", WEB, f"port={free_port()}", f"app_port={free_port()}", f"echo_port={free_port()}",
             f"echo_app={free_port()}")
    dps.append(web)
    wait_until(web.ready, what="ready")
    assert httpx.get(f"http://127.0.0.1:{web.ready_port}/ready").text == "READY"
    stats = httpx.get(f"http://127.0.0.1:{web.ready_port}/stats/prometheus")
    assert stats.status_code == 200 and "meshway_worker_requests_total" in stats.text
