"""`protocol = "http"` across zones (the document's global_defaults.hcl): web's sidecar in onprem
calls api in cloud over its HTTP path, still through both mesh gateways with Consul's SNI and
api's identity checked after the handshake. Per request: web's sidecar logs the request and the
identity that answered, api's sidecar (an HTTP inbound) logs it with web's identity; a denying
intention is answered 403, an imposter 502."""
from __future__ import annotations

import shutil
import signal
import sys

import httpx

from tests.helpers.node import free_port
from tests.integration.zones.test_cross_zone_calls import (ALLOW_ALL, API, DATA, MTLS_ON, WEB, last_line, wait_for,
                                                           zones)  # noqa: F401 (the fixture)

HTTP_API = API.replace("kuma.io/service: api", "kuma.io/service: api\n      kuma.io/protocol: http")


def served(tmp_path, name: str, text: str) -> tuple[int, list[str]]:
    root = tmp_path / f"{name}-root"
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "hello.txt").write_text(text)
    port = free_port()
    return port, [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]


def test_an_http_service_in_the_other_zone_is_called_over_the_http_path(zones, tmp_path):
    onprem, cloud = zones
    for zone in (onprem, cloud):
        zone.apply(MTLS_ON)
        zone.apply(ALLOW_ALL)
    # a denying intention, written at the primary before api's data plane starts (a connection keeps
    # the verdict it got when it arrived, and web's sidecar keeps its connections alive)
    deny = 'Kind = "service-intentions"\nName = "api"\nSources = [\n  {\n    Name   = "web"\n    Action = "deny"\n  }\n]\n'
    assert onprem.meshway("config", "write", "-", stdin=deny).returncode == 0
    wait_for(lambda: cloud.meshway("config", "read", "-kind", "service-intentions", "-name", "api").returncode == 0,
             what="the intention reaches cloud")
    onprem.gateway(free_port(), free_port())
    cloud.gateway(free_port(), free_port())
    api_port, (api_app, api_cmd) = free_port(), served(tmp_path, "api", "hello from api in cloud\n")
    api_ready = cloud.dataplane("api", HTTP_API.format(port=api_port, app_port=api_app), api_cmd)
    web_port, web_app, api_out = free_port(), free_port(), free_port()
    web_ready = onprem.dataplane("web", WEB.format(port=web_port, app_port=web_app, api_out=api_out),
                                 [sys.executable, "-m", "http.server", str(web_app), "--bind", "127.0.0.1"])
    for ready in (api_ready, web_ready):
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{ready}/ready").status_code == 200, what="data planes ready")
    for name in ("global_defaults.hcl", "api_resolver.hcl"):  # protocol = "http", mode local; redirect to cloud
        shutil.copy(DATA / name, tmp_path / name)
        assert onprem.meshway("config", "write", name, cwd=tmp_path).returncode == 0

    # enforced by api's sidecar in cloud: web gets an HTTP answer, not a reset (api's HTTP inbound
    # answers 403, as Envoy's RBAC filter does)
    url = f"http://127.0.0.1:{api_out}/v1/hello.txt"
    line = wait_for(lambda: httpx.get(url, timeout=5).status_code == 403
                    and last_line(cloud.log("api-work/logs/access.log"), "close=mesh_denied"),
                    what="api's sidecar refuses web with a 403")
    assert 'error="service-intentions api Sources[0]: deny"' in line and "sni=api.default.cloud.internal" in line, line
    assert onprem.meshway("config", "delete", "-kind", "service-intentions", "-name", "api").returncode == 0
    wait_for(lambda: httpx.get(url, timeout=5).status_code == 200, what="web reaches api")
    with httpx.Client(timeout=5) as client:  # one connection, several requests: each one logged
        answers = [client.get(f"{url}?n={n}") for n in range(3)]
    assert [a.text for a in answers] == ["hello from api in cloud\n"] * 3
    # web's sidecar took the HTTP path: a line per request, with the identity that answered
    # (api's sidecar's: web's sidecar's only target is onprem's gateway, which routes the TLS on
    # its SNI; the gateways' stream lines come when the kept-alive connection closes)
    for n in range(3):
        line = wait_for(lambda: last_line(onprem.log("web-work/logs/access.log"), f"GET /v1/hello.txt?n={n} HTTP/1.1"),
                        what=f"web's sidecar logged request {n}")
        assert '" 200 ' in line and "mtls=yes peer=spiffe://meshway/" in line, line
    # api's sidecar served its HTTP inbound: the request, with the caller's (web's sidecar's) identity
    line = wait_for(lambda: last_line(cloud.log("api-work/logs/access.log"), "GET /v1/hello.txt?n=2 HTTP/1.1"),
                    what="api's sidecar logged the request")
    assert '" 200 ' in line and "mtls=yes peer=spiffe://meshway/node/" in line, line
    # an answer the app does not have is the app's 404, passed through as HTTP
    assert httpx.get(f"http://127.0.0.1:{api_out}/missing", timeout=5).status_code == 404

    # the identity is checked after the handshake on the HTTP path too: an instance of api that
    # answers with billing's certificate is refused with a 502 and the reason in web's error log
    billing_port, (billing_app, billing_cmd) = free_port(), served(tmp_path, "billing", "billing\n")
    billing = HTTP_API.replace("name: api", "name: billing").replace("kuma.io/service: api", "kuma.io/service: billing")
    billing_ready = cloud.dataplane("billing", billing.format(port=billing_port, app_port=billing_app), billing_cmd)
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{billing_ready}/ready").status_code == 200, what="billing ready")
    cloud.procs[1].send_signal(signal.SIGTERM)  # api's data plane leaves (deregistered)...
    cloud.procs[1].wait(20)
    cloud.apply(HTTP_API.replace("name: api", "name: api-imposter").format(port=billing_port, app_port=billing_app))
    reason = "the peer is not spiffe://meshway/mesh/default/service/api"
    answer = wait_for(lambda: (r := httpx.get(url, timeout=5)).status_code == 502
                      and reason in onprem.log("web-work/logs/error.log") and r, what="the imposter refused")
    assert "billing" not in answer.text
