"""Config entry input as `consul config write` decodes it: formats, key spellings, types, unknown keys."""
from __future__ import annotations

from pathlib import Path

import pytest

from meshway.zones import DecodeError, check_entry, decode_entry, dumps, format_duration, parse_duration, parse_text

DATA = Path(__file__).parents[2] / "data" / "zones"


def test_the_documents_global_defaults_file():
    entry = check_entry(parse_text((DATA / "global_defaults.hcl").read_text(), "global_defaults.hcl"))
    assert entry == {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"},
                     "MeshGateway": {"Mode": "local"}}


def test_the_documents_api_resolver_file():
    entry = check_entry(parse_text((DATA / "api_resolver.hcl").read_text(), "api_resolver.hcl"))
    assert entry == {"Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "api", "Datacenter": "cloud"}}


@pytest.mark.parametrize("key", ["MeshGateway", "meshgateway", "mesh_gateway", "MESHGATEWAY"])
def test_camel_snake_and_lower_case_keys_are_one_field(key):
    entry = decode_entry({"kind": "service-defaults", "name": "web", key: {"mode": "remote"}})
    assert entry["MeshGateway"] == {"Mode": "remote"}


def test_config_and_meta_keep_their_keys_as_written():
    entry = decode_entry({"Kind": "proxy-defaults", "Config": {"Protocol": "http", "local_connect_timeout_ms": 5},
                          "meta": {"Owner": "ops"}})
    assert entry["Config"] == {"Protocol": "http", "local_connect_timeout_ms": 5}
    assert entry["Meta"] == {"Owner": "ops"}


def test_json_and_yaml_inputs():
    json_text = '{"Kind": "service-resolver", "Name": "api", "ConnectTimeout": "5s", "RequestTimeout": "1m"}'
    yaml_text = "kind: service-resolver\nname: api\nconnect_timeout: 5s\nrequest_timeout: 1m\n"
    assert decode_entry(parse_text(json_text, "a.json")) == decode_entry(parse_text(yaml_text, "a.yaml"))
    assert decode_entry(parse_text(yaml_text))["ConnectTimeout"] == 5_000_000_000  # stdin: not HCL, so YAML


def test_hcl_blocks_maps_and_lists():
    entry = check_entry(parse_text('''
Kind = "service-resolver"
Name = "api"
DefaultSubset = "v1"
Subsets { v1 { Filter = "Service.Meta.version == v1" } v2 { filter = "Service.Meta.version == v2" only_passing = true } }
Failover { "*" { Datacenters = ["cloud"] } }
''', "r.hcl"))
    assert entry["Subsets"] == {"v1": {"Filter": "Service.Meta.version == v1"},
                                "v2": {"Filter": "Service.Meta.version == v2", "OnlyPassing": True}}
    assert entry["Failover"] == {"*": {"Datacenters": ["cloud"]}}


def test_a_block_given_as_a_one_element_list_is_the_block():
    entry = decode_entry({"Kind": "service-resolver", "Name": "api", "Redirect": [{"Service": "x"}]})
    assert entry["Redirect"] == {"Service": "x"}


def test_weak_types_as_mapstructure():
    entry = decode_entry({"Kind": "service-defaults", "Name": "w", "MaxInboundConnections": "10",
                          "TransparentProxy": {"DialedDirectly": "true"}})
    assert entry["MaxInboundConnections"] == 10 and entry["TransparentProxy"] == {"DialedDirectly": True}


def test_unknown_keys_are_all_named_with_their_path():
    with pytest.raises(DecodeError) as e:
        decode_entry({"kind": "service-resolver", "name": "a", "redirect": {"service": "x", "foo": 1}, "bar": 2})
    assert str(e.value) == ('2 errors occurred:\n\t* invalid config key "Redirect.foo"\n'
                            '\t* invalid config key "bar"\n')


def test_one_unknown_key():
    with pytest.raises(DecodeError) as e:
        decode_entry({"Kind": "proxy-defaults", "Name": "global", "protocol": "http"})
    assert e.value.errors == ['invalid config key "protocol"']


@pytest.mark.parametrize("raw, message", [
    ({"Name": "x"}, "Payload does not contain a kind/Kind key at the top level"),
    ({"Kind": 3, "Name": "x"}, "Kind value in payload is not a string"),
    ({"Kind": "service-router", "Name": "x"}, "invalid config entry kind: service-router"),
])
def test_kind_problems(raw, message):
    with pytest.raises(DecodeError) as e:
        decode_entry(raw)
    assert str(e.value).startswith(message)


def test_wrong_types_name_the_field():
    with pytest.raises(DecodeError) as e:
        decode_entry({"Kind": "service-resolver", "Name": "a", "ConnectTimeout": "soon", "Redirect": {"Service": {}}})
    assert e.value.errors[0].startswith("'ConnectTimeout' expected type 'time.Duration'")
    assert 'time: invalid duration "soon"' in e.value.errors[0]
    assert e.value.errors[1].startswith("'Redirect.Service' expected type 'string'")


def test_hcl_syntax_errors_say_so():
    with pytest.raises(DecodeError) as e:
        parse_text('Kind = "proxy-defaults"\nconfig {', "x.hcl")
    assert str(e.value).startswith("Failed to decode config entry input:")


@pytest.mark.parametrize("text, ns", [("15s", 15 * 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9),
                                      ("500ms", 5 * 10**8), ("0", 0), ("-2s", -2 * 10**9), (7, 7)])
def test_go_durations(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("ns, text", [(15 * 10**9, "15s"), (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"),
                                      (5 * 10**8, "500ms"), (1_500_000_000, "1.5s"), (0, "0s")])
def test_go_duration_text(ns, text):
    assert format_duration(ns) == text


@pytest.mark.parametrize("bad", ["5", "1x", "", "s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_output_is_consuls_field_order_and_omits_empty_fields():
    entry = check_entry({"kind": "service-resolver", "name": "api", "connect_timeout": "90s",
                         "redirect": {"datacenter": "cloud", "service": "api"}})
    assert dumps(entry, (7, 9)) == """{
    "Kind": "service-resolver",
    "Name": "api",
    "Redirect": {
        "Service": "api",
        "Datacenter": "cloud"
    },
    "ConnectTimeout": "1m30s",
    "CreateIndex": 7,
    "ModifyIndex": 9
}"""
