"""key-auth: where keys are found, Kong's 401s, hide_credentials, anonymous, ttl, preflight."""
from __future__ import annotations

import json
import time

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled.key_auth import PLUGIN as KeyAuth

ALICE = consumer_for_test("alice", "a-1")
ANON = consumer_for_test("nobody")
CRED = {"id": "cred-1", "consumer": {"id": ALICE["id"]}, "key": "s3cret", "ttl": None, "tags": None}


def plugin(**config):
    index = IndexForTest(consumers=[ALICE, ANON], keyauth_credentials=[CRED])
    return make_plugin_for_test(KeyAuth, config, index)


def test_key_in_default_header_authenticates_consumer():
    ctx = CtxForTest(headers={"apikey": "s3cret"})
    assert run_phase_for_test(plugin(), "access", ctx) is None
    assert ctx.consumer == ALICE and ctx.credential == CRED
    assert ctx.get_header("apikey") == "s3cret"  # forwarded unless hide_credentials


def test_key_in_query_string_authenticates_and_can_be_hidden():
    ctx = CtxForTest(query="a=1&apikey=s3cret&b=2")
    run_phase_for_test(plugin(hide_credentials=True), "access", ctx)
    assert ctx.consumer == ALICE
    assert ctx.query == "a=1&b=2"


def test_hide_credentials_removes_header():
    ctx = CtxForTest(headers={"ApiKey": "s3cret", "x-other": "1"})
    run_phase_for_test(plugin(hide_credentials=True), "access", ctx)
    assert ctx.consumer == ALICE
    assert ctx.get_header("apikey") is None and ctx.get_header("x-other") == "1"


def test_missing_key_is_401_with_challenge():
    status, body, headers = run_phase_for_test(plugin(), "access", CtxForTest())
    assert (status, body) == (401, {"message": "No API key found in request"})
    assert headers["WWW-Authenticate"] == 'Key realm="kong"'


def test_unknown_key_is_401_invalid_credentials():
    status, body, _ = run_phase_for_test(plugin(), "access", CtxForTest(headers={"apikey": "nope"}))
    assert (status, body) == (401, {"message": "Invalid authentication credentials"})


def test_duplicate_key_in_query_is_refused():
    status, body, _ = run_phase_for_test(plugin(), "access", CtxForTest(query="apikey=a&apikey=b"))
    assert (status, body) == (401, {"message": "Duplicate API key found"})


def test_custom_key_names_and_header_only():
    p = plugin(key_names=["x-api-key", "token"], key_in_query=False)
    ctx = CtxForTest(headers={"token": "s3cret"})
    run_phase_for_test(p, "access", ctx)
    assert ctx.consumer == ALICE
    status, _, _ = run_phase_for_test(p, "access", CtxForTest(query="token=s3cret"))
    assert status == 401


@pytest.mark.parametrize("content_type, body, rest", [
    ("application/x-www-form-urlencoded", b"apikey=s3cret&n=1", b"n=1"),
    ("application/json", json.dumps({"apikey": "s3cret", "n": 1}).encode(), b'{"n":1}'),
])
def test_key_in_body_when_enabled(content_type, body, rest):
    p = plugin(key_in_body=True, hide_credentials=True)
    assert p.buffers_request is True
    ctx = CtxForTest(method="POST", headers={"content-type": content_type}, body=body)
    run_phase_for_test(p, "access", ctx)
    assert ctx.consumer == ALICE
    assert ctx.body == rest


def test_body_not_buffered_unless_key_in_body():
    assert plugin().buffers_request is False


def test_anonymous_consumer_by_username_when_key_missing():
    ctx = CtxForTest()
    assert run_phase_for_test(plugin(anonymous="nobody"), "access", ctx) is None
    assert ctx.consumer == ANON and ctx.credential is None


def test_anonymous_consumer_by_id_when_key_invalid():
    ctx = CtxForTest(headers={"apikey": "wrong"})
    run_phase_for_test(plugin(anonymous=ANON["id"]), "access", ctx)
    assert ctx.consumer == ANON


def test_anonymous_configured_but_missing_is_500():
    status, body, _ = run_phase_for_test(plugin(anonymous="ghost"), "access", CtxForTest())
    assert status == 500 and body == {"message": "An unexpected error occurred"}


def test_already_authenticated_with_anonymous_set_is_logical_or():
    ctx = CtxForTest()
    ctx.authenticate(ALICE, {"id": "other-cred"})
    run_phase_for_test(plugin(anonymous="nobody"), "access", ctx)
    assert ctx.consumer == ALICE and ctx.exited is None


def test_preflight_skipped_when_run_on_preflight_false():
    ctx = CtxForTest(method="OPTIONS")
    assert run_phase_for_test(plugin(run_on_preflight=False), "access", ctx) is None
    assert ctx.exited is None
    assert run_phase_for_test(plugin(), "access", CtxForTest(method="OPTIONS"))[0] == 401


def test_expired_ttl_credential_is_invalid():
    expired = {**CRED, "ttl": 10, "created_at": int(time.time()) - 60}
    p = make_plugin_for_test(KeyAuth, {}, IndexForTest(consumers=[ALICE], keyauth_credentials=[expired]))
    assert run_phase_for_test(p, "access", CtxForTest(headers={"apikey": "s3cret"}))[0] == 401


def test_credential_of_unknown_consumer_is_ignored():
    orphan = {**CRED, "consumer": {"id": "missing"}}
    p = make_plugin_for_test(KeyAuth, {}, IndexForTest(consumers=[ALICE], keyauth_credentials=[orphan]))
    assert run_phase_for_test(p, "access", CtxForTest(headers={"apikey": "s3cret"}))[0] == 401
