"""grpc-gateway end to end: REST/JSON clients (httpx over HTTP/1.1 and HTTP/2, curl) through a real
node to a real grpcio server, mapped by the google.api.http rules of the proto file (Kong's spec cases)."""
from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.e2e.grpc_origin_for_test import PROTO, GreeterOrigin, greeter_pb2_for_test


@pytest.fixture(scope="module")
def pb2(tmp_path_factory):
    return greeter_pb2_for_test(tmp_path_factory.mktemp("pb2"))


@pytest.fixture
def origin(pb2):
    server = GreeterOrigin(pb2)
    yield server
    server.close()


def _gateway_config(origin, proto: str) -> dict:
    return {"_format_version": "3.0", "services": [{
        "name": "greeter", "protocol": "grpc", "host": "127.0.0.1", "port": origin.port,
        "routes": [{"name": "rest", "paths": ["/"], "protocols": ["http", "https"],
                    "plugins": [{"name": "grpc-gateway", "config": {"proto": proto}}]}]}]}


def test_rest_calls_mapped_by_the_proto_rules(node_factory, origin):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "greeter", "protocol": "grpc", "host": "127.0.0.1",
                                         "port": origin.port}).status_code == 201
    assert admin.post("/services/greeter/routes", json={"name": "rest", "paths": ["/"]}).status_code == 201
    r = admin.post("/routes/rest/plugins", json={"name": "grpc-gateway", "config": {"proto": "/nowhere/x.proto"}})
    assert r.status_code == 400 and "proto" in r.json()["fields"]["config"], r.text
    r = admin.post("/routes/rest/plugins", json={"name": "grpc-gateway", "config": {"proto": str(PROTO)}})
    assert r.status_code == 201, r.text
    assert "grpc-gateway" in admin.get("/").json()["plugins"]["available_on_server"]
    with httpx.Client(base_url=node.proxy) as client:
        r = client.get("/v1/messages/john_doe")
        assert (r.status_code, r.json()) == (200, {"reply": "hello john_doe", "boolean_test": False}), r.text
        assert r.headers["content-type"] == "application/json" and r.headers["access-control-allow-origin"] == "*"
        assert client.get("/v1/messages/legacy/john/doe").json()["reply"] == "hello john/doe"  # {name=**}
        assert client.get("/v1/messages/john%20doe?arg1=1&arg2.test=2").json() == {
            "reply": "hello john doe", "boolean_test": False}  # unbound query args dropped, the variable decoded
        for value, expected in (("true", True), ("false", False), ("0", False), ("1", True)):
            r = client.get(f"/v1/messages/legacy/john_doe?boolean_test={value}")
            assert r.json() == {"reply": "hello john_doe", "boolean_test": expected}, value

        # Structured query parameters fill nested messages.
        r = client.get("/v1/grow/tail", params={"name": "lizard", "hands.count": 0, "hands.endings": "fingers",
                                                "legs.count": 4, "legs.endings": "toes", "tail.count": 0,
                                                "tail.endings": "tip"})
        assert r.json() == {"name": "lizard", "hands": {"count": 0, "endings": "fingers"},
                            "legs": {"count": 4, "endings": "toes"}, "tail": {"count": 1, "endings": "tip"}}, r.text

        # body "*" and body "field"; an empty repeated field is [] (Kong's #10801).
        r = client.post("/v1/echo", json={"array": [], "nullable": "ahaha"})
        assert r.status_code == 200 and r.json() == {"array": [], "nullable": "ahaha"} and '"array":[]' in r.text
        r = client.patch("/v1/users/u1", json={"email": "u1@example.test"})
        assert r.json() == {"user": {"id": "u1", "email": "u1@example.test"}, "notify": False}, r.text

        # A server stream: the messages one after the other.
        r = client.get("/v1/count/n?times=2")
        decoder, text, got = json.JSONDecoder(), r.text, []
        while text:
            doc, end = decoder.raw_decode(text)
            got.append(doc["reply"])
            text = text[end:]
        assert got == ["n 0", "n 1"]

        # The service's status, by Kong's table, with grpc-status passed on.
        r = client.get("/v1/unknown/john_doe")
        assert (r.status_code, r.headers["grpc-status"]) == (500, "12")
        r = client.get("/v1/fail/ghost")
        assert (r.status_code, r.headers["grpc-status"], r.headers["grpc-message"]) == (404, "5", "no such name: ghost")

        # The plugin's own 400s, Kong's texts; nothing reaches the service.
        served = len(origin.seen)
        for method, path, body, expected in (
                ("GET", "/v1/messages/john_doe/bai", None, 'failed to transcode .proto file Unknown path "/v1/messages/john_doe/bai"'),
                ("PUT", "/v1/messages/john_doe", None, 'failed to transcode .proto file Unknown method "put"'),
                ("POST", "/v1/echo", b'{"nullable":"invalid}', "decode json err: "),
                ("POST", "/v1/echo", b'{"nullable": 1}', "failed to encode payload"),
                ("POST", "/v1/echo", b'[1, 2]', "body must be a table")):
            r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and r.text.startswith(expected), (path, r.text)
        assert len(origin.seen) == served

        r = client.options("/v1/echo")
        assert (r.status_code, r.text, r.headers["access-control-allow-methods"]) == (200, "OK", "GET,POST,PATCH,DELETE")

    with httpx.Client(base_url=node.proxy_ssl, http2=True, verify=False) as h2:
        r = h2.post("/v1/echo", json={"array": ["a", "b"]})
        assert (r.http_version, r.status_code, r.json()) == ("HTTP/2", 200, {"array": ["a", "b"], "nullable": ""})
        r = h2.get("/v1/fail/ghost")
        assert (r.status_code, r.headers["grpc-status"]) == (404, "5")


def test_declarative_file_and_a_bad_proto_keeps_the_running_config(node_factory, origin, tmp_path):
    config = tmp_path / "meshway.yml"
    config.write_text(json.dumps(_gateway_config(origin, str(PROTO))))
    node = node_factory(database="off", declarative_config=str(config))
    node.start()
    done = subprocess.run(["curl", "-sS", "--http1.1", "-w", " %{http_code}", f"{node.proxy}/v1/messages/curl"],
                          capture_output=True, text=True, timeout=30)
    assert done.stdout == '{"reply":"hello curl","boolean_test":false} 200', done.stdout + done.stderr
    broken = tmp_path / "broken.proto"
    broken.write_text('syntax = "proto3"; service S { rpc M(Nope) returns (Nope); }')
    admin = httpx.Client(base_url=node.admin)
    for proto in (str(tmp_path / "missing.proto"), str(broken)):
        r = admin.post("/config", json=_gateway_config(origin, proto))
        assert r.status_code == 400, r.text
        assert "services[0].routes[0].plugins[0].config.proto" in r.json()["fields"], r.text
    assert httpx.get(f"{node.proxy}/v1/messages/still").json() == {"reply": "hello still", "boolean_test": False}
