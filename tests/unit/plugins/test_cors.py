"""cors: preflight answered in access, response headers, origins incl. regex, credentials."""
from __future__ import annotations

from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled.cors import PLUGIN as Cors


def preflight(config, origin="http://a.example.com", **headers):
    ctx = CtxForTest(method="OPTIONS", headers={"Origin": origin, "Access-Control-Request-Method": "POST", **headers})
    return run_phase_for_test(make_plugin_for_test(Cors, config), "access", ctx)


def response(config, origin=None, method="GET"):
    ctx = CtxForTest(method=method, headers={"Origin": origin} if origin else {})
    p = make_plugin_for_test(Cors, config)
    assert run_phase_for_test(p, "access", ctx) is None
    run_phase_for_test(p, "response", ctx)
    return dict(ctx.response_headers.items)


def test_default_preflight_allows_everything():
    status, body, headers = preflight({}, **{"Access-Control-Request-Headers": "x-a,x-b"})
    assert status == 200 and body is None
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
    assert headers["Access-Control-Allow-Headers"] == "x-a,x-b"
    assert "Access-Control-Max-Age" not in headers


def test_configured_preflight():
    config = {"origins": ["http://a.example.com"], "methods": ["GET", "POST"], "headers": ["x-h"],
              "max_age": 3600, "credentials": True}
    _, _, headers = preflight(config)
    assert headers == {"Vary": "Origin", "Access-Control-Allow-Origin": "http://a.example.com",
                       "Access-Control-Allow-Credentials": "true", "Access-Control-Allow-Headers": "x-h",
                       "Access-Control-Allow-Methods": "GET,POST", "Access-Control-Max-Age": "3600"}


def test_not_a_preflight_without_request_method():
    ctx = CtxForTest(method="OPTIONS", headers={"Origin": "http://x"})
    assert run_phase_for_test(make_plugin_for_test(Cors, {}), "access", ctx) is None


def test_preflight_continue_leaves_it_to_upstream():
    ctx = CtxForTest(method="OPTIONS", headers={"Origin": "http://x", "Access-Control-Request-Method": "GET"})
    p = make_plugin_for_test(Cors, {"preflight_continue": True})
    assert run_phase_for_test(p, "access", ctx) is None
    run_phase_for_test(p, "response", ctx)
    assert ctx.response_headers.items == []


def test_origin_matching_plain_default_port_and_regex():
    config = {"origins": ["https://a.example.com", r"https://.*\.trusted\.org"]}
    assert response(config, "https://a.example.com:443")["Access-Control-Allow-Origin"] == "https://a.example.com:443"
    assert response(config, "https://x.trusted.org")["Access-Control-Allow-Origin"] == "https://x.trusted.org"
    assert "Access-Control-Allow-Origin" not in response(config, "https://x.trusted.org.evil.com")
    assert "Access-Control-Allow-Origin" not in response(config, "http://a.example.com")
    assert response(config, "https://evil.com")["Vary"] == "Origin"


def test_credentials_with_wildcard_echo_origin():
    headers = response({"credentials": True}, "http://site.test")
    assert headers["Access-Control-Allow-Origin"] == "http://site.test"
    assert headers["Access-Control-Allow-Credentials"] == "true"


def test_exposed_headers_and_vary_appended():
    ctx = CtxForTest(headers={"Origin": "http://a.test"})
    ctx.response_headers.set("Vary", "Accept-Encoding")
    p = make_plugin_for_test(Cors, {"origins": ["http://a.test"], "exposed_headers": ["x-total", "x-page"]})
    run_phase_for_test(p, "response", ctx)
    assert ctx.get_response_header("access-control-expose-headers") == "x-total,x-page"
    assert ctx.get_response_header("vary") == "Accept-Encoding, Origin"


def test_private_network():
    _, _, headers = preflight({"private_network": True}, **{"Access-Control-Request-Private-Network": "true"})
    assert headers["Access-Control-Allow-Private-Network"] == "true"


def test_an_origin_regex_that_does_not_compile_is_refused_with_kongs_message():
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError) as e:
        Cors.Config.model_validate({"origins": ["http://ok.example", "~(bad"]})
    assert "'~(bad' is not a valid regex" in str(e.value)
    Cors.Config.model_validate({"origins": ["*", "http://ok.example", r"https://.*\.example\.com"]})
