"""Kong's validation rules and messages, one test per rule; errors name the field."""
import pytest

from meshway.model import ENTITIES, SchemaViolation
from tests.fixtures.certs import cert_pair_for_test

SVC = {"id": "7c2b8f2e-5c38-4f4e-9a57-7bb1c7d2f1a0"}


def fields_of(collection, data, **kw):
    with pytest.raises(SchemaViolation) as e:
        ENTITIES[collection].validate(data, **kw)
    return e.value.fields


def test_kong_shaped_body_for_one_error():
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["services"].validate({"host": "a.test", "port": 70000})
    assert e.value.body() == {"message": "schema violation (port: value should be between 0 and 65535)",
                              "name": "schema violation", "code": 2,
                              "fields": {"port": "value should be between 0 and 65535"}}


def test_every_error_is_reported_not_just_the_first():
    fields = fields_of("services", {"port": "x", "retries": -1, "bogus": 1})
    assert fields == {"port": "expected an integer", "retries": "value should be between 0 and 32767",
                      "bogus": "unknown field", "host": "required field missing"}


@pytest.mark.parametrize("collection, data, field, message", [
    ("services", {"host": 12}, "host", "expected a string"),
    ("services", {"host": "a.test", "protocol": "ftp"}, "protocol",
     "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss"),
    ("services", {"host": "bad host!"}, "host", "invalid value: bad host!"),
    ("services", {"host": "a.test", "path": "nope"}, "path", "should start with: /"),
    ("services", {"host": "a.test", "connect_timeout": 0}, "connect_timeout", "value should be between 1 and 2147483646"),
    ("services", {"host": "a.test", "name": "has space"}, "name",
     "invalid value 'has space': it must only contain alphanumeric and '., -, _, ~' characters"),
    ("services", {"host": "a.test", "name": ""}, "name", "length must be at least 1"),
    ("services", {"host": "a.test", "tags": "x"}, "tags", "expected a set"),
    ("services", {"host": "a.test", "enabled": "yes"}, "enabled", "expected a boolean"),
    ("services", {"host": "a.test", "id": "not-a-uuid"}, "id", "expected a valid UUID"),
    ("services", {"host": "a.test", "client_certificate": 5}, "client_certificate", "expected a record"),
    ("routes", {"paths": ["/"], "https_redirect_status_code": 200}, "https_redirect_status_code",
     "expected one of: 426, 301, 302, 307, 308"),
    ("routes", {"paths": ["/"], "path_handling": "v2"}, "path_handling", "expected one of: v0, v1"),
    ("routes", {"paths": "/"}, "paths", "expected an array"),
    ("routes", {"paths": ["/"], "service": {"id": "nope"}}, "service", {"id": "expected a valid UUID"}),
    ("upstreams", {}, "name", "required field missing"),
    ("upstreams", {"name": "10.0.0.1"}, "name", "Invalid name ('10.0.0.1'); must be a valid hostname"),
    ("upstreams", {"name": "u", "algorithm": "random"}, "algorithm",
     "expected one of: consistent-hashing, least-connections, round-robin, latency"),
    ("upstreams", {"name": "u", "slots": 5}, "slots", "value should be between 10 and 65536"),
    ("targets", {"target": "a.test:99999", "upstream": SVC}, "target", "invalid port number: 99999"),
    ("targets", {"target": "a.test", "upstream": SVC, "weight": 70000}, "weight", "value should be between 0 and 65535"),
    ("targets", {"target": "a.test"}, "upstream", "required field missing"),
    ("snis", {"name": "10.0.0.1", "certificate": SVC}, "name", "must not be an IP"),
    ("acls", {"consumer": SVC}, "group", "required field missing"),
    ("jwt_secrets", {"consumer": SVC, "algorithm": "RS256"}, "rsa_public_key", "required field missing (algorithm RS256)"),
])
def test_field_rules(collection, data, field, message):
    assert fields_of(collection, data)[field] == message


def test_route_path_must_start_with_slash_or_tilde():
    assert fields_of("routes", {"paths": ["/ok", "nope"]}) == {
        "paths": {1: "should start with: / (fixed path) or ~/ (regex path)"}}


def test_route_regex_path_must_compile():
    assert fields_of("routes", {"paths": ["~/users/(\\d+"]})["paths"][0].startswith("invalid regex: '/users/(\\d+'")


def test_route_regex_path_in_pcre_syntax_is_kept_verbatim():
    paths = ["~/users/(?<id>\\d+)$", "~/(?<=x)y", "~/a(?P<b>c)"]
    assert ENTITIES["routes"].validate({"paths": paths})["paths"] == paths


@pytest.mark.parametrize("host, error", [
    ("*.example.test", None), ("example.*", None), ("example.test:8080", None), ("10.0.0.1", None),
    ("a.*.test", "invalid wildcard: must be placed at leftmost or rightmost label"),
    ("*.a.*", "invalid wildcard: must have at most one wildcard"),
    ("bad_host!", "invalid value: bad_host!"),
])
def test_route_hosts_with_wildcard_rules(host, error):
    if error is None:
        assert ENTITIES["routes"].validate({"hosts": [host]})["hosts"] == [host]
    else:
        assert fields_of("routes", {"hosts": [host]}) == {"hosts": {0: error}}


def test_route_headers_cannot_include_host():
    assert fields_of("routes", {"headers": {"Host": ["a.test"]}}) == {
        "headers": {"Host": "cannot contain 'host' header, which must be specified in the 'hosts' attribute"}}


def test_route_methods_are_upper_case_tokens():
    assert fields_of("routes", {"methods": ["get"]}) == {"methods": {0: "invalid value: get"}}


def test_http_route_needs_a_matching_field():
    assert fields_of("routes", {"protocols": ["http"]}) == {
        "@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]}
    assert fields_of("routes", {}) == {
        "@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"]}


def test_stream_route_needs_sources_destinations_or_snis():
    assert fields_of("routes", {"protocols": ["tcp"]}) == {
        "@entity": ["must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"]}


def test_stream_route_cannot_have_http_fields():
    fields = fields_of("routes", {"protocols": ["tcp"], "paths": ["/"], "destinations": [{"port": 80}]})
    assert fields == {"paths": "cannot set 'paths' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'"}


def test_http_route_cannot_have_sources():
    fields = fields_of("routes", {"paths": ["/"], "sources": [{"ip": "10.0.0.0/8"}]})
    assert fields == {"sources": "cannot set 'sources' when 'protocols' is 'http' or 'https'"}


def test_source_needs_ip_or_port_and_valid_cidr():
    fields = fields_of("routes", {"protocols": ["tcp"], "sources": [{}, {"ip": "300.0.0.0/8"}]})
    assert fields == {"sources": {0: "at least one of these fields must be non-empty: 'ip', 'port'",
                                  1: {"ip": "invalid ip or cidr range: '300.0.0.0/8'"}}}


def test_snis_only_with_tls_protocols():
    assert fields_of("routes", {"protocols": ["http"], "paths": ["/"], "snis": ["a.test"]}) == {
        "@entity": ["'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"]}
    assert ENTITIES["routes"].validate({"protocols": ["tls"], "snis": ["a.test"]})["snis"] == ["a.test"]


def test_protocol_groups_cannot_mix():
    for protocols in (["http", "tcp"], ["https", "grpcs"], ["tls", "tls_passthrough"]):
        msg = fields_of("routes", {"protocols": protocols, "paths": ["/"]})["protocols"]
        assert msg.startswith("these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp')")


def test_tls_passthrough_needs_snis():
    assert fields_of("routes", {"protocols": ["tls_passthrough"], "destinations": [{"port": 443}]}) == {
        "@entity": ["must set snis when 'protocols' is 'tls_passthrough'"]}


def test_grpc_route_refuses_strip_path_and_methods():
    fields = fields_of("routes", {"protocols": ["grpc"], "paths": ["/"], "strip_path": True, "methods": ["POST"]})
    assert fields == {"strip_path": "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'",
                      "methods": "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"}


def test_stream_service_cannot_have_a_path():
    assert fields_of("services", {"url": "tcp://a.test:9000/x"}) == {"path": "value must be null"}


def test_tls_verify_only_for_https_services():
    assert fields_of("services", {"host": "a.test", "tls_verify": True}) == {"tls_verify": "value must be null"}


def test_consumer_needs_username_or_custom_id():
    assert fields_of("consumers", {}) == {
        "@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]}


def test_certificate_must_parse_and_match_its_key():
    cert, key = cert_pair_for_test()
    other_cert, _ = cert_pair_for_test("other.test")
    assert ENTITIES["certificates"].validate({"cert": cert, "key": key})["cert"] == cert
    assert fields_of("certificates", {"cert": other_cert, "key": key}) == {"@entity": ["certificate does not match key"]}
    fields = fields_of("certificates", {"cert": "not a pem", "key": key})
    assert fields["cert"].startswith("invalid certificate")
    assert fields_of("certificates", {"cert": cert, "key": "junk"})["key"].startswith("invalid key")


def test_certificate_alt_pair_is_all_or_nothing():
    cert, key = cert_pair_for_test()
    assert fields_of("certificates", {"cert": cert, "key": key, "cert_alt": cert}) == {
        "@entity": ["all or none of these fields must be set: 'cert_alt', 'key_alt'"]}


def test_ca_certificate_must_be_a_ca_and_gets_a_digest():
    leaf, _ = cert_pair_for_test()
    ca, _ = cert_pair_for_test("ca.test", ca=True)
    assert "CA" in fields_of("ca_certificates", {"cert": leaf})["cert"]
    assert len(ENTITIES["ca_certificates"].validate({"cert": ca})["cert_digest"]) == 64


def test_unknown_plugin_names_the_name_field(plugin_for_test):
    assert fields_of("plugins", {"name": "no-such-plugin"}) == {
        "name": "plugin 'no-such-plugin' not enabled; is it installed?"}


def test_plugin_config_errors_name_the_config_field(plugin_for_test):
    fields = fields_of("plugins", {"name": "limits-for-test", "config": {"minute": "lots", "nope": 1}})
    assert set(fields["config"]) == {"minute", "nope"} and fields["config"]["nope"] == "unknown field"


def test_plugin_protocols_are_what_its_kong_schema_allows():
    # typedefs.protocols_http: an HTTP-only plugin on a stream protocol names the element
    assert fields_of("plugins", {"name": "key-auth", "protocols": ["http", "tcp"]}) == {
        "protocols": {1: "expected one of: grpc, grpcs, http, https, ws, wss"}}
    with pytest.raises(SchemaViolation) as e:
        ENTITIES["plugins"].validate({"name": "acl", "config": {"allow": ["a"]}, "protocols": ["udp"]})
    assert e.value.body()["fields"] == {"protocols": ["expected one of: grpc, grpcs, http, https, ws, wss"]}
    # typedefs.protocols: the log plugins and ip-restriction take the stream protocols too
    for name, config in (("file-log", {"path": "/tmp/x.log"}), ("tcp-log", {"host": "h", "port": 1}),
                         ("ip-restriction", {"deny": ["10.0.0.0/8"]})):
        entity = ENTITIES["plugins"].validate({"name": name, "config": config, "protocols": ["tcp", "udp", "tls"]})
        assert set(entity["protocols"]) == {"tcp", "udp", "tls"}


def test_plugin_protocols_default_is_its_schemas():
    ip = ENTITIES["plugins"].validate({"name": "ip-restriction", "config": {"allow": ["127.0.0.1"]}})
    assert ip["protocols"] == ["http", "https", "tcp", "tls", "grpc", "grpcs"]  # Kong's default for it
    log = ENTITIES["plugins"].validate({"name": "file-log", "config": {"path": "/tmp/x.log"}})
    assert log["protocols"] == ["grpc", "grpcs", "http", "https"]


def test_upstream_hash_on_header_needs_the_header_name():
    assert fields_of("upstreams", {"name": "u", "hash_on": "header"}) == {"hash_on_header": "required field missing"}


def test_non_object_input_is_refused():
    assert fields_of("services", ["x"]) == {"@entity": ["expected a record"]}


def test_route_header_regex_must_compile():
    # a `~*` value is a case-insensitive regex the router compiles: a bad one is a 400 naming it,
    # not a config every worker rejects
    fields = fields_of("routes", {"paths": ["/x"], "headers": {"x-foo": ["plain", "~*(ab"]}})
    assert fields["headers"]["x-foo"][1].startswith("invalid regex: '(ab'")
    ENTITIES["routes"].validate({"paths": ["/x"], "headers": {"x-foo": ["(plain is not a regex", "~*ab.*"]}})
