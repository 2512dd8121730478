"""response-transformer: response headers and JSON bodies, json_types, content-type gate."""
from __future__ import annotations

import json

from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled.response_transformer import PLUGIN as ResponseTransformer


def respond(config, headers, body=b""):
    p = make_plugin_for_test(ResponseTransformer, config)
    c = CtxForTest()
    c.response_status = 200
    for k, v in headers:
        c.response_headers.add(k, v)
    run_phase_for_test(p, "response", c)
    return c, run_phase_for_test(p, "body", c, body, True)


def test_headers():
    config = {"remove": {"headers": ["server"]}, "rename": {"headers": ["x-old:x-new"]},
              "replace": {"headers": ["x-rep:2", "x-none:1"]}, "add": {"headers": ["x-add:a", "x-rep:ignored"]},
              "append": {"headers": ["x-multi:2"]}}
    c, body = respond(config, [("Server", "up"), ("X-Old", "o"), ("X-Rep", "1"), ("X-Multi", "1")])
    assert c.get_response_header("server") is None and c.get_response_header("x-new") == "o"
    assert c.get_response_header("x-rep") == "2" and c.get_response_header("x-none") is None
    assert c.get_response_header("x-add") == "a" and c.response_headers.all("x-multi") == ["1", "2"]
    assert body is None


def test_json_body_with_types():
    config = {"remove": {"json": ["secret"]}, "rename": {"json": ["a:b"]},
              "replace": {"json": ["n:5"], "json_types": ["number"]},
              "add": {"json": ["flag:true", "s:x"], "json_types": ["boolean"]}, "append": {"json": ["tags:new"]}}
    upstream = json.dumps({"secret": "x", "a": 1, "n": 1, "tags": "old"}).encode()
    c, body = respond(config, [("Content-Type", "application/json"), ("Content-Length", str(len(upstream)))], upstream)
    assert json.loads(body) == {"b": 1, "n": 5, "flag": True, "s": "x", "tags": ["old", "new"]}
    assert c.get_response_header("content-length") is None


def test_non_json_response_untouched():
    c, body = respond({"add": {"json": ["a:1"]}}, [("Content-Type", "text/html"), ("Content-Length", "4")], b"<p/>")
    assert body is None and c.get_response_header("content-length") == "4"


def test_buffers_response_only_for_json_edits():
    assert make_plugin_for_test(ResponseTransformer, {"add": {"json": ["a:1"]}}).buffers_response is True
    assert make_plugin_for_test(ResponseTransformer, {"add": {"headers": ["a:1"]}}).buffers_response is False


def test_json_split_over_chunks_is_held_back_and_sent_whole_at_the_end():
    p = make_plugin_for_test(ResponseTransformer, {"add": {"json": ["x:1"]}})
    c = CtxForTest()
    c.response_headers.add("Content-Type", "application/json; charset=utf-8")
    run_phase_for_test(p, "response", c)
    assert run_phase_for_test(p, "body", c, b'{"a":', False) == b""
    assert run_phase_for_test(p, "body", c, b'"b"}', False) == b""
    assert json.loads(run_phase_for_test(p, "body", c, b"", True)) == {"a": "b", "x": "1"}


def test_invalid_json_is_sent_unchanged():
    _, body = respond({"add": {"json": ["x:1"]}}, [("Content-Type", "application/json")], b"[1,2]")
    assert body == b"[1,2]"
