"""request-size-limiting: Content-Length checks per unit, 417 with Expect, 411, streamed limit."""
from __future__ import annotations

from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled.request_size_limiting import PLUGIN as RequestSizeLimiting

TOO_LARGE = {"message": "Request size limit exceeded"}


def run(config, **ctx):
    c = CtxForTest(method="POST", **ctx)
    return run_phase_for_test(make_plugin_for_test(RequestSizeLimiting, config), "access", c), c


def test_units():
    assert run({"allowed_payload_size": 10, "size_unit": "bytes"}, headers={"content-length": "10"})[0] is None
    assert run({"allowed_payload_size": 10, "size_unit": "bytes"}, headers={"content-length": "11"})[0][:2] == (413, TOO_LARGE)
    assert run({"allowed_payload_size": 1, "size_unit": "kilobytes"}, headers={"content-length": "1025"})[0][0] == 413
    assert run({"allowed_payload_size": 1}, headers={"content-length": str(2**20)})[0] is None
    assert run({"allowed_payload_size": 1}, headers={"content-length": str(2**20 + 1)})[0][0] == 413


def test_expect_continue_gets_417():
    result, _ = run({"allowed_payload_size": 1, "size_unit": "bytes"}, headers={"content-length": "5", "expect": "100-continue"})
    assert result[:2] == (417, TOO_LARGE)


def test_require_content_length():
    result, _ = run({"require_content_length": True})
    assert result[:2] == (411, {"message": "A valid Content-Length header is required"})


def test_chunked_body_limited_while_streaming():
    result, ctx = run({"allowed_payload_size": 2, "size_unit": "kilobytes"}, headers={"transfer-encoding": "chunked"})
    assert result is None and ctx.body_limit == 2048
