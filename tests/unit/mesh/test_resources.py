"""Kuma's Mesh/Dataplane schema, VIP allocation, dataplane tokens and the CLI's pure helpers."""
from __future__ import annotations

import time

import pytest

from meshway.cli._mesh import age, parse_vars, render, table, tags_of
from meshway.mesh import _insights, _tokens, _vips
from meshway.mesh._resources import ResourceError, inbounds, parse_resource, services

DOC_DP = {  # the reference document's Dataplane, rendered
    "type": "Dataplane", "mesh": "default", "name": "dp-demo",
    "networking": {"address": "10.0.0.7", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "demo-client"}}],
                   "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001}},
}


def causes(data, **kw):
    with pytest.raises(ResourceError) as e:
        parse_resource(data, **kw)
    return dict(e.value.causes)


def test_the_documents_dataplane_is_valid_and_kept_as_written():
    assert parse_resource(DOC_DP) == DOC_DP


def test_effective_inbound_values_follow_kumas_defaults():
    dp = parse_resource({**DOC_DP, "networking": {"address": "10.0.0.7", "inbound": [
        {"port": 8080, "tags": {"kuma.io/service": "web"}},
        {"port": 9000, "servicePort": 9001, "serviceAddress": "127.0.0.1", "tags": {"kuma.io/service": "api"}}]}})
    first, second = inbounds(dp)
    assert (first["address"], first["servicePort"], first["serviceAddress"]) == ("10.0.0.7", 8080, "10.0.0.7")
    assert (second["servicePort"], second["serviceAddress"], second["service"]) == (9001, "127.0.0.1", "api")
    assert services(dp) == ["web", "api"]


def test_errors_name_each_field_in_kumas_notation():
    bad = {"type": "Dataplane", "name": "dp", "networking": {"address": "", "inbound": [{"port": 0, "tags": {}}],
                                                           "transparentProxying": {"redirectPortInbound": 70000}}}
    assert causes(bad) == {
        "networking.address": "address can't be empty",
        "networking.inbound[0].port": "port must be in the range [1, 65535]",
        'networking.inbound[0].tags["kuma.io/service"]': "tag has to exist",
        "networking.transparentProxying.redirectPortInbound": "port must be in the range [1, 65535]",
    }


def test_unknown_fields_and_wrong_types_are_refused():
    found = causes({**DOC_DP, "networking": {"address": "10.0.0.7", "inbound": [{"port": "http", "tag": {}}]}})
    assert "networking.inbound[0].tag" in found and found["networking.inbound[0].tag"] == "unknown field"
    assert "valid integer" in found["networking.inbound[0].port"]


@pytest.mark.parametrize("change, field", [
    ({"name": "Bad Name"}, "name"),
    ({"mesh": "Not_A_Mesh"}, "mesh"),
    ({"networking": {"address": "10.0.0.7"}}, "networking"),
    ({"networking": {"address": "10.0.0.7", "gateway": {"tags": {}}}}, 'networking.gateway.tags["kuma.io/service"]'),
    ({"networking": {"address": "10.0.0.7", "inbound": [{"port": 1, "tags": {"kuma.io/service": "a",
                                                                            "kuma.io/protocol": "ftp"}}]}},
     'networking.inbound[0].tags["kuma.io/protocol"]'),
])
def test_each_rule_names_its_field(change, field):
    assert field in causes({**DOC_DP, **change})


def test_the_path_must_agree_with_the_body():
    assert "name" in causes(DOC_DP, mesh="default", name="other", kind="Dataplane")
    assert "type" in causes(DOC_DP, kind="Mesh")


def test_a_mesh_with_an_undeclared_mtls_backend_is_refused():
    assert "mtls.enabledBackend" in causes({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "ca-1"}})
    ok = {"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}
    assert parse_resource(ok)["mtls"]["enabledBackend"] == "ca-1"


# ---- VIPs -------------------------------------------------------------------------------------------
def test_vips_come_from_240_and_are_sticky():
    first = _vips.allocate({}, ["web", "redis"])
    assert first == {"web": "240.0.0.1", "redis": "240.0.0.2"}
    again = _vips.allocate(first, ["redis", "api"])
    assert again == {"web": "240.0.0.1", "redis": "240.0.0.2", "api": "240.0.0.3"}
    assert _vips.visible(again, ["api"]) == {"api": "240.0.0.3"}


def test_out_of_range_reservations_are_reallocated_and_gaps_reused():
    assert _vips.allocate({"old": "10.0.0.1", "b": "240.0.0.2"}, ["old", "c"]) == {
        "b": "240.0.0.2", "old": "240.0.0.1", "c": "240.0.0.3"}
    with pytest.raises(_vips.VipExhausted):
        _vips.allocate({}, ["a", "b", "c"], cidr="240.0.0.0/30")


def test_dns_names_include_the_rfc1035_form():
    assert _vips.hostnames("echo-server_echo-example_svc_1010") == [
        "echo-server_echo-example_svc_1010.mesh", "echo-server.echo-example.svc.1010.mesh"]
    assert _vips.dns_table({"default": {"Web": "240.0.0.1"}}) == {"web.mesh": "240.0.0.1"}


# ---- tokens ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    from meshway.mesh import MeshCA

    return MeshCA.load_or_create(tmp_path_factory.mktemp("ca"))


def test_a_token_is_bound_to_name_mesh_and_tags_and_pins_the_ca(ca):
    token = _tokens.issue(ca, name="dp-1", mesh="default", tags={"kuma.io/service": "web,web-api"}, valid_for=60)
    claims = _tokens.verify(" \n" + token[:20] + "\u200b" + token[20:] + "\r\n", ca)  # kuma#4567
    _tokens.check_binding(claims, "default", "dp-1", {"kuma.io/service": {"web"}})
    for mesh, name, tags, why in [("other", "dp-1", {"kuma.io/service": {"web"}}, "mesh"),
                                  ("default", "dp-2", {"kuma.io/service": {"web"}}, "data plane"),
                                  ("default", "dp-1", {"kuma.io/service": {"db"}}, "allows")]:
        with pytest.raises(_tokens.TokenError, match=why):
            _tokens.check_binding(claims, mesh, name, tags)
    assert _tokens.pinned_ca_pem(token) == ca.cert_pem


def test_expired_revoked_and_foreign_tokens_are_refused(ca, tmp_path):
    from meshway.mesh import MeshCA

    expired = _tokens.issue(ca, name="dp", valid_for=1)
    claims = _tokens.unverified_claims(expired)
    time.sleep(1.1)
    with pytest.raises(_tokens.TokenError, match="expired"):
        _tokens.verify(expired, ca)
    live = _tokens.issue(ca, name="dp")
    with pytest.raises(_tokens.TokenError, match="revoked"):
        _tokens.verify(live, ca, revoked={_tokens.unverified_claims(live)["jti"]})
    other = MeshCA.load_or_create(tmp_path)
    with pytest.raises(_tokens.TokenError, match="invalid"):
        _tokens.verify(_tokens.issue(other, name="dp"), ca)
    assert claims["Name"] == "dp"


@pytest.mark.parametrize("text, seconds", [("24h", 86400), ("1h30m", 5400), ("90s", 90), ("87600h", 315360000)])
def test_go_durations(text, seconds):
    assert _tokens.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "1d", "h", "-1h", "1h junk"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        _tokens.parse_duration(text)


# ---- templates and tables ------------------------------------------------------------------------------
def test_mustache_variables_nest_on_dots_and_missing_ones_render_empty():
    variables = parse_vars(["name=dp-demo,address=10.0.0.7", "port.inbound=8080"])
    assert variables == {"name": "dp-demo", "address": "10.0.0.7", "port": {"inbound": "8080"}}
    assert render("{{ name }} {{ address }}:{{ port.inbound }} [{{ missing }}]", variables) == "dp-demo 10.0.0.7:8080 []"


def test_ages_and_tables_look_like_kumactls():
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3 * 3600 - 5))
    assert age(iso, now) == "3h" and age(None) == "never"
    assert tags_of(DOC_DP) == "kuma.io/service=demo-client"
    assert table(["A", "LONGER"], [["xyz", "1"]]) == "A     LONGER\nxyz   1\n"


def test_status_online_degraded_offline():
    dp = parse_resource({**DOC_DP, "networking": {"address": "10.0.0.7", "inbound": [
        {"port": 8080, "tags": {"kuma.io/service": "web"}}, {"port": 9090, "tags": {"kuma.io/service": "api"}}]}})
    online = _insights.connected(None, "s1", "cp", {})
    assert _insights.status(dp, online) == ("Online", [])
    degraded = _insights.health(online, {"8080": False, "9090": True})
    assert _insights.status(dp, degraded) == ("Partially degraded", ["inbound[port=8080,svc=web] is not ready"])
    assert _insights.status(dp, _insights.disconnected(online, "s1"))[0] == "Offline"
    assert _insights.status(dp, _insights.health(online, {"8080": False, "9090": False}))[0] == "Offline"
