"""ldap-auth without a directory: Kong's config defaults and checks (400 naming the field), the
header parsing (header_type, base64 user:password), the WWW-Authenticate value; a fuzzed header
that does not parse is a 401 without any bind."""
from __future__ import annotations

import base64
import json

import pytest
from ctx_for_test import CtxForTest, IndexForTest, make_plugin_for_test, run_phase_for_test
from hypothesis import given, settings
from hypothesis import strategies as st

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled.ldap_auth import PLUGIN as LdapAuth

BASE = {"ldap_host": "127.0.0.1", "ldap_port": 1, "base_dn": "ou=x,dc=example,dc=test", "attribute": "uid"}


def plugin(**config):
    return make_plugin_for_test(LdapAuth, {**BASE, **config}, IndexForTest())


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_defaults_and_bad_config_name_the_field():
    conf = validate_plugin_config("ldap-auth", BASE)
    assert conf == {**BASE, "ldaps": False, "start_tls": False, "verify_ldap_host": False, "cache_ttl": 60,
                    "hide_credentials": False, "timeout": 10000, "keepalive": 60000, "anonymous": None,
                    "header_type": "ldap", "realm": None}
    for bad, field in (({**BASE, "ldap_port": 70000}, "ldap_port"), ({k: v for k, v in BASE.items() if k != "base_dn"}, "base_dn"),
                       ({k: v for k, v in BASE.items() if k != "attribute"}, "attribute"),
                       ({**BASE, "ldap_host": "bad host/"}, "ldap_host"),
                       ({**BASE, "ldaps": True, "start_tls": True}, "'ldaps' and 'start_tls'")):
        with pytest.raises(PluginConfigError) as err:
            validate_plugin_config("ldap-auth", bad)
        assert field in json.dumps(err.value.fields), err.value.fields
    assert LdapAuth.priority == 1200 and LdapAuth.no_consumer


@pytest.mark.parametrize("value, pair", [
    ("ldap " + encoded("einstein:password"), ("einstein", "password")),
    ("  LDAP   " + encoded("a:b:c"), ("a", "b:c")),
    ("ldap " + encoded(":pw"), ("", "pw")),
    ("ldap " + encoded("user:"), None),
    ("ldap " + encoded("nocolon"), None),
    ("basic " + encoded("a:b"), None),
    ("ldap not-base64!", None),
    ("ldapx " + encoded("a:b"), None),
])
def test_credentials_parsing(value, pair):
    assert plugin().credentials(value) == pair


def test_header_type_and_realm_in_the_challenge():
    ctx = CtxForTest()
    run_phase_for_test(plugin(), "access", ctx)
    assert ctx.exited == (401, {"message": "Unauthorized"}, {"WWW-Authenticate": "LDAP"})
    basic = CtxForTest(headers={"Authorization": "Bearer x"})
    run_phase_for_test(plugin(header_type="Basic", realm="corp"), "access", basic)
    assert basic.exited == (401, {"message": "Unauthorized"}, {"WWW-Authenticate": 'Basic realm="corp"'})
    assert plugin(header_type="Basic").credentials("basic " + encoded("u:p")) == ("u", "p")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzzed_headers_that_do_not_parse_are_401(value):
    p = plugin()
    if p.credentials(value) is not None or not value.strip():
        return  # parses: a bind (tests/integration/plugins/test_ldap_auth_slapd.py)
    ctx = CtxForTest(headers={"Authorization": value})
    run_phase_for_test(p, "access", ctx)
    assert ctx.exited[0] == 401
