"""Bundled plugins through a real standalone proxy worker: what an HTTP client and the origin see."""
from __future__ import annotations

import base64
import json
import time

import httpx
import jwt as pyjwt
import pytest
from proxy_for_test import Origin, WorkerProcess, plugin_for_test, route_for_test, service_for_test, snapshot_for_test
from receiver_for_test import ReceiverForTest

from meshway.plugins.bundled._crypto import hash_password

ALICE = {"id": "11111111-0000-0000-0000-000000000001", "username": "alice", "custom_id": "A-1", "tags": None}
BOB = {"id": "11111111-0000-0000-0000-000000000002", "username": "bob", "custom_id": None, "tags": None}
JWT_SECRET = "jwt-secret-" * 4

def _cred(consumer, **kw):
    return {"id": f"cred-{consumer['username']}-{len(kw)}", "consumer": {"id": consumer["id"]}, "tags": None, **kw}


KEY_ALICE = _cred(ALICE, key="alice-key", ttl=None)
KEY_BOB = _cred(BOB, key="bob-key", ttl=None)


def _snapshot(origin, log_path, receiver):
    svc = service_for_test(port=origin.port, name="echo")
    routes, plugins = {}, [plugin_for_test("correlation-id", {"echo_downstream": True})]

    def route(name, *route_plugins):
        routes[name] = route_for_test(svc, name=name, paths=[f"/{name}"])
        plugins.extend(plugin_for_test(n, c, route=routes[name]) for n, c in route_plugins)

    route("key", ("key-auth", {"hide_credentials": True}), ("acl", {"allow": ["admins"]}))
    route("basic", ("basic-auth", {}))
    route("jwt", ("jwt", {}))
    route("limited", ("rate-limiting", {"minute": 2, "limit_by": "ip"}))
    route("cors", ("cors", {"origins": ["http://ok.test"], "max_age": 60}))
    route("transform", ("request-transformer", {"add": {"headers": ["x-added:$(query_params.q)"]},
                                                "rename": {"querystring": ["q:query"]}}),
          ("response-transformer", {"remove": {"headers": ["x-origin"]}, "add": {"json": ["added:true"], "json_types": ["boolean"]}}))
    route("body", ("request-transformer", {"add": {"body": ["added:yes"]}, "remove": {"body": ["secret"]}}),
          ("key-auth", {"key_in_body": True, "key_in_header": False, "key_in_query": False, "hide_credentials": True}))
    route("terminate", ("request-termination", {"status_code": 418, "message": "no tea"}))
    route("blocked", ("ip-restriction", {"deny": ["127.0.0.0/8"]}))
    route("size", ("request-size-limiting", {"allowed_payload_size": 10, "size_unit": "bytes"}))
    route("logged", ("file-log", {"path": str(log_path)}), ("http-log", {"http_endpoint": receiver.url + "/logs"}))
    return snapshot_for_test(
        services=[svc], routes=list(routes.values()), plugins=plugins, consumers=[ALICE, BOB],
        keyauth_credentials=[KEY_ALICE, KEY_BOB],
        basicauth_credentials=[_cred(ALICE, username="alice", password=hash_password("open sesame", "s4lt", 1000))],
        jwt_secrets=[_cred(ALICE, key="alice-iss", secret=JWT_SECRET, rsa_public_key=None, algorithm="HS256")],
        acls=[{"id": "acl-1", "consumer": {"id": ALICE["id"]}, "group": "admins", "tags": None}],
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    origin, receiver = Origin(), ReceiverForTest()
    prefix = tmp_path_factory.mktemp("gw")
    log_path = prefix / "requests.log"
    worker = WorkerProcess(_snapshot(origin, log_path, receiver), prefix)
    with httpx.Client(base_url=worker.url, timeout=5) as client:
        yield client, log_path, receiver
    worker.stop()
    origin.close()
    receiver.close()


def upstream_headers(response):
    return {k.lower(): v for k, v in response.json()["headers"]}


def test_key_auth_and_acl(gateway):
    client, _, _ = gateway
    missing = client.get("/key")
    assert missing.status_code == 401 and missing.json() == {"message": "No API key found in request"}
    assert missing.headers["www-authenticate"] == 'Key realm="kong"'
    assert client.get("/key", headers={"apikey": "wrong"}).json() == {"message": "Invalid authentication credentials"}
    bob = client.get("/key", headers={"apikey": "bob-key"})
    assert bob.status_code == 403 and bob.json() == {"message": "You cannot consume this service"}
    ok = client.get("/key", params={"apikey": "alice-key"})
    seen = upstream_headers(ok)
    assert ok.status_code == 200 and "apikey=" not in ok.json()["url"]
    assert seen["x-consumer-username"] == "alice" and seen["x-consumer-custom-id"] == "A-1"
    assert seen["x-consumer-groups"] == "admins"


def test_key_auth_credential_identifier_is_the_credential_id_not_the_key(gateway):
    client, _, _ = gateway
    seen = upstream_headers(client.get("/key", headers={"apikey": "alice-key"}))
    assert seen["x-credential-identifier"] == KEY_ALICE["id"]


def test_basic_auth(gateway):
    client, _, _ = gateway
    denied = client.get("/basic", auth=("alice", "wrong"))
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == 'Basic realm="service"'
    ok = client.get("/basic", auth=("alice", "open sesame"))
    assert ok.status_code == 200
    assert upstream_headers(ok)["x-credential-identifier"] == "alice"


def test_jwt(gateway):
    client, _, _ = gateway
    assert client.get("/jwt").json() == {"message": "Unauthorized"}
    token = pyjwt.encode({"iss": "alice-iss"}, JWT_SECRET, algorithm="HS256")
    ok = client.get("/jwt", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and upstream_headers(ok)["x-consumer-username"] == "alice"


def test_rate_limiting(gateway):
    client, _, _ = gateway
    first, second, third = (client.get("/limited") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-remaining-minute"] == "1" and first.headers["ratelimit-limit"] == "2"
    assert third.json() == {"message": "API rate limit exceeded"} and int(third.headers["retry-after"]) >= 1


def test_cors(gateway):
    client, _, _ = gateway
    pre = client.options("/cors", headers={"Origin": "http://ok.test", "Access-Control-Request-Method": "PUT"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://ok.test"
    assert pre.headers["access-control-max-age"] == "60"
    actual = client.get("/cors", headers={"Origin": "http://ok.test"})
    assert actual.headers["access-control-allow-origin"] == "http://ok.test" and "Origin" in actual.headers["vary"]
    assert "access-control-allow-origin" not in client.get("/cors", headers={"Origin": "http://evil.test"}).headers


def test_request_and_response_transformer(gateway):
    client, _, _ = gateway
    r = client.get("/transform", params={"q": "cats"})
    body = r.json()
    assert {k.lower(): v for k, v in body["headers"]}["x-added"] == "cats"
    assert body["url"].endswith("?query=cats")
    assert body["added"] is True and "x-origin" not in r.headers


def test_request_termination_and_ip_restriction(gateway):
    client, _, _ = gateway
    r = client.get("/terminate")
    assert (r.status_code, r.json()) == (418, {"message": "no tea"})
    r = client.get("/blocked")
    assert (r.status_code, r.json()) == (403, {"message": "Your IP address is not allowed"})


def test_request_size_limiting(gateway):
    client, _, _ = gateway
    assert client.post("/size", content=b"x" * 11).status_code == 413
    assert client.post("/size", content=b"x" * 10).status_code == 200


def test_correlation_id_echoed_and_sent_upstream(gateway):
    client, _, _ = gateway
    r = client.get("/transform")
    assert r.headers["kong-request-id"] == {k.lower(): v for k, v in r.json()["headers"]}["kong-request-id"]
    assert client.get("/transform", headers={"Kong-Request-ID": "mine"}).headers["kong-request-id"] == "mine"


def test_file_log_and_http_log(gateway):
    client, log_path, receiver = gateway
    assert client.get("/logged/item", params={"n": "1"}).status_code == 200
    entries = receiver.wait_for(1)
    assert entries[0]["body"]["request"]["uri"] == "/logged/item?n=1"
    assert entries[0]["body"]["response"]["status"] == 200
    deadline = time.monotonic() + 5
    while not (log_path.exists() and log_path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    line = json.loads(log_path.read_text().splitlines()[0])
    assert line["request"]["uri"] == "/logged/item?n=1" and line["route"]["name"] == "logged"


def test_request_size_limiting_chunked_body(gateway):
    client, _, _ = gateway
    too_big = client.post("/size", content=iter([b"x" * 6, b"y" * 6]))  # no Content-Length: chunked
    assert too_big.status_code == 413 and too_big.json() == {"message": "Request size limit exceeded"}
    assert client.post("/size", content=iter([b"x" * 4, b"y" * 4])).status_code == 200


def test_body_edits_and_key_in_body(gateway):
    client, _, _ = gateway
    r = client.post("/body", json={"apikey": "alice-key", "secret": "s", "keep": 1})
    assert r.status_code == 200
    assert json.loads(r.json()["body"]) == {"keep": 1, "added": "yes"}
