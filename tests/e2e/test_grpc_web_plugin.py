"""grpc-web end to end: gRPC-Web clients (httpx and curl, HTTP/1.1 and HTTP/2) through a real node
to a real grpcio server, in every content type Kong's plugin takes, errors and trailers included."""
from __future__ import annotations

import base64
import json
import struct
import subprocess

import httpx
import pytest

from tests.e2e.grpc_origin_for_test import PROTO, GreeterOrigin, greeter_pb2_for_test

SAY_HELLO = "/meshtest.Greeter/SayHello"


def web_frame_for_test(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def web_frames_for_test(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """The messages and the trailers of a gRPC-Web response body (which must be whole)."""
    messages, trailers = [], {}
    while body:
        flag, length = struct.unpack(">BI", body[:5])
        payload, body = body[5:5 + length], body[5 + length:]
        assert len(payload) == length, "truncated frame"
        if flag & 0x80:
            assert not body, "bytes after the trailer frame"
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    trailers[name] = value
        else:
            messages.append(payload)
    return messages, trailers


def b64_stream_for_test(text: bytes) -> bytes:
    """gRPC-Web-text: base64 segments, each possibly padded, one after the other."""
    out, rest = b"", text.strip()
    while rest:
        end = rest.find(b"=") + 1
        while end and end < len(rest) and rest[end:end + 1] == b"=":
            end += 1
        segment, rest = (rest[:end], rest[end:]) if end else (rest, b"")
        out += base64.b64decode(segment)
    return out


@pytest.fixture(scope="module")
def pb2(tmp_path_factory):
    return greeter_pb2_for_test(tmp_path_factory.mktemp("pb2"))


@pytest.fixture
def origin(pb2):
    server = GreeterOrigin(pb2)
    yield server
    server.close()


def _setup(node, origin) -> httpx.Client:
    admin = httpx.Client(base_url=node.admin)
    r = admin.post("/services", json={"name": "greeter", "protocol": "grpc", "host": "127.0.0.1", "port": origin.port})
    assert r.status_code == 201, r.text
    r = admin.post("/services/greeter/routes", json={"name": "web", "paths": ["/"], "protocols": ["http", "https"]})
    assert r.status_code == 201, r.text
    r = admin.post("/routes/web/plugins", json={"name": "grpc-web", "config": {"proto": str(PROTO)}})
    assert r.status_code == 201, r.text
    return admin


def test_grpc_web_binary_text_and_json_over_http1_and_http2(node_factory, origin, pb2):
    node = node_factory(workers="2")
    node.start()
    admin = _setup(node, origin)
    assert "grpc-web" in admin.get("/").json()["plugins"]["available_on_server"]
    hello = pb2.HelloRequest(name="web", boolean_test=True).SerializeToString()
    with httpx.Client(base_url=node.proxy) as h1, httpx.Client(base_url=node.proxy_ssl, http2=True, verify=False) as h2:
        for client, version in ((h1, "HTTP/1.1"), (h2, "HTTP/2")):
            r = client.post(SAY_HELLO, content=web_frame_for_test(hello),
                            headers={"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"})
            assert (r.status_code, r.http_version) == (200, version), r.text
            assert r.headers["content-type"] == "application/grpc-web+proto"
            assert r.headers["access-control-allow-origin"] == "*"
            messages, trailers = web_frames_for_test(r.content)
            assert [pb2.HelloReply.FromString(m) for m in messages] == [pb2.HelloReply(reply="hello web", boolean_test=True)]
            assert trailers["grpc-status"] == "0" and trailers["x-served-by"] == "greeter", trailers
            assert "grpc-status" not in r.headers  # in the body, as gRPC-Web carries trailers
        seen = origin.seen[-1]
        assert seen["x-grpc-web"] == "1"  # the client's headers go on as metadata (grpcio hides content-type)

        # -text (base64), a server stream of three messages.
        count = pb2.HelloRequest(name="n", times=3).SerializeToString()
        r = h1.post("/meshtest.Greeter/Count", content=base64.b64encode(web_frame_for_test(count)),
                    headers={"Content-Type": "application/grpc-web-text"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/grpc-web-text", r.text
        messages, trailers = web_frames_for_test(b64_stream_for_test(r.content))
        assert [pb2.HelloReply.FromString(m).reply for m in messages] == ["n 0", "n 1", "n 2"]
        assert trailers["grpc-status"] == "0"

        # +json: JSON messages both ways, transcoded with the proto file.
        r = h2.post(SAY_HELLO, content=web_frame_for_test(b'{"name": "json"}'),
                    headers={"Content-Type": "application/grpc-web+json"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/grpc-web+json", r.text
        messages, trailers = web_frames_for_test(r.content)
        assert [json.loads(m) for m in messages] == [{"reply": "hello json", "boolean_test": False}]
        assert trailers["grpc-status"] == "0"

        # A malformed body over HTTP/2: the same 400, told the gRPC way too (grpc-status 3, the text).
        r = h2.post(SAY_HELLO, content=web_frame_for_test(hello)[:-2], headers={"Content-Type": "application/grpc-web"})
        assert (r.status_code, r.headers["grpc-status"]) == (400, "3"), r.headers
        assert r.headers["grpc-message"].startswith("malformed gRPC-Web body")

        # plain application/json: one bare JSON message each way, no frames.
        r = h1.post(SAY_HELLO, json={"name": "bare"})
        assert (r.status_code, r.json()) == (200, {"reply": "hello bare", "boolean_test": False}), r.text


def test_grpc_web_errors_preflight_and_bad_config(node_factory, origin, pb2):
    node = node_factory()
    node.start()
    admin = _setup(node, origin)
    hello = web_frame_for_test(pb2.HelloRequest(name="ghost").SerializeToString())
    web = {"Content-Type": "application/grpc-web+proto"}
    with httpx.Client(base_url=node.proxy) as client:
        # The service's error status is in the trailer frame, after no message.
        r = client.post("/meshtest.Greeter/Fail", content=hello, headers=web)
        assert r.status_code == 200, r.text
        messages, trailers = web_frames_for_test(r.content)
        assert messages == [] and trailers["grpc-status"] == "5"
        assert trailers["grpc-message"] == "no such name: ghost"
        # A method the service does not have: UNIMPLEMENTED, from the service itself.
        r = client.post("/meshtest.Greeter/Nope", content=hello, headers=web)
        assert web_frames_for_test(r.content)[1]["grpc-status"] == "12"

        # Malformed bodies are the plugin's 400s; nothing reaches the service.
        served = len(origin.seen)
        for body, headers, why in (
                (hello[:-2], web, "malformed gRPC-Web body"),
                (b"\x07" + hello[1:], web, "malformed gRPC-Web body"),
                (b"!!not base64!!", {"Content-Type": "application/grpc-web-text"}, "invalid base64"),
                (web_frame_for_test(b"{broken"), {"Content-Type": "application/grpc-web+json"}, "decode json err"),
                (web_frame_for_test(b'{"name": 5}'), {"Content-Type": "application/grpc-web+json"},
                 "failed to encode payload"),
                (hello, {"Content-Type": "text/plain"}, "unsupported Content-Type")):
            r = client.post(SAY_HELLO, content=body, headers=headers)
            assert r.status_code == 400 and why in r.text, (why, r.text)  # Kong's error text as the body
        r = client.post("/meshtest.Greeter/Nope", content=web_frame_for_test(b"{}"),
                        headers={"Content-Type": "application/grpc-web+json"})
        assert (r.status_code, r.text) == (400, 'Unknown path "/meshtest.Greeter/Nope"')
        assert len(origin.seen) == served

        # CORS preflight, answered by the plugin with allow_origin_header.
        plugin = admin.get("/routes/web/plugins").json()["data"][0]
        r = admin.patch(f"/plugins/{plugin['id']}", json={"config": {"allow_origin_header": "https://app.example"}})
        assert r.status_code == 200, r.text
        for _ in range(50):
            r = client.options(SAY_HELLO)
            if r.headers.get("access-control-allow-origin") == "https://app.example":
                break
        assert (r.status_code, r.text) == (200, "OK")
        assert r.headers["access-control-allow-methods"] == "POST"
        assert r.headers["access-control-allow-headers"] == "content-type,x-grpc-web,x-user-agent"

        # A missing or broken proto file: 400 naming config.proto; the running config stays.
        for proto in ("/nonexistent/greeter.proto", str(PROTO.parent / "greeter_broken_for_test.proto")):
            if "broken" in proto:
                (PROTO.parent / "greeter_broken_for_test.proto").write_text("syntax = 'proto3'; message {")
            try:
                r = admin.patch(f"/plugins/{plugin['id']}", json={"config": {"proto": proto}})
            finally:
                (PROTO.parent / "greeter_broken_for_test.proto").unlink(missing_ok=True)
            assert r.status_code == 400, r.text
            assert "proto" in r.json()["fields"]["config"], r.text
        r = client.post(SAY_HELLO, json={"name": "still"})
        assert r.json() == {"reply": "hello still", "boolean_test": False}


def test_grpc_web_with_curl_and_pass_stripped_path_from_a_declarative_file(node_factory, origin, pb2, tmp_path):
    config = tmp_path / "meshway.yml"
    config.write_text(json.dumps({"_format_version": "3.0", "services": [{
        "name": "greeter", "protocol": "grpc", "host": "127.0.0.1", "port": origin.port,
        "routes": [{"name": "stripped", "paths": ["/rpc"], "protocols": ["http"],
                    "plugins": [{"name": "grpc-web", "config": {"pass_stripped_path": True}}]},
                   {"name": "full", "paths": ["/full"], "protocols": ["http"],
                    "plugins": [{"name": "grpc-web"}]}]}]}))
    node = node_factory(database="off", declarative_config=str(config))
    node.start()
    body = tmp_path / "hello.bin"
    body.write_bytes(web_frame_for_test(pb2.HelloRequest(name="curl").SerializeToString()))
    out = tmp_path / "out.bin"
    for prefix, status in (("/rpc", "0"), ("/full", "12")):
        done = subprocess.run(["curl", "-sS", "--http1.1", "-o", str(out), "-w", "%{http_code} %{content_type}",
                               "-H", "Content-Type: application/grpc-web", "--data-binary", f"@{body}",
                               f"{node.proxy}{prefix}{SAY_HELLO}"], capture_output=True, text=True, timeout=30)
        assert done.stdout == "200 application/grpc-web", done.stdout + done.stderr
        messages, trailers = web_frames_for_test(out.read_bytes())
        assert trailers["grpc-status"] == status, (prefix, trailers)
        if status == "0":  # the stripped path is the method's; the full one is not a method of the service
            assert pb2.HelloReply.FromString(messages[0]).reply == "hello curl"
    # A body curl sends with `Expect: 100-continue`: the proxy's business, not sent on to the service.
    body.write_bytes(web_frame_for_test(pb2.HelloRequest(name="x" * 2048).SerializeToString()))
    done = subprocess.run(["curl", "-sS", "--http1.1", "-o", str(out), "-w", "%{http_code}", "-H", "Expect: 100-continue",
                           "-H", "Content-Type: application/grpc-web", "--data-binary", f"@{body}",
                           f"{node.proxy}/rpc{SAY_HELLO}"], capture_output=True, text=True, timeout=30)
    assert done.stdout == "200" and web_frames_for_test(out.read_bytes())[1]["grpc-status"] == "0", done.stderr
    assert "expect" not in origin.seen[-1], origin.seen[-1]
