"""request-transformer: headers, querystring, JSON and form bodies, method, uri templates."""
from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test
from pydantic import ValidationError

from meshway.plugins.bundled.request_transformer import PLUGIN as RequestTransformer


def run(config, **ctx):
    c = CtxForTest(**ctx)
    p = make_plugin_for_test(RequestTransformer, config)
    assert run_phase_for_test(p, "access", c) is None
    return c


def test_headers_in_kong_order():
    config = {"remove": {"headers": ["x-drop"]}, "rename": {"headers": ["x-old:x-new"]},
              "replace": {"headers": ["x-rep:new", "x-absent:nope"]}, "add": {"headers": ["x-add:1", "x-rep:ignored"]},
              "append": {"headers": ["x-multi:b"]}}
    c = run(config, headers=[("X-Drop", "1"), ("X-Old", "v"), ("X-Rep", "old"), ("X-Multi", "a")])
    assert c.get_header("x-drop") is None and c.get_header("x-old") is None
    assert c.get_header("x-new") == "v" and c.get_header("x-rep") == "new"
    assert c.get_header("x-absent") is None and c.get_header("x-add") == "1"
    assert c.headers.all("x-multi") == ["a", "b"]


def test_querystring():
    config = {"remove": {"querystring": ["drop"]}, "rename": {"querystring": ["old:new"]},
              "replace": {"querystring": ["rep:2"]}, "add": {"querystring": ["added:yes"]},
              "append": {"querystring": ["tag:b"]}}
    c = run(config, query="drop=1&old=v&rep=1&tag=a")
    assert parse_qs(c.query) == {"new": ["v"], "rep": ["2"], "tag": ["a", "b"], "added": ["yes"]}


def test_json_body():
    config = {"remove": {"body": ["secret"]}, "rename": {"body": ["a:b"]}, "replace": {"body": ["n:2"]},
              "add": {"body": ["x:1"]}, "append": {"body": ["list:c"]}}
    p = make_plugin_for_test(RequestTransformer, config)
    assert p.buffers_request is True
    c = CtxForTest(method="POST", headers={"Content-Type": "application/json"},
                   body=json.dumps({"secret": 1, "a": "v", "n": 1, "list": ["a"]}).encode())
    run_phase_for_test(p, "access", c)
    assert json.loads(c.body) == {"b": "v", "n": "2", "x": "1", "list": ["a", "c"]}


def test_form_body():
    c = run({"add": {"body": ["k:v"]}, "remove": {"body": ["p"]}}, method="POST",
            headers={"content-type": "application/x-www-form-urlencoded"}, body=b"p=1&q=2")
    assert c.body == b"q=2&k=v"


def test_body_untouched_for_other_content_types_and_not_buffered_without_body_ops():
    c = run({"add": {"body": ["k:v"]}}, method="POST", headers={"content-type": "text/plain"}, body=b"raw")
    assert c.body == b"raw"
    assert make_plugin_for_test(RequestTransformer, {"add": {"headers": ["a:b"]}}).buffers_request is False


def test_http_method_and_uri_template():
    config = {"http_method": "POST", "replace": {"uri": "/v2/$(uri_captures.id)/$(headers.x-kind)/$(query_params.page)"}}
    c = run(config, path="/v1/items/7", query="page=3", headers={"X-Kind": "full"}, uri_captures={"id": "7"})
    assert c.method == "POST" and c.path == "/v2/7/full/3"


def test_templates_in_header_values_with_default():
    config = {"add": {"headers": ["x-user:$(headers[\"x-name\"] or \"anon\")", "x-lit:\\$(headers.a)"]}}
    assert run(config).get_header("x-user") == "anon"
    assert run(config, headers={"x-name": "zed"}).get_header("x-user") == "zed"
    assert run(config).get_header("x-lit") == "$(headers.a)"


@pytest.mark.parametrize("config", [
    {"add": {"headers": ["no-colon"]}}, {"add": {"headers": ["a:$(os.exit())"]}}, {"replace": {"uri": "$(bad)"}},
    {"http_method": "FETCH"},
])
def test_invalid(config):
    with pytest.raises(ValidationError):
        RequestTransformer.Config.model_validate(config)
