"""The Admin API calls of the reference walkthroughs, verbatim, and the bodies they show."""
from __future__ import annotations

import json
import subprocess

VOLATILE = {"id", "created_at", "updated_at"}
# Fields Kong 3.x added after the 2.0 walkthrough output; our snapshot contract carries them.
KONG3_SERVICE_FIELDS = {"ca_certificates", "enabled", "tls_verify", "tls_verify_depth"}
KONG3_ROUTE_FIELDS = {"request_buffering", "response_buffering"}

HYBRID_SERVICE = {  # kong-hybrid-mode.txt, `http :8001/services name=test host=httpbin.org`
    "client_certificate": None, "connect_timeout": 60000, "host": "httpbin.org", "name": "test", "path": None,
    "port": 80, "protocol": "http", "read_timeout": 60000, "retries": 5, "tags": None, "write_timeout": 60000,
}
HYBRID_ROUTE = {  # `http :8001/services/test/routes paths:='["/"]'`
    "destinations": None, "headers": None, "hosts": None, "https_redirect_status_code": 426, "methods": None,
    "name": None, "path_handling": "v0", "paths": ["/"], "preserve_host": False, "protocols": ["http", "https"],
    "regex_priority": 0, "snis": None, "sources": None, "strip_path": True, "tags": None,
}


def _shown(body: dict, extra: set[str]) -> dict:
    assert VOLATILE <= set(body)
    return {k: v for k, v in body.items() if k not in VOLATILE | extra}


def test_hybrid_walkthrough_service_and_route(api):
    r = api.post("/services", json={"name": "test", "host": "httpbin.org"})
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert "access-control-allow-origin" not in r.headers  # Kong 2.0 showed `*`; see README "Security"
    assert r.headers["server"].startswith("meshway/") and int(r.headers["x-meshway-admin-latency"]) >= 0
    service = r.json()
    assert set(service) == set(HYBRID_SERVICE) | VOLATILE | KONG3_SERVICE_FIELDS
    assert _shown(service, KONG3_SERVICE_FIELDS) == HYBRID_SERVICE
    assert isinstance(service["created_at"], int) and service["created_at"] == service["updated_at"]

    r = api.post("/services/test/routes", json={"paths": ["/"]})
    assert r.status_code == 201
    route = r.json()
    assert set(route) == set(HYBRID_ROUTE) | VOLATILE | KONG3_ROUTE_FIELDS | {"service"}
    assert route["service"] == {"id": service["id"]}
    assert _shown(route, KONG3_ROUTE_FIELDS | {"service"}) == HYBRID_ROUTE


def curl(*args: str) -> tuple[int, dict]:
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, _, code = out.stdout.rpartition("\n")
    return int(code), json.loads(body)


def test_streams_walkthrough_with_curl(admin):
    url = admin.url
    code, svc = curl("-X", "PUT", "-d", "url=tcp://127.0.0.5:19000", f"{url}/services/service-b-tcp")
    assert code == 200
    assert (svc["name"], svc["protocol"], svc["host"], svc["port"], svc["path"]) == ("service-b-tcp", "tcp", "127.0.0.5", 19000, None)
    code, route = curl("-X", "POST", "-d", "name=service-b-tcp", "-d", "protocols=tcp", "-d", "destinations[1].ip=127.0.0.5",
                       "-d", "destinations[1].port=19000", f"{url}/services/service-b-tcp/routes")
    assert code == 201
    assert (route["name"], route["protocols"], route["service"]) == ("service-b-tcp", ["tcp"], {"id": svc["id"]})
    assert route["destinations"] == [{"ip": "127.0.0.5", "port": 19000}] and route["paths"] is None

    code, svc = curl("-X", "PUT", "-d", "url=tls://127.0.0.5:19443", f"{url}/services/service-b-tls")
    assert (code, svc["protocol"], svc["port"]) == (200, "tls", 19443)
    code, route = curl("-X", "POST", "-d", "name=service-b-tls", "-d", "protocols=tls", "-d", "destinations[1].ip=127.0.0.5",
                       "-d", "destinations[1].port=19443", f"{url}/services/service-b-tls/routes")
    assert (code, route["protocols"], route["destinations"]) == (201, ["tls"], [{"ip": "127.0.0.5", "port": 19443}])


def test_streams_walkthrough_http_and_https_with_curl(admin):
    url = admin.url
    code, svc = curl("-X", "PUT", "-d", "url=http://127.0.0.5:18000", f"{url}/services/service-b-http")
    assert (code, svc["protocol"], svc["host"], svc["port"], svc["path"]) == (200, "http", "127.0.0.5", 18000, None)
    code, route = curl("-X", "POST", "-d", "name=service-b-http", "-d", "protocols=http", "-d", "hosts=127.0.0.5",
                       f"{url}/services/service-b-http/routes")
    assert (code, route["protocols"], route["hosts"], route["strip_path"]) == (201, ["http"], ["127.0.0.5"], True)

    code, svc = curl("-X", "PUT", "-d", "url=https://127.0.0.5:18443/", f"{url}/services/service-b-https")
    assert (code, svc["protocol"], svc["port"], svc["path"]) == (200, "https", 18443, "/")
    code, route = curl("-X", "POST", "-d", "name=service-b-https", "-d", "protocols=https", "-d", "hosts=127.0.0.5",
                       f"{url}/services/service-b-https/routes")
    assert (code, route["protocols"], route["service"]) == (201, ["https"], {"id": svc["id"]})


def test_put_again_replaces_and_keeps_the_id(admin):
    url = admin.url
    _, first = curl("-X", "PUT", "-d", "url=tcp://127.0.0.5:19000", f"{url}/services/service-again")
    code, second = curl("-X", "PUT", "-d", "url=tcp://127.0.0.5:19001", f"{url}/services/service-again")
    assert (code, second["id"], second["port"]) == (200, first["id"], 19001)
