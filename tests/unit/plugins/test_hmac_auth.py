"""hmac-auth: Kong's signing string, clock skew, enforced headers, algorithms, Digest, 401 messages,
hide_credentials and anonymous; a fuzzed Authorization header is a 401, never an exception."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.utils import formatdate

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test
from hypothesis import given, settings
from hypothesis import strategies as st

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled.hmac_auth import PLUGIN as HmacAuth

BOB = consumer_for_test("bob")
ANON = consumer_for_test("anon")
CRED = {"id": "h-1", "consumer": {"id": BOB["id"]}, "username": "bob", "secret": "s3cr3t"}
DIGESTS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}


def plugin(**config):
    return make_plugin_for_test(HmacAuth, config, IndexForTest(consumers=[BOB, ANON], hmacauth_credentials=[CRED]))


def sign(text: str, algorithm: str = "hmac-sha256", secret: str = "s3cr3t") -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), DIGESTS[algorithm]).digest()).decode()


def authorization(signature: str, headers: str = "date", algorithm: str = "hmac-sha256", user: str = "bob") -> str:
    return f'hmac username="{user}", algorithm="{algorithm}", headers="{headers}", signature="{signature}"'


def now_date(offset: float = 0) -> str:
    return formatdate(time.time() + offset, usegmt=True)


def signed_ctx(headers: str = "date", algorithm: str = "hmac-sha256", secret: str = "s3cr3t", **kw) -> CtxForTest:
    date = now_date()
    ctx = CtxForTest(method="POST", path="/p", query="a=1", headers={"Date": date, "X-Foo": "bar"}, **kw)
    lines = {"date": f"date: {date}", "x-foo": "x-foo: bar", "request-line": "POST /p?a=1 HTTP/1.1",
             "@request-target": "@request-target: post /p?a=1", "absent": "absent:"}
    text = "\n".join(lines[h] for h in headers.split(" "))
    ctx.headers.set("Authorization", authorization(sign(text, algorithm, secret), headers, algorithm))
    return ctx


def message(ctx) -> str:
    assert ctx.exited is not None
    return ctx.exited[1]["message"]


@pytest.mark.parametrize("headers", ["date", "date request-line", "@request-target x-foo date", "date absent"])
@pytest.mark.parametrize("algorithm", ["hmac-sha1", "hmac-sha256", "hmac-sha512"])
def test_kong_signing_strings_authenticate(headers, algorithm):
    ctx = signed_ctx(headers, algorithm)
    run_phase_for_test(plugin(), "access", ctx)
    assert ctx.exited is None
    assert ctx.consumer == BOB and ctx.credential == CRED and ctx.credential_identifier == "bob"


def test_wrong_secret_is_does_not_match():
    ctx = signed_ctx(secret="other")
    run_phase_for_test(plugin(), "access", ctx)
    assert ctx.exited[0] == 401 and message(ctx) == "HMAC signature does not match"
    assert ctx.exited[2] == {"WWW-Authenticate": "hmac"}


def test_no_authorization_is_unauthorized_with_realm():
    ctx = CtxForTest(headers={"Date": now_date()})
    run_phase_for_test(plugin(realm="api"), "access", ctx)
    assert ctx.exited == (401, {"message": "Unauthorized"}, {"WWW-Authenticate": 'hmac realm="api"'})


@pytest.mark.parametrize("date", [None, "yesterday", -400, +400])
def test_date_outside_clock_skew_is_refused(date):
    ctx = signed_ctx()
    ctx.headers.remove("Date")
    if date:
        ctx.headers.set("Date", date if isinstance(date, str) else now_date(date))
    run_phase_for_test(plugin(), "access", ctx)
    assert message(ctx).startswith("HMAC signature cannot be verified, a valid date or x-date header is required")


def test_x_date_is_accepted_and_clock_skew_is_configurable():
    ctx = signed_ctx()
    ctx.headers.set("X-Date", now_date())
    ctx.headers.set("Date", now_date(-400))  # signed value differs now: signature fails, the date check passes
    run_phase_for_test(plugin(), "access", ctx)
    assert message(ctx) == "HMAC signature does not match"
    late = signed_ctx()
    late.headers.set("Date", now_date(-400))
    run_phase_for_test(plugin(clock_skew=1000), "access", late)
    assert message(late) == "HMAC signature does not match"  # past the date check with the wider skew


def test_enforced_header_and_algorithm_list():
    ctx = signed_ctx("date")
    run_phase_for_test(plugin(enforce_headers=["date", "request-line"]), "access", ctx)
    assert message(ctx) == "HMAC signature cannot be verified"
    ok = signed_ctx("date request-line")
    run_phase_for_test(plugin(enforce_headers=["date", "request-line"]), "access", ok)
    assert ok.exited is None
    sha1 = signed_ctx(algorithm="hmac-sha1")
    run_phase_for_test(plugin(algorithms=["hmac-sha256"]), "access", sha1)
    assert message(sha1) == "HMAC signature cannot be verified"


def test_unknown_user_and_unparsable_header():
    for value in ('hmac username="nobody", algorithm="hmac-sha256", headers="date", signature="AAAA"',
                  "hmac garbage", 'hmac username="bob", algorithm="hmac-md5", headers="date", signature="x"'):
        ctx = CtxForTest(headers={"Date": now_date(), "Authorization": value})
        run_phase_for_test(plugin(), "access", ctx)
        assert message(ctx) == "HMAC signature cannot be verified"


def test_proxy_authorization_first_and_hide_credentials():
    ctx = signed_ctx()
    ctx.headers.set("Proxy-Authorization", ctx.headers.get("Authorization"))
    ctx.headers.set("Authorization", "Bearer for-the-upstream")
    run_phase_for_test(plugin(hide_credentials=True), "access", ctx)
    assert ctx.exited is None
    assert ctx.headers.get("Proxy-Authorization") is None and ctx.headers.get("Authorization") == "Bearer for-the-upstream"
    plain = signed_ctx()
    run_phase_for_test(plugin(hide_credentials=True), "access", plain)
    assert plain.exited is None and plain.headers.get("Authorization") is None


def digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_validate_request_body_checks_the_digest():
    assert plugin(validate_request_body=True).buffers_request and not plugin().buffers_request
    good = signed_ctx(body=b'{"a": 1}')
    good.headers.set("Digest", digest(b'{"a": 1}'))
    run_phase_for_test(plugin(validate_request_body=True), "access", good)
    assert good.exited is None
    bad = signed_ctx(body=b'{"a": 2}')
    bad.headers.set("Digest", digest(b'{"a": 1}'))
    run_phase_for_test(plugin(validate_request_body=True), "access", bad)
    assert message(bad) == "HMAC signature does not match"
    missing = signed_ctx(body=b"x")
    run_phase_for_test(plugin(validate_request_body=True), "access", missing)
    assert message(missing) == "HMAC signature does not match"
    empty = signed_ctx(body=b"")
    run_phase_for_test(plugin(validate_request_body=True), "access", empty)
    assert empty.exited is None


def test_anonymous_on_failure_and_logical_or():
    ctx = signed_ctx(secret="wrong")
    run_phase_for_test(plugin(anonymous="anon"), "access", ctx)
    assert ctx.exited is None and ctx.consumer == ANON and ctx.credential is None
    already = CtxForTest(headers={"Authorization": "junk"})
    already.credential = {"id": "other"}
    run_phase_for_test(plugin(anonymous="anon"), "access", already)
    assert already.exited is None and already.credential == {"id": "other"}


def test_defaults_and_bad_config_name_the_field():
    conf = validate_plugin_config("hmac-auth", {})
    assert conf == {"hide_credentials": False, "clock_skew": 300, "anonymous": None, "validate_request_body": False,
                    "enforce_headers": [], "algorithms": ["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"],
                    "realm": None}
    for bad, field in (({"clock_skew": 0}, "clock_skew"), ({"algorithms": ["hmac-md5"]}, "algorithms"),
                       ({"enforce_headers": "date"}, "enforce_headers"), ({"nope": 1}, "nope")):
        with pytest.raises(PluginConfigError) as err:
            validate_plugin_config("hmac-auth", bad)
        assert field in err.value.fields["config"], err.value.fields
    assert HmacAuth.priority == 1030 and HmacAuth.no_consumer


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["", "hmac ", 'hmac username="bob", algorithm="hmac-sha256", ']))
def test_fuzzed_authorization_is_a_401_never_an_exception(value, prefix):
    ctx = CtxForTest(headers={"Date": now_date(), "Authorization": prefix + value})
    run_phase_for_test(plugin(), "access", ctx)
    assert ctx.exited is not None and ctx.exited[0] == 401


def test_huge_hostile_header_is_answered():
    # Kong's greedy `(.+)` groups backtrack polynomially on this; the linear pattern answers at once
    value = 'hmac username="' + '",algorithm="' * 20000
    ctx = CtxForTest(headers={"Date": now_date(), "Authorization": value})
    run_phase_for_test(plugin(), "access", ctx)
    assert message(ctx) == "HMAC signature cannot be verified"
