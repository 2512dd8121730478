"""ldap-auth against a real slapd started by the test: binds over plain LDAP, StartTLS and LDAPS
(a directory that refuses simple binds without TLS proves the TLS modes are used), wrong
passwords, verify_ldap_host with a self-signed server, an unreachable directory (500), the
result cache, hide_credentials, anonymous, and fuzzed credentials that reach the directory."""
from __future__ import annotations

import base64

import pytest
from ctx_for_test import CtxForTest, IndexForTest, consumer_for_test, make_plugin_for_test, run_phase_for_test
from hypothesis import given, settings
from hypothesis import strategies as st

from meshway.plugins.bundled.ldap_auth import PLUGIN as LdapAuth
from tests.fixtures.slapd import BASE_DN, start_slapd

ANON = consumer_for_test("anon")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_only_slapd(tmp_path_factory):
    server = start_slapd(tmp_path_factory.mktemp("slapd-tls"), require_tls=True)
    yield server
    server.stop()


def plugin(server, **config):
    conf = {"ldap_host": "127.0.0.1", "ldap_port": server.port, "base_dn": BASE_DN, "attribute": "uid", **config}
    return make_plugin_for_test(LdapAuth, conf, IndexForTest(consumers=[ANON]))


def request(p, user="einstein", password="password", header="Authorization", scheme="ldap"):
    value = f"{scheme} " + base64.b64encode(f"{user}:{password}".encode()).decode()
    ctx = CtxForTest(headers={header: value, "X-Other": "kept"})
    run_phase_for_test(p, "access", ctx)
    return ctx


def test_bind_succeeds_and_identifies_the_user(slapd):
    ctx = request(plugin(slapd))
    assert ctx.exited is None and ctx.consumer is None
    assert ctx.credential["username"] == "einstein" and ctx.credential_identifier == "einstein"
    assert "password" not in ctx.credential
    assert ctx.headers.get("Authorization", ) is not None  # kept without hide_credentials


def test_wrong_password_unknown_user_and_proxy_authorization(slapd):
    p = plugin(slapd)
    for ctx in (request(p, password="wrong"), request(p, user="nobody"), request(p, password="x" * 5000)):
        assert ctx.exited == (401, {"message": "Unauthorized"}, {"WWW-Authenticate": "LDAP"})
    proxied = request(p, header="Proxy-Authorization", user="newton")
    assert proxied.exited is None and proxied.credential_identifier == "newton"


def test_a_username_cannot_move_the_bind_dn(slapd):
    # Kong pastes the username into the DN; here it is an escaped RDN value.
    ctx = request(plugin(slapd, base_dn="dc=example,dc=test"), user="einstein,ou=scientists")
    assert ctx.exited[0] == 401


def test_hide_credentials_and_anonymous(slapd):
    hidden = request(plugin(slapd, hide_credentials=True))
    assert hidden.exited is None and hidden.headers.get("Authorization") is None
    assert hidden.headers.get("X-Other") == "kept"
    anon = request(plugin(slapd, anonymous="anon"), password="wrong")
    assert anon.exited is None and anon.consumer == ANON and anon.credential is None


def test_results_are_cached_for_cache_ttl(tmp_path):
    server = start_slapd(tmp_path / "short-lived")
    p = plugin(server, cache_ttl=600)
    assert request(p).exited is None and request(p, password="wrong").exited[0] == 401
    server.stop()
    assert request(p).exited is None  # from the cache: the directory is gone
    assert request(p, password="wrong").exited[0] == 401  # failures are cached too (Kong's neg_ttl)
    unreachable = request(p, user="newton")
    assert unreachable.exited == (500, {"message": "An unexpected error occurred"}, {})


def test_tls_modes_against_a_directory_that_requires_tls(tls_only_slapd):
    server = tls_only_slapd
    assert request(plugin(server)).exited[0] == 401  # plain bind refused: confidentiality required
    assert request(plugin(server, start_tls=True)).exited is None
    assert request(plugin(server, ldaps=True, ldap_port=server.ldaps_port)).exited is None
    # a self-signed server certificate fails verification: a 401, as Kong's failed handshake
    assert request(plugin(server, ldaps=True, ldap_port=server.ldaps_port, verify_ldap_host=True)).exited[0] == 401
    assert request(plugin(server, start_tls=True, verify_ldap_host=True)).exited[0] == 401


FUZZ_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=60, deadline=None)
@given(FUZZ_TEXT, FUZZ_TEXT)
def test_fuzzed_credentials_reach_the_directory_and_are_refused(slapd, user, password):
    p = FUZZ_PLUGINS.setdefault(slapd.port, plugin(slapd))
    value = "ldap " + base64.b64encode(f"{user}:{password}".encode()).decode()
    ctx = CtxForTest(headers={"Authorization": value})
    run_phase_for_test(p, "access", ctx)
    assert ctx.exited is not None and ctx.exited[0] == 401


FUZZ_PLUGINS: dict = {}
