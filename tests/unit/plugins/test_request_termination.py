"""request-termination: default and custom answers, raw body, trigger, echo, schema."""
from __future__ import annotations

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test
from pydantic import ValidationError

from meshway.plugins.bundled.request_termination import PLUGIN as RequestTermination


def run(config, **ctx):
    return run_phase_for_test(make_plugin_for_test(RequestTermination, config), "access", CtxForTest(**ctx))


def test_default_is_503_service_unavailable():
    assert run({}) == (503, {"message": "Service unavailable"}, {})


def test_status_and_message():
    assert run({"status_code": 404, "message": "gone fishing"})[:2] == (404, {"message": "gone fishing"})
    assert run({"status_code": 418})[:2] == (418, {"message": "I'm a Teapot"})


def test_raw_body_with_content_type():
    assert run({"status_code": 200, "body": "<p>hi</p>", "content_type": "text/html"}) == \
        (200, b"<p>hi</p>", {"Content-Type": "text/html"})


def test_trigger_header_or_query():
    config = {"trigger": "X-Stop"}
    assert run(config) is None
    assert run(config, headers={"x-stop": "1"})[0] == 503
    assert run(config, query="x-stop")[0] == 503


def test_echo_returns_the_request():
    status, body, _ = run({"status_code": 200, "echo": True}, method="POST", path="/p", query="a=1&a=2&b=",
                          headers=[("X-A", "1"), ("x-a", "2")], body=b"payload", route={"id": "r"})
    assert status == 200
    assert body["request"]["headers"] == {"x-a": ["1", "2"]}
    assert body["request"]["query"] == {"a": ["1", "2"], "b": ""}
    assert body["request"]["raw_body"] == "payload" and body["request"]["path"] == "/p"
    assert body["matched_route"] == {"id": "r"}


@pytest.mark.parametrize("config", [{"message": "m", "body": "b"}, {"content_type": "text/plain"}, {"status_code": 600}])
def test_invalid(config):
    with pytest.raises(ValidationError):
        RequestTermination.Config.model_validate(config)
