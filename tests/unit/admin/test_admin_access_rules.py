"""The Admin API's access rules as values: Host names, origins, when credentials are needed."""
from meshway.admin._auth import AdminAccess, host_name
from meshway.settings import load_settings


def test_host_name_parts():
    assert host_name("LocalHost:8001") == "localhost"
    assert host_name("[::1]:8001") == host_name("[::1]") == "::1"
    assert host_name("admin.example.") == "admin.example"
    for bad in ("", ":8001", "a:b", "[::1", "[::1]x", "a:8001:1"):
        assert host_name(bad) is None, bad


def test_loopback_connections_always_check_host():
    access = AdminAccess(token_auth=True)
    assert access.host_refusal("evil.example", "127.0.0.1", "http")
    assert access.host_refusal("evil.example", "::ffff:127.0.0.1", "http")
    assert access.host_refusal("localhost:1234", "127.0.0.1", "http") is None


def test_network_connections_check_host_only_without_credentials():
    assert AdminAccess(token_auth=True).host_refusal("anything.example", "10.0.0.5", "http") is None
    assert AdminAccess(cert_auth=True).host_refusal("anything.example", "10.0.0.5", "https") is None
    open_access = AdminAccess(cert_auth=True)
    assert open_access.host_refusal("anything.example", "10.0.0.5", "http")
    assert open_access.host_refusal("10.0.0.5:8001", "10.0.0.5", "http") is None  # its own address
    assert open_access.host_refusal("10.0.0.5:8001", "::ffff:10.0.0.5", "http") is None  # on a dual-stack socket
    assert open_access.host_refusal("[fd00::5]:8001", "fd00::5", "http") is None


def test_from_settings_names_and_origins():
    settings = load_settings(env={"MESHWAY_ADMIN_LISTEN": "10.0.0.7:8001, [::]:8002", "MESHWAY_ADMIN_AUTH": "token",
                                  "MESHWAY_ADMIN_SERVER_NAMES": "cp.internal", "MESHWAY_ADMIN_GUI_ORIGIN": "http://ui:3000"})
    access = AdminAccess.from_settings(settings)
    assert {"10.0.0.7", "cp.internal", "localhost"} <= access.names and "::" not in access.names
    assert access.origin_allowed("http://UI:3000") and not access.origin_allowed("http://ui:3001")
    assert access.credentials_required("http") and access.credentials_required("https")
