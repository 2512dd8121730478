"""basic-auth: hashed passwords, Kong's 401s, hide_credentials, anonymous; the _crypto format."""
from __future__ import annotations

import base64

from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled import _crypto, basic_auth
from meshway.plugins.bundled.basic_auth import PLUGIN as BasicAuth

BOB = consumer_for_test("bob")
ANON = consumer_for_test("anon")
# Few iterations keep the suite fast; the iteration count travels in the stored value.
CRED = {"id": "c-1", "consumer": {"id": BOB["id"]}, "username": "bob",
        "password": _crypto.hash_password("pa:ss", "salt123", iterations=1000)}


def plugin(**config):
    return make_plugin_for_test(BasicAuth, config, IndexForTest(consumers=[BOB, ANON], basicauth_credentials=[CRED]))


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_hash_format_and_verify():
    stored = _crypto.hash_password("secret", "abc")
    assert stored.startswith("pbkdf2_sha256$100000$abc$")
    assert _crypto.verify_password("secret", stored)
    assert not _crypto.verify_password("Secret", stored)
    assert _crypto.is_password_hash(stored) and not _crypto.is_password_hash("secret")


def test_same_password_different_salts_differ():
    assert _crypto.hash_password("x", "s1") != _crypto.hash_password("x", "s2")


def test_verify_rejects_malformed_values():
    assert not _crypto.verify_password("x", "plain-text")
    assert not _crypto.verify_password("x", "md5$1$a$b")


def test_valid_credentials_authenticate_with_username_identifier():
    ctx = CtxForTest(headers={"Authorization": basic("bob", "pa:ss")})
    assert run_phase_for_test(plugin(), "access", ctx) is None
    assert ctx.consumer == BOB and ctx.credential == CRED
    assert ctx.credential_identifier == "bob"


def test_proxy_authorization_header_also_works():
    ctx = CtxForTest(headers={"Proxy-Authorization": basic("bob", "pa:ss")})
    run_phase_for_test(plugin(), "access", ctx)
    assert ctx.consumer == BOB


def test_missing_header_is_401_unauthorized_with_realm():
    status, body, headers = run_phase_for_test(plugin(), "access", CtxForTest())
    assert (status, body) == (401, {"message": "Unauthorized"})
    assert headers == {"WWW-Authenticate": 'Basic realm="service"'}


def test_wrong_password_is_invalid_credentials_and_verified_once(monkeypatch):
    basic_auth._VERIFIED.clear()
    calls = []
    monkeypatch.setattr(basic_auth, "verify_password", lambda pw, stored: calls.append(pw) or False)
    for p in (plugin(), plugin()):  # a config reload keeps the verdict
        status, body, _ = run_phase_for_test(p, "access", CtxForTest(headers={"Authorization": basic("bob", "nope")}))
        assert (status, body) == (401, {"message": "Invalid authentication credentials"})
    assert calls == ["nope"]


def test_unknown_user_and_garbage_are_invalid_credentials():
    for value in (basic("eve", "x"), "Basic !!!", "Bearer abc"):
        assert run_phase_for_test(plugin(), "access", CtxForTest(headers={"Authorization": value}))[:2] == \
            (401, {"message": "Invalid authentication credentials"})


def test_hide_credentials_removes_authorization():
    ctx = CtxForTest(headers={"Authorization": basic("bob", "pa:ss")})
    run_phase_for_test(plugin(hide_credentials=True), "access", ctx)
    assert ctx.consumer == BOB and ctx.get_header("authorization") is None


def test_anonymous_on_failure():
    ctx = CtxForTest(headers={"Authorization": basic("bob", "bad")})
    run_phase_for_test(plugin(anonymous="anon"), "access", ctx)
    assert ctx.consumer == ANON and ctx.credential is None and ctx.exited is None
