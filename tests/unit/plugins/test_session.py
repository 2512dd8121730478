"""session: a cookie set after an auth plugin authenticated, opened on later requests (consumer,
credential, groups), renewed, logged out by method + query/body argument, refused when tampered,
expired or for a deleted consumer; Kong's config fields, shorthands and 400s; fuzzed cookies."""
from __future__ import annotations

import json
import time
from unittest import mock

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test
from hypothesis import given, settings
from hypothesis import strategies as st

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled.session import PLUGIN as Session

BOB = consumer_for_test("bob")
CRED = {"id": "cred-1", "consumer": {"id": BOB["id"]}}


def plugin(**config):
    return make_plugin_for_test(Session, {"secret": "s3cr3t", **config}, IndexForTest(consumers=[BOB]))


def login(p, groups=None) -> str:
    """What a request authenticated by another plugin gets: the Set-Cookie value."""
    ctx = CtxForTest()
    run_phase_for_test(p, "access", ctx)
    ctx.authenticate(BOB, CRED)
    ctx.authenticated_groups = groups
    run_phase_for_test(p, "response", ctx)
    return ctx.response_headers.get("Set-Cookie")


def with_cookie(p, cookie: str, method="GET", query="", **kw) -> CtxForTest:
    ctx = CtxForTest(method=method, query=query, headers={"Cookie": f"other=1; {cookie.split(';')[0]}"}, **kw)
    run_phase_for_test(p, "access", ctx)
    return ctx


def test_login_sets_a_cookie_that_authenticates_later_requests():
    p = plugin()
    cookie = login(p, groups=["admins"])
    assert cookie.startswith("session=") and "; Path=/; SameSite=Strict; HttpOnly; Secure" in cookie
    assert "Max-Age" not in cookie  # a browser-session cookie unless `remember`
    ctx = with_cookie(p, cookie)
    assert ctx.exited is None and ctx.consumer == BOB
    assert ctx.credential == {"id": "cred-1", "consumer_id": BOB["id"]} and ctx.credential_identifier == "cred-1"
    assert ctx.authenticated_groups == ["admins"] and ctx.headers.get("X-Authenticated-Groups") == "admins"
    run_phase_for_test(p, "response", ctx)
    assert ctx.response_headers.get("Set-Cookie") is None  # same consumer and credential: nothing new


def test_other_secret_audience_or_tampering_is_no_session():
    cookie = login(plugin())
    for other in (plugin(secret="other"), plugin(audience="elsewhere"), plugin(cookie_name="sid")):
        assert with_cookie(other, cookie).consumer is None
    name, value = cookie.split(";")[0].split("=", 1)
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    assert with_cookie(plugin(), f"{name}={flipped}").consumer is None


def test_timeouts():
    p = plugin(idling_timeout=100, rolling_timeout=1000, absolute_timeout=5000)
    cookie = login(p)
    now = time.time()
    with mock.patch("time.time", return_value=now + 99):
        ctx = with_cookie(p, cookie)
        assert ctx.consumer == BOB
        run_phase_for_test(p, "response", ctx)
        renewed = ctx.response_headers.get("Set-Cookie")  # past a quarter of the idling timeout
    assert renewed and renewed != cookie
    with mock.patch("time.time", return_value=now + 150):
        assert with_cookie(p, cookie).consumer is None  # idle too long
        assert with_cookie(p, renewed).consumer == BOB
    with mock.patch("time.time", return_value=now + 5001):
        assert with_cookie(p, renewed).consumer is None  # absolute timeout


def test_logout_by_query_or_body_argument_and_method():
    p = plugin(read_body_for_logout=True, logout_methods=["POST", "GET"])
    cookie = login(p)
    out = with_cookie(p, cookie, method="GET", query="session_logout")
    assert out.exited[0] == 200 and "Max-Age=0" in out.exited[2]["Set-Cookie"]
    body = with_cookie(p, cookie, method="POST", body=b"session_logout=true")
    body_ctx = CtxForTest(method="POST", body=b"session_logout=true",
                          headers={"Cookie": cookie.split(";")[0], "Content-Type": "application/x-www-form-urlencoded"})
    run_phase_for_test(p, "access", body_ctx)
    assert body_ctx.exited[0] == 200
    assert body.exited is None  # no Content-Type: not a form, no logout
    assert with_cookie(plugin(), cookie, method="DELETE", query="x=1").exited is None  # no argument
    assert with_cookie(plugin(), cookie, method="GET", query="session_logout").exited is None  # GET not a logout method


def test_a_deleted_consumer_ends_the_session():
    cookie = login(plugin())
    gone = make_plugin_for_test(Session, {"secret": "s3cr3t"}, IndexForTest(consumers=[]))
    ctx = with_cookie(gone, cookie)
    assert ctx.consumer is None
    run_phase_for_test(gone, "response", ctx)
    assert "Max-Age=0" in ctx.response_headers.get("Set-Cookie")


def test_remember_and_session_headers():
    p = plugin(remember=True, response_headers=["id", "audience", "subject", "absolute-timeout"],
               request_headers=["subject"], cookie_same_site="Default", cookie_domain="example.test")
    cookie = login(p)
    assert "; Max-Age=604800" in cookie and "SameSite" not in cookie and "; Domain=example.test" in cookie
    ctx = with_cookie(p, cookie)
    assert ctx.headers.get("Session-Subject") == "bob"
    run_phase_for_test(p, "response", ctx)
    assert ctx.response_headers.get("Session-Audience") == "default" and ctx.response_headers.get("Session-Id")
    assert 2591990 < int(ctx.response_headers.get("Session-Absolute-Timeout")) <= 2592000


def test_defaults_shorthands_and_bad_config():
    conf = validate_plugin_config("session", {})
    assert len(conf.pop("secret")) == 44
    assert conf["storage"] == "cookie" and conf["idling_timeout"] == 900 and conf["rolling_timeout"] == 3600
    assert conf["absolute_timeout"] == 86400 and conf["logout_methods"] == ["POST", "DELETE"]
    assert conf["cookie_same_site"] == "Strict" and conf["cookie_secure"] is True
    old = validate_plugin_config("session", {"cookie_lifetime": 60, "cookie_samesite": "off", "cookie_renew": 5,
                                             "cookie_idletime": None, "cookie_httponly": False})
    assert (old["rolling_timeout"], old["cookie_same_site"], old["idling_timeout"], old["cookie_http_only"]) == (60, "Lax", 0, False)
    for bad, field in (({"storage": "kong"}, "storage"), ({"cookie_same_site": "Sometimes"}, "cookie_same_site"),
                       ({"logout_methods": ["PUT"]}, "logout_methods"), ({"response_headers": ["nope"]}, "response_headers"),
                       ({"cookie_name": "a b"}, "cookie_name")):
        with pytest.raises(PluginConfigError) as err:
            validate_plugin_config("session", bad)
        assert field in json.dumps(err.value.fields), err.value.fields
    assert Session.priority == 1900 and Session.no_consumer and "secret" in Session.referenceable


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzzed_cookies_are_no_session(value):
    ctx = CtxForTest(headers={"Cookie": f"session={value}"})
    run_phase_for_test(FUZZ, "access", ctx)
    assert ctx.exited is None and ctx.consumer is None


FUZZ = plugin()


def test_cookie_in_a_later_cookie_header_as_http2_splits_them():
    p = plugin()
    cookie = login(p).split(";")[0]
    ctx = CtxForTest(headers=[("Cookie", "a=1"), ("Cookie", "b=2"), ("Cookie", cookie)])
    run_phase_for_test(p, "access", ctx)
    assert ctx.consumer == BOB
