"""The service `url` shorthand and Kong's form decoding."""
import pytest

from meshway.model import ENTITIES, SchemaViolation, coerce_input, decode_form


@pytest.mark.parametrize("url, protocol, host, port, path", [
    ("tcp://127.0.0.5:19000", "tcp", "127.0.0.5", 19000, None),
    ("tls://127.0.0.5:19443", "tls", "127.0.0.5", 19443, None),
    ("http://127.0.0.5:18000", "http", "127.0.0.5", 18000, None),
    ("https://127.0.0.5:18443/", "https", "127.0.0.5", 18443, "/"),
    ("https://example.test/api/v1", "https", "example.test", 443, "/api/v1"),
    ("http://example.test", "http", "example.test", 80, None),
    ("grpcs://grpc.test", "grpcs", "grpc.test", 443, None),
    ("grpc://grpc.test", "grpc", "grpc.test", 80, None),
    ("udp://10.0.0.1:53", "udp", "10.0.0.1", 53, None),
    ("tls_passthrough://10.0.0.1", "tls_passthrough", "10.0.0.1", 443, None),
])
def test_url_shorthand(url, protocol, host, port, path):
    svc = ENTITIES["services"].validate({"url": url})
    assert (svc["protocol"], svc["host"], svc["port"], svc["path"]) == (protocol, host, port, path)
    assert "url" not in svc


def test_url_with_unknown_scheme_names_the_url_field():
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["services"].validate({"url": "ftp://x.test"})
    assert "url" in e.value.fields and "ftp" in e.value.fields["url"]


def test_url_without_host_is_refused():
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["services"].validate({"url": "http://"})
    assert e.value.fields["url"].startswith("missing host")


def _form(pairs, entity="routes"):
    return coerce_input(ENTITIES[entity], decode_form(pairs))


def test_form_indexed_records_from_the_streams_walkthrough():
    body = _form([("name", "service-b-tcp"), ("protocols", "tcp"), ("destinations[1].ip", "127.0.0.5"),
                  ("destinations[1].port", "19000")])
    assert body == {"name": "service-b-tcp", "protocols": ["tcp"],
                    "destinations": [{"ip": "127.0.0.5", "port": 19000}]}


def test_form_arrays_three_ways():
    assert _form([("paths[]", "/a"), ("paths[]", "/b")])["paths"] == ["/a", "/b"]
    assert _form([("hosts", "a.test"), ("hosts", "b.test")])["hosts"] == ["a.test", "b.test"]
    assert _form([("paths[2]", "/y"), ("paths[1]", "/x")])["paths"] == ["/x", "/y"]


def test_form_coerces_by_schema_only():
    svc = _form([("name", "123"), ("port", "8080"), ("retries", "0")], "services")
    assert svc == {"name": "123", "port": 8080, "retries": 0}
    route = _form([("strip_path", "false"), ("regex_priority", "-3"), ("paths", "/")])
    assert route == {"strip_path": False, "regex_priority": -3, "paths": ["/"]}


def test_form_nested_records_and_headers():
    assert _form([("config.minute", "5"), ("service.id", "abc")], "plugins") == {
        "config": {"minute": "5"}, "service": {"id": "abc"}}
    assert _form([("headers.x-version", "v1"), ("headers.x-version", "v2")])["headers"] == {"x-version": ["v1", "v2"]}


def test_form_empty_value_is_null():
    assert _form([("name", "")]) == {"name": None}


def test_form_bad_number_stays_a_string_and_is_reported():
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["services"].validate(_form([("host", "a.test"), ("port", "eighty")], "services"))
    assert e.value.fields == {"port": "expected an integer"}


def test_form_plugin_config_lists_follow_the_plugin_schema(plugin_for_test):
    body = _form([("name", "limits-for-test"), ("config.allow", "10.0.0.1"), ("config.minute", "5")], "plugins")
    assert body["config"] == {"allow": ["10.0.0.1"], "minute": "5"}
    assert ENTITIES["plugins"].validate(body)["config"] == {"allow": ["10.0.0.1"], "minute": 5, "policy": "local"}
