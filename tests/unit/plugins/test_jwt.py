"""jwt: token sources, HS/RS/ES signatures, Kong's messages, claims, maximum_expiration, anonymous."""
from __future__ import annotations

import base64
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test

from meshway.plugins.bundled.jwt import PLUGIN as Jwt

HS = "hs-secret-" * 7  # long enough for HS512
RAW = b"raw-bytes" * 8
CAROL = consumer_for_test("carol")
ANON = consumer_for_test("anon")


def _pem_pair(key):
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


RSA_PRIVATE, RSA_PUBLIC = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
EC_PRIVATE, EC_PUBLIC = _pem_pair(ec.generate_private_key(ec.SECP256R1()))


def secret(key, algorithm="HS256", secret_value=HS, public=None):
    return {"id": f"s-{key}", "consumer": {"id": CAROL["id"]}, "key": key, "secret": secret_value,
            "rsa_public_key": public, "algorithm": algorithm}


SECRETS = [
    secret("hs256-key"), secret("hs512-key", "HS512"), secret("hs384-key", "HS384"),
    secret("rs-key", "RS256", None, RSA_PUBLIC), secret("es-key", "ES256", None, EC_PUBLIC),
    secret("b64-key", "HS256", base64.b64encode(RAW).decode()),
]


def plugin(secrets=SECRETS, **config):
    return make_plugin_for_test(Jwt, config, IndexForTest(consumers=[CAROL, ANON], jwt_secrets=secrets))


def token(claims, key=HS, alg="HS256"):
    return pyjwt.encode(claims, key, algorithm=alg)


def bearer(tok):
    return CtxForTest(headers={"Authorization": f"Bearer {tok}"})


@pytest.mark.parametrize("iss, key, alg", [
    ("hs256-key", HS, "HS256"), ("hs384-key", HS, "HS384"), ("hs512-key", HS, "HS512"),
    ("rs-key", RSA_PRIVATE, "RS256"), ("es-key", EC_PRIVATE, "ES256"),
])
def test_valid_token_authenticates_each_algorithm(iss, key, alg):
    ctx = bearer(token({"iss": iss}, key, alg))
    assert run_phase_for_test(plugin(), "access", ctx) is None
    assert ctx.consumer == CAROL and ctx.credential["key"] == iss
    assert ctx.credential_identifier == iss


def test_token_from_query_param_and_cookie():
    tok = token({"iss": "hs256-key"})
    ctx = CtxForTest(query=f"jwt={tok}")
    run_phase_for_test(plugin(), "access", ctx)
    assert ctx.consumer == CAROL
    ctx = CtxForTest(headers={"Cookie": f"other=1; auth={tok}"})
    run_phase_for_test(plugin(cookie_names=["auth"]), "access", ctx)
    assert ctx.consumer == CAROL


def test_no_token_is_401_unauthorized():
    assert run_phase_for_test(plugin(), "access", CtxForTest())[:2] == (401, {"message": "Unauthorized"})


def test_multiple_tokens_are_refused():
    a, b = token({"iss": "hs256-key", "n": 1}), token({"iss": "hs256-key", "n": 2})
    ctx = CtxForTest(query=f"jwt={a}", headers={"Authorization": f"Bearer {b}"})
    assert run_phase_for_test(plugin(), "access", ctx)[:2] == (401, {"message": "Multiple tokens provided"})


@pytest.mark.parametrize("tok, message", [
    ("not-a-token", "Bad token; Invalid token"),
    (token({"sub": "x"}), "No mandatory 'iss' in claims"),
    (token({"iss": "unknown"}), "No credentials found for given 'iss'"),
    (token({"iss": "hs512-key"}), "Invalid algorithm"),
    (token({"iss": "hs256-key"}, "w" * 64), "Invalid signature"),
    (token({"iss": "rs-key"}, HS), "Invalid algorithm"),
])
def test_kong_error_messages(tok, message):
    assert run_phase_for_test(plugin(), "access", bearer(tok))[:2] == (401, {"message": message})


def test_alg_none_is_a_bad_token():
    tok = pyjwt.encode({"iss": "hs256-key"}, None, algorithm="none")
    assert run_phase_for_test(plugin(), "access", bearer(tok))[:2] == (401, {"message": "Bad token; Invalid alg"})


def test_claims_to_verify_exp_and_nbf():
    p = plugin(claims_to_verify=["exp", "nbf"])
    now = int(time.time())
    ok = bearer(token({"iss": "hs256-key", "exp": now + 60, "nbf": now - 1}))
    assert run_phase_for_test(p, "access", ok) is None
    expired = bearer(token({"iss": "hs256-key", "exp": now - 1, "nbf": now + 60}))
    assert run_phase_for_test(p, "access", expired)[:2] == (401, {"exp": "token expired", "nbf": "token not valid yet"})
    missing = bearer(token({"iss": "hs256-key"}))
    assert run_phase_for_test(p, "access", missing)[1] == {"exp": "must be a number", "nbf": "must be a number"}


def test_expired_token_passes_when_exp_not_verified():
    ctx = bearer(token({"iss": "hs256-key", "exp": 1}))
    assert run_phase_for_test(plugin(), "access", ctx) is None and ctx.consumer == CAROL


def test_maximum_expiration():
    p = plugin(claims_to_verify=["exp"], maximum_expiration=100)
    far = bearer(token({"iss": "hs256-key", "exp": int(time.time()) + 1000}))
    assert run_phase_for_test(p, "access", far)[1] == {"exp": "exceeds maximum allowed expiration"}
    near = bearer(token({"iss": "hs256-key", "exp": int(time.time()) + 50}))
    assert run_phase_for_test(p, "access", near) is None


def test_secret_is_base64():
    ctx = bearer(token({"iss": "b64-key"}, RAW))
    assert run_phase_for_test(plugin(secret_is_base64=True), "access", ctx) is None and ctx.consumer == CAROL


def test_custom_key_claim_name_and_header_name():
    ctx = CtxForTest(headers={"X-Token": "Bearer " + token({"kid2": "hs256-key"})})
    run_phase_for_test(plugin(key_claim_name="kid2", header_names=["x-token"]), "access", ctx)
    assert ctx.consumer == CAROL


def test_anonymous_on_bad_token():
    ctx = bearer("garbage")
    run_phase_for_test(plugin(anonymous="anon"), "access", ctx)
    assert ctx.consumer == ANON and ctx.credential is None


def test_signature_result_is_cached_but_claims_rechecked():
    p = plugin(claims_to_verify=["exp"])
    tok = token({"iss": "hs256-key", "exp": time.time() + 0.2})
    assert run_phase_for_test(p, "access", bearer(tok)) is None
    time.sleep(0.25)
    assert run_phase_for_test(p, "access", bearer(tok))[1] == {"exp": "token expired"}


def test_maximum_expiration_requires_exp_in_claims_to_verify():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Jwt.Config.model_validate({"maximum_expiration": 10})
