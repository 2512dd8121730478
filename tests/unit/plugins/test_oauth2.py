"""oauth2: Kong's grants at <route>/oauth2/token and /oauth2/authorize, bearer checks, scopes,
PKCE, refresh, provision_key, HTTPS rule, service scoping and global_credentials; parameters and
tokens that are garbage are 4xx answers, never exceptions (hypothesis)."""
from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test
from hypothesis import given, settings
from hypothesis import strategies as st

from meshway.plugins import PluginConfigError, hash_client_secret, validate_plugin_config, verify_client_secret
from meshway.plugins.bundled.oauth2 import PLUGIN as OAuth2

BOB = consumer_for_test("bob")
ANON = consumer_for_test("anon")
SERVICE = {"id": str(uuid.uuid4()), "name": "api"}
OTHER_SERVICE = {"id": str(uuid.uuid4()), "name": "other"}
APP = {"id": str(uuid.uuid4()), "consumer": {"id": BOB["id"]}, "name": "app", "client_id": "cid", "client_secret": "csecret",
       "hash_secret": False, "redirect_uris": ["https://app.test/cb"], "client_type": "confidential"}
PUBLIC = {**APP, "id": str(uuid.uuid4()), "client_id": "pub", "client_secret": "", "client_type": "public"}
HASHED = {**APP, "id": str(uuid.uuid4()), "client_id": "hashed", "client_secret": hash_client_secret("plain"), "hash_secret": True}
ALL_FLOWS = {"enable_authorization_code": True, "enable_implicit_grant": True, "enable_client_credentials": True,
             "enable_password_grant": True, "provision_key": "pk", "scopes": ["email", "profile"]}


def plugin(tokens=(), **config):
    index = IndexForTest(consumers=[BOB, ANON], oauth2_credentials=[APP, PUBLIC, HASHED], oauth2_tokens=list(tokens))
    return make_plugin_for_test(OAuth2, {**ALL_FLOWS, **config}, index, entity={"id": str(uuid.uuid4()), "name": "oauth2"})


def post(p, path, service=SERVICE, scheme="https", headers=None, **params):
    body = urlencode(params).encode()
    ctx = CtxForTest(method="POST", path=path, scheme=scheme, service=service, body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    run_phase_for_test(p, "access", ctx)
    assert ctx.exited is not None
    return ctx.exited


def call(p, token=None, service=SERVICE, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ctx = CtxForTest(service=service, headers=headers, **kw)
    run_phase_for_test(p, "access", ctx)
    return ctx


def token_for(p, **params):
    status, body, headers = post(p, "/api/oauth2/token", grant_type="client_credentials", client_id="cid",
                                 client_secret="csecret", **params)
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"
    return body


def test_client_credentials_token_authenticates_with_scope_headers():
    p = plugin()
    body = token_for(p, scope="email")
    assert body["token_type"] == "bearer" and body["expires_in"] == 7200 and "refresh_token" not in body
    ctx = call(p, body["access_token"])
    assert ctx.exited is None and ctx.consumer == BOB and ctx.credential == APP
    assert ctx.credential_identifier == "cid" and ctx.headers.get("X-Authenticated-Scope") == "email"
    assert ctx.headers.get("X-Authenticated-UserId") is None


def test_basic_header_client_auth_and_its_401():
    p = plugin()
    good = "Basic " + base64.b64encode(b"cid:csecret").decode()
    assert post(p, "/api/oauth2/token", headers={"Authorization": good}, grant_type="client_credentials")[0] == 200
    bad = "Basic " + base64.b64encode(b"cid:nope").decode()
    status, body, headers = post(p, "/api/oauth2/token", headers={"Authorization": bad}, grant_type="client_credentials")
    assert (status, body["error"], headers["WWW-Authenticate"]) == (401, "invalid_client", 'Basic realm="OAuth2.0"')
    status, body, _ = post(p, "/api/oauth2/token", grant_type="client_credentials", client_id="cid", client_secret="nope")
    assert (status, body) == (400, {"error": "invalid_client", "error_description": "Invalid client authentication"})


def test_hashed_client_secret_in_kongs_format():
    stored = HASHED["client_secret"]
    assert stored.startswith("$pbkdf2-sha512$i=10000,l=32$") and verify_client_secret("plain", stored)
    p = plugin()
    assert post(p, "/x/oauth2/token", grant_type="client_credentials", client_id="hashed", client_secret="plain")[0] == 200
    assert post(p, "/x/oauth2/token", grant_type="client_credentials", client_id="hashed", client_secret=stored)[0] == 400


def test_https_required_unless_terminated_by_a_trusted_proxy():
    p = plugin()
    status, body, _ = post(p, "/api/oauth2/token", scheme="http", grant_type="client_credentials", client_id="cid",
                           client_secret="csecret")
    assert (status, body) == (400, {"error": "access_denied", "error_description": "You must use HTTPS"})
    terminated = plugin(accept_http_if_already_terminated=True)
    headers = {"X-Forwarded-Proto": "https"}
    assert post(terminated, "/api/oauth2/token", scheme="http", headers=headers, grant_type="client_credentials",
                client_id="cid", client_secret="csecret")[0] == 400  # the client is not in trusted_ips
    ctx = CtxForTest(method="POST", path="/api/oauth2/token", scheme="http", service=SERVICE,
                     headers={"X-Forwarded-Proto": "https", "Content-Type": "application/x-www-form-urlencoded"},
                     body=b"grant_type=client_credentials&client_id=cid&client_secret=csecret")
    ctx.client_trusted = True
    run_phase_for_test(terminated, "access", ctx)
    assert ctx.exited[0] == 200


def test_password_grant_needs_provision_key_and_userid_and_gives_a_refresh_token():
    p = plugin()
    common = {"grant_type": "password", "client_id": "cid", "client_secret": "csecret"}
    assert post(p, "/a/oauth2/token", **common, provision_key="bad", authenticated_userid="u1")[1]["error"] == "invalid_provision_key"
    assert post(p, "/a/oauth2/token", **common, provision_key="pk")[1]["error"] == "invalid_authenticated_userid"
    status, body, _ = post(p, "/a/oauth2/token", **common, provision_key="pk", authenticated_userid="u1", scope="email profile",
                           state="xyz")
    assert status == 200 and body["refresh_token"] and body["state"] == "xyz"
    ctx = call(p, body["access_token"])
    assert ctx.headers.get("X-Authenticated-UserId") == "u1" and ctx.headers.get("X-Authenticated-Scope") == "email profile"


def test_refresh_token_works_once_and_retires_the_old_access_token():
    p = plugin()
    first = post(p, "/a/oauth2/token", grant_type="password", client_id="cid", client_secret="csecret",
                 provision_key="pk", authenticated_userid="u1", scope="email")[1]
    refresh = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "csecret",
               "refresh_token": first["refresh_token"]}
    status, second, _ = post(p, "/a/oauth2/token", **refresh)
    assert status == 200 and second["access_token"] != first["access_token"]
    assert call(p, first["access_token"]).exited[0] == 401
    assert call(p, second["access_token"]).exited is None
    status, again, _ = post(p, "/a/oauth2/token", **refresh)
    assert (status, again["error_description"]) == (400, "Invalid refresh_token")


def test_reuse_refresh_token_keeps_the_refresh_token():
    p = plugin(reuse_refresh_token=True)
    first = post(p, "/a/oauth2/token", grant_type="password", client_id="cid", client_secret="csecret",
                 provision_key="pk", authenticated_userid="u1")[1]
    refresh = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "csecret",
               "refresh_token": first["refresh_token"]}
    second = post(p, "/a/oauth2/token", **refresh)[1]
    third = post(p, "/a/oauth2/token", **refresh)[1]
    assert second["refresh_token"] == third["refresh_token"] == first["refresh_token"]
    assert call(p, second["access_token"]).exited[0] == 401 and call(p, third["access_token"]).exited is None


def authorize(p, **params):
    return post(p, "/api/oauth2/authorize", provision_key="pk", authenticated_userid="u1", client_id="cid", **params)


def test_authorization_code_flow_with_pkce():
    p = plugin()
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    status, body, _ = authorize(p, response_type="code", scope="email", state="s1", code_challenge=challenge,
                                code_challenge_method="S256")
    assert status == 200
    uri = urlsplit(body["redirect_uri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("https", "app.test", "/cb")
    query = parse_qs(uri.query)
    assert query["state"] == ["s1"]
    code = query["code"][0]
    exchange = {"grant_type": "authorization_code", "client_id": "cid", "client_secret": "csecret", "code": code}
    status, err, _ = post(p, "/api/oauth2/token", **exchange, code_verifier="w" * 50)
    assert (status, err["error"]) == (400, "invalid_grant")  # a PKCE code needs its verifier
    status, token, _ = post(p, "/api/oauth2/token", **exchange, code_verifier=verifier)
    assert status == 200 and token["refresh_token"]
    ctx = call(p, token["access_token"])
    assert ctx.headers.get("X-Authenticated-UserId") == "u1" and ctx.headers.get("X-Authenticated-Scope") == "email"
    status, again, _ = post(p, "/api/oauth2/token", **exchange, code_verifier=verifier)
    assert (status, again["error_description"]) == (400, "Invalid code")  # a code is used once


def test_public_clients_need_pkce_and_no_secret():
    p = plugin()
    status, body, _ = post(p, "/api/oauth2/authorize", provision_key="pk", authenticated_userid="u", client_id="pub",
                           response_type="code")
    assert status == 400
    assert parse_qs(urlsplit(body["redirect_uri"]).query)["error_description"] == ["code_challenge is required for public clients"]
    status, body, _ = post(p, "/api/oauth2/token", grant_type="authorization_code", client_id="pub", client_secret="x", code="c")
    assert (status, body["error_description"]) == (400, "client_secret is disallowed for public clients")


def test_implicit_grant_puts_the_token_in_the_fragment():
    p = plugin()
    status, body, _ = authorize(p, response_type="token", state="st")
    assert status == 200
    fragment = parse_qs(urlsplit(body["redirect_uri"]).fragment)
    assert fragment["token_type"] == ["bearer"] and fragment["state"] == ["st"] and "refresh_token" not in fragment
    assert call(p, fragment["access_token"][0]).exited is None


@pytest.mark.parametrize("params, error", [
    ({"provision_key": "no"}, "invalid_provision_key"),
    ({"authenticated_userid": " "}, "invalid_authenticated_userid"),
    ({"response_type": "nope"}, "unsupported_response_type"),
    ({"response_type": "code", "scope": "admin"}, "invalid_scope"),
    ({"response_type": "code", "redirect_uri": "https://evil.test/"}, "invalid_request"),
    ({"response_type": "code", "client_id": "unknown"}, "invalid_client"),
    ({"response_type": "code", "code_challenge_method": "plain", "code_challenge": "abc"}, "invalid_request"),
])
def test_authorize_errors(params, error):
    p = plugin(enable_implicit_grant=False)
    status, body, _ = post(p, "/api/oauth2/authorize", **{"provision_key": "pk", "authenticated_userid": "u1",
                                                          "client_id": "cid", **params})
    assert status == 400
    found = body.get("error") or parse_qs(urlsplit(body["redirect_uri"]).query)["error"][0]
    assert found == error


def test_token_endpoint_errors_and_methods():
    p = plugin(enable_password_grant=False)
    assert post(p, "/a/oauth2/token", grant_type="password", client_id="cid", client_secret="csecret")[1]["error"] == "unsupported_grant_type"
    ctx = CtxForTest(method="GET", path="/a/oauth2/token/", service=SERVICE, scheme="https")
    run_phase_for_test(p, "access", ctx)
    assert ctx.exited[0] == 405 and ctx.exited[1]["error"] == "invalid_method"
    status, body, _ = post(p, "/a/oauth2/token", grant_type="authorization_code", client_id="cid", client_secret="csecret",
                           redirect_uri="https://elsewhere.test/")
    assert body["error_description"].startswith("Invalid redirect_uri")
    assert post(p, "/a/oauth2/token", grant_type="client_credentials", client_id="cid", client_secret="csecret",
                scope="bad")[1] == {"error": "invalid_scope", "error_description": '"bad" is an invalid scope'}


def test_bearer_errors_and_where_tokens_are_read():
    p = plugin(realm="api")
    missing = call(p)
    assert missing.exited == (401, {"error": "invalid_request", "error_description": "The access token is missing"},
                              {"WWW-Authenticate": 'Bearer realm="api"'})
    invalid = call(p, "nope")
    assert invalid.exited[1]["error"] == "invalid_token"
    assert invalid.exited[2]["WWW-Authenticate"] == ('Bearer realm="api", error="invalid_token", '
                                                      'error_description="The access token is invalid or has expired"')
    token = token_for(p)["access_token"]
    assert call(p, query=f"access_token={token}").exited is None
    in_body = CtxForTest(method="POST", service=SERVICE, body=f"access_token={token}&a=1".encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    run_phase_for_test(plugin(hide_credentials=True), "access", in_body)
    assert in_body.exited is None and in_body.body == b"a=1"
    hidden = call(plugin(hide_credentials=True), token)
    assert hidden.exited is None and hidden.headers.get("Authorization") is None


def test_tokens_are_per_service_unless_global():
    p = plugin()
    token = token_for(p)["access_token"]
    assert call(p, token, service=OTHER_SERVICE).exited[0] == 401
    g = plugin(global_credentials=True)
    global_token = token_for(g)["access_token"]
    assert call(g, global_token, service=OTHER_SERVICE).exited is None
    refused = call(p, global_token)
    assert refused.exited[1]["error_description"] == ("The access token is global, but the current plugin is configured "
                                                       "without 'global_credentials'")


def test_expired_and_config_tokens():
    now = int(time.time())
    live = {"id": str(uuid.uuid4()), "access_token": "from-config", "credential": {"id": APP["id"]}, "service": {"id": SERVICE["id"]},
            "expires_in": 3600, "created_at": now, "scope": "email", "authenticated_userid": "cfg", "refresh_token": "r-cfg"}
    old = {**live, "id": str(uuid.uuid4()), "access_token": "expired", "created_at": now - 7200, "refresh_token": None}
    p = plugin(tokens=[live, old])
    assert call(p, "from-config").headers.get("X-Authenticated-UserId") == "cfg"
    assert call(p, "expired").exited[0] == 401
    # A config token cannot be deleted by a refresh (Kong: no delete without a database): a 500
    status, refreshed, _ = post(p, "/a/oauth2/token", grant_type="refresh_token", client_id="cid", client_secret="csecret",
                                refresh_token="r-cfg")
    assert (status, refreshed) == (500, {"message": "An unexpected error occurred"})
    assert call(p, "from-config").exited is None


def test_anonymous_and_logical_or():
    p = plugin(anonymous="anon")
    ctx = call(p, "bad")
    assert ctx.exited is None and ctx.consumer == ANON and ctx.credential is None
    already = CtxForTest(service=SERVICE, headers={"X-Authenticated-UserId": "spoofed"})
    already.credential = {"id": "x"}
    run_phase_for_test(p, "access", already)
    assert already.exited is None and already.headers.get("X-Authenticated-UserId") is None


def test_defaults_and_bad_config_name_the_field():
    conf = validate_plugin_config("oauth2", {"enable_client_credentials": True})
    assert len(conf["provision_key"]) == 32
    del conf["provision_key"]
    assert conf == {"scopes": None, "mandatory_scope": False, "token_expiration": 7200, "enable_authorization_code": False,
                    "enable_implicit_grant": False, "enable_client_credentials": True, "enable_password_grant": False,
                    "hide_credentials": False, "accept_http_if_already_terminated": False, "anonymous": None,
                    "global_credentials": False, "auth_header_name": "authorization", "refresh_token_ttl": 1209600,
                    "reuse_refresh_token": False, "pkce": "lax", "realm": None}
    for bad, text in (({}, "enable_authorization_code"), ({"enable_client_credentials": True, "mandatory_scope": True}, "scopes"),
                      ({"enable_client_credentials": True, "pkce": "always"}, "pkce"),
                      ({"enable_client_credentials": True, "refresh_token_ttl": -1}, "refresh_token_ttl")):
        with pytest.raises(PluginConfigError) as err:
            validate_plugin_config("oauth2", bad)
        assert text in json.dumps(err.value.fields), err.value.fields
    assert OAuth2.priority == 1400 and OAuth2.no_consumer


PARAM_NAMES = ["grant_type", "client_id", "client_secret", "code", "code_verifier", "refresh_token", "scope",
               "provision_key", "authenticated_userid", "redirect_uri", "response_type", "code_challenge",
               "code_challenge_method", "state"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(PARAM_NAMES), st.text(max_size=60), max_size=8),
       st.sampled_from(["/a/oauth2/token", "/a/oauth2/authorize"]), st.booleans())
def test_fuzzed_parameters_are_answered_never_raise(params, path, as_json):
    p = FUZZ_PLUGIN
    body = json.dumps(params).encode() if as_json else urlencode(params).encode()
    ctype = "application/json" if as_json else "application/x-www-form-urlencoded"
    ctx = CtxForTest(method="POST", path=path, scheme="https", service=SERVICE, body=body, headers={"Content-Type": ctype})
    run_phase_for_test(p, "access", ctx)
    assert ctx.exited is not None and ctx.exited[0] in (200, 400, 401)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.binary(max_size=200))
def test_fuzzed_tokens_and_basic_headers_are_4xx(header, body):
    ctx = CtxForTest(service=SERVICE, headers={"Authorization": header} if header.strip() else {})
    run_phase_for_test(FUZZ_PLUGIN, "access", ctx)
    assert ctx.exited[0] == 401
    token = CtxForTest(method="POST", path="/a/oauth2/token", scheme="https", service=SERVICE, body=body,
                       headers={"Authorization": "Basic " + header, "Content-Type": "application/x-www-form-urlencoded"})
    run_phase_for_test(FUZZ_PLUGIN, "access", token)
    assert token.exited[0] in (200, 400, 401)


FUZZ_PLUGIN = plugin()
