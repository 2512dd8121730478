"""grpc-web and grpc-gateway without a socket: Kong's schemas, gRPC-Web framing and base64, and the
google.api.http rules of tests/data/grpc/greeter.proto (compiled by protoc) matched and filled."""
from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled._grpc_frames import split_frames
from meshway.plugins.bundled._grpc_gateway_rules import GatewayError, compile_rules, match, payload_for
from meshway.plugins.bundled._grpc_proto import ProtoError, load_proto
from meshway.plugins.bundled._grpc_web_codec import BadRequest, codec_for

PROTO = str(Path(__file__).resolve().parents[2] / "data" / "grpc" / "greeter.proto")


def frame_for_test(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


@pytest.fixture(scope="module")
def proto():
    return load_proto(PROTO)


def test_defaults_are_kongs():
    assert validate_plugin_config("grpc-web", {}) == {"proto": None, "pass_stripped_path": None,
                                                      "allow_origin_header": "*"}
    assert validate_plugin_config("grpc-gateway", {}) == {"proto": None}


@pytest.mark.parametrize("name", ["grpc-web", "grpc-gateway"])
def test_a_missing_or_broken_proto_names_config_proto(name, tmp_path):
    broken = tmp_path / "broken.proto"
    broken.write_text('syntax = "proto3";\nmessage M { strin x = 1; }\n')
    for path, why in ((str(tmp_path / "none.proto"), "No such file"), (str(broken), "broken.proto:2")):
        with pytest.raises(PluginConfigError) as e:
            validate_plugin_config(name, {"proto": path})
        assert why in e.value.fields["config"]["proto"], e.value.fields


def test_the_proto_is_compiled_once_per_file_version(proto, tmp_path):
    assert load_proto(PROTO) is proto
    assert sorted(proto.methods)[:2] == ["/meshtest.Greeter/Count", "/meshtest.Greeter/Echo"]
    copy = tmp_path / "g.proto"
    copy.write_text(Path(PROTO).read_text())
    first = load_proto(str(copy))
    copy.write_text(Path(PROTO).read_text() + "\nmessage Extra {}\n")
    assert load_proto(str(copy)) is not first
    with pytest.raises(ProtoError):
        load_proto(str(tmp_path / "gone.proto"))


def test_web_text_json_both_ways(proto):
    codec = codec_for("application/grpc-web-text+json; charset=utf-8", "/meshtest.Greeter/SayHello", proto)
    body = codec.upstream(base64.b64encode(frame_for_test(b'{"name": "x", "boolean_test": true}')))
    frames, rest = split_frames(body)
    hello = proto.methods["/meshtest.Greeter/SayHello"]
    assert rest == b"" and hello.input.FromString(frames[0][1]) == hello.input(name="x", boolean_test=True)
    reply = frame_for_test(hello.output(reply="hi").SerializeToString())
    out = codec.downstream(reply[:3]) + codec.downstream(reply[3:])  # a frame split across chunks
    out += codec.end([(b"Grpc-Status", b"0")])
    decoded = b"".join(base64.b64decode(out[i:i + 4]) for i in range(0, len(out), 4))
    frames, rest = split_frames(decoded)
    assert json.loads(frames[0][1]) == {"reply": "hi", "boolean_test": False}
    assert frames[1] == (0x80, b"grpc-status:0\r\n") and rest == b""


@pytest.mark.parametrize("ctype, body, why", [
    ("application/grpc-web", b"\x00\x00\x00\x00\x09abc", "incomplete"),
    ("application/grpc-web", b"\x02\x00\x00\x00\x00", "unknown message frame"),
    ("application/grpc-web-text", b"%%%", "invalid base64"),
    ("application/grpc-web+json", frame_for_test(b'{"name": 1}'), "failed to encode payload"),
    ("application/grpc-web+json", frame_for_test(b"{"), "decode json err"),
    ("application/xml", b"", "unsupported Content-Type"),
])
def test_malformed_web_bodies_are_bad_requests(proto, ctype, body, why):
    with pytest.raises(BadRequest, match=why):
        codec_for(ctype, "/meshtest.Greeter/SayHello", proto).upstream(body)


def test_json_without_proto_or_method_is_refused(proto):
    with pytest.raises(BadRequest, match="require a .proto file"):
        codec_for("application/grpc-web+json", "/meshtest.Greeter/SayHello", None)
    with pytest.raises(BadRequest, match='Unknown path "/x.Y/Z"'):
        codec_for("application/json", "/x.Y/Z", proto)
    assert codec_for("application/grpc-web+proto", "/anything", None).upstream(b"") == b""


def test_gateway_templates_and_payloads(proto):
    rules = compile_rules(proto)
    binding, values = match(rules, "GET", "/v1/messages/legacy/a/b%2Fc")
    assert binding.method.path == "/meshtest.Greeter/SayHello" and values == ["a/b%2Fc"]
    assert payload_for(binding, values, b"", "boolean_test=0&times=3&nope=1") == {
        "name": "a/b/c", "boolean_test": False, "times": "3"}
    binding, values = match(rules, "patch", "/v1/users/u%201")
    assert payload_for(binding, values, b'{"email": "e"}', "notify=true") == {"user": {"email": "e", "id": "u 1"}}
    binding, values = match(rules, "GET", "/v1/grow/tail")
    assert payload_for(binding, values, b"", "legs.count=4&legs.endings=toes&legs=x&tail.nope=1") == {
        "legs": {"count": "4", "endings": "toes"}}
    with pytest.raises(GatewayError, match='Unknown method "put"'):
        match(rules, "PUT", "/v1/echo")
    with pytest.raises(GatewayError, match='Unknown path "/v1/messages/a/b"'):
        match(rules, "GET", "/v1/messages/a/b")
    binding, values = match(rules, "POST", "/v1/echo")
    with pytest.raises(GatewayError, match="body must be a table"):
        payload_for(binding, values, b"[1]", "")
    with pytest.raises(GatewayError, match="decode json err"):
        payload_for(binding, values, b"{", "")
