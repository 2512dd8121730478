"""Kong's defaults, filled by the entity declarations."""
from meshway.model import ENTITIES


def test_service_defaults_match_kong():
    svc = ENTITIES["services"].validate({"name": "test", "host": "httpbin.org"})
    expected = {"client_certificate": None, "connect_timeout": 60000, "host": "httpbin.org", "name": "test",
                "path": None, "port": 80, "protocol": "http", "read_timeout": 60000, "retries": 5, "tags": None,
                "write_timeout": 60000, "tls_verify": None, "tls_verify_depth": None, "ca_certificates": None,
                "enabled": True}
    assert {k: v for k, v in svc.items() if k not in ("id", "created_at", "updated_at")} == expected
    assert isinstance(svc["created_at"], int) and svc["created_at"] == svc["updated_at"]


def test_service_port_follows_tls_protocols():
    for protocol, port in (("https", 443), ("grpcs", 443), ("tls", 443), ("tcp", 80), ("grpc", 80)):
        assert ENTITIES["services"].validate({"host": "a.test", "protocol": protocol})["port"] == port


def test_explicit_port_wins_over_protocol_default():
    assert ENTITIES["services"].validate({"host": "a.test", "protocol": "https", "port": 8443})["port"] == 8443


def test_route_defaults_match_kong():
    route = ENTITIES["routes"].validate({"paths": ["/"]})
    assert route["protocols"] == ["http", "https"]
    assert (route["strip_path"], route["preserve_host"], route["regex_priority"]) == (True, False, 0)
    assert (route["path_handling"], route["https_redirect_status_code"]) == ("v0", 426)
    assert route["request_buffering"] is route["response_buffering"] is True
    assert route["service"] is None and route["methods"] is None


def test_grpc_route_defaults_strip_path_to_false():
    route = ENTITIES["routes"].validate({"protocols": ["grpc"], "paths": ["/svc.Echo/"]})
    assert route["strip_path"] is False


def test_upstream_defaults_include_healthcheck_tree():
    up = ENTITIES["upstreams"].validate({"name": "backend.v1"})
    assert (up["algorithm"], up["slots"], up["hash_on"], up["hash_fallback"]) == ("round-robin", 10000, "none", "none")
    active, passive = up["healthchecks"]["active"], up["healthchecks"]["passive"]
    assert active["healthy"] == {"interval": 0, "http_statuses": [200, 302], "successes": 0}
    assert active["unhealthy"]["http_statuses"] == [429, 404, 500, 501, 502, 503, 504, 505]
    assert (active["type"], active["timeout"], active["concurrency"], active["http_path"]) == ("http", 1, 10, "/")
    assert passive["unhealthy"]["http_statuses"] == [429, 500, 503]
    assert passive["healthy"]["http_statuses"][-1] == 308
    assert up["healthchecks"]["threshold"] == 0 and up["hash_on_cookie_path"] == "/"


def test_target_defaults_weight_and_port():
    target = ENTITIES["targets"].validate({"target": "10.0.0.1", "upstream": {"id": "7c2b8f2e-5c38-4f4e-9a57-7bb1c7d2f1a0"}})
    assert target["weight"] == 100 and target["target"] == "10.0.0.1:8000"


def test_credential_keys_are_generated_when_missing():
    consumer = {"id": "7c2b8f2e-5c38-4f4e-9a57-7bb1c7d2f1a0"}
    first = ENTITIES["keyauth_credentials"].validate({"consumer": consumer})
    second = ENTITIES["keyauth_credentials"].validate({"consumer": consumer})
    assert len(first["key"]) == 32 and first["key"] != second["key"]
    jwt = ENTITIES["jwt_secrets"].validate({"consumer": consumer})
    assert jwt["algorithm"] == "HS256" and jwt["secret"] and jwt["key"]


def test_basicauth_password_is_stored_hashed_and_not_hashed_twice():
    consumer = {"id": "7c2b8f2e-5c38-4f4e-9a57-7bb1c7d2f1a0"}
    cred = ENTITIES["basicauth_credentials"].validate({"consumer": consumer, "username": "u", "password": "s3cret"})
    assert cred["password"] != "s3cret" and cred["password"].startswith("pbkdf2_sha256$")
    again = ENTITIES["basicauth_credentials"].validate({"consumer": consumer, "username": "u", "password": cred["password"]})
    assert again["password"] == cred["password"]


def test_plugin_config_defaults_come_from_the_plugin(plugin_for_test):
    plugin = ENTITIES["plugins"].validate({"name": "limits-for-test", "config": {"minute": 5}})
    assert plugin["config"] == {"minute": 5, "policy": "local", "allow": None}
    assert plugin["enabled"] is True and plugin["protocols"] == ["grpc", "grpcs", "http", "https"]


def test_patch_merges_records_and_keeps_created_at():
    up = ENTITIES["upstreams"].validate({"name": "backend"})
    patched = ENTITIES["upstreams"].validate({"healthchecks": {"active": {"healthy": {"interval": 5}}}}, existing=up)
    assert patched["healthchecks"]["active"]["healthy"] == {"interval": 5, "http_statuses": [200, 302], "successes": 0}
    assert patched["created_at"] == up["created_at"] and patched["id"] == up["id"]


def test_patch_merges_plugin_config(plugin_for_test):
    plugin = ENTITIES["plugins"].validate({"name": "limits-for-test", "config": {"minute": 5, "policy": "redis"}})
    patched = ENTITIES["plugins"].validate({"config": {"minute": 10}}, existing=plugin)
    assert patched["config"] == {"minute": 10, "policy": "redis", "allow": None}
