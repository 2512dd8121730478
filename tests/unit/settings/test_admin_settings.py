"""The Admin API's security settings and the start-up check of an exposed Admin API."""
import pytest

from meshway.settings import SettingsError, check_role, load_settings, normalize_origin


def _check(**env: str) -> None:
    check_role(load_settings(env={f"MESHWAY_{k.upper()}": v for k, v in env.items()}))


def test_defaults_are_closed():
    s = load_settings(env={})
    assert (s.admin_auth, s.admin_gui_origin, s.admin_server_names, s.admin_listen_insecure) == ("off", (), (), False)
    _check()  # loopback listeners need no authentication


@pytest.mark.parametrize("listen", ["0.0.0.0:8001", "[::]:8001", "10.1.2.3:8001", "admin.example:8001",
                                    "127.0.0.1:8001, 192.168.1.2:8444 ssl"])
def test_non_loopback_without_auth_is_refused(listen):
    with pytest.raises(SettingsError) as e:
        _check(admin_listen=listen)
    for key in ("admin_listen", "admin_auth = token", "admin_ssl_client_ca", "admin_listen_insecure = on"):
        assert key in str(e.value)


def test_authentication_or_the_override_allows_it():
    _check(admin_listen="0.0.0.0:8001", admin_auth="token")
    _check(admin_listen="0.0.0.0:8444 ssl", admin_ssl_client_ca="/ca.pem")
    _check(admin_listen="0.0.0.0:8001", admin_listen_insecure="on")
    _check(admin_listen="[::1]:8001, 127.0.0.2:8002, localhost:8003")
    with pytest.raises(SettingsError, match="admin_listen 0.0.0.0:8001 is not a loopback"):
        _check(admin_listen="0.0.0.0:8001, 0.0.0.0:8444 ssl", admin_ssl_client_ca="/ca.pem")  # plain one is open


def test_data_planes_have_no_admin_api_to_check():
    _check(role="data_plane", database="off", cluster_control_plane="cp:8005", cluster_cert="c", cluster_cert_key="k")


def test_token_auth_needs_a_database():
    with pytest.raises(SettingsError, match="admin_auth = token needs a database"):
        _check(database="off", admin_auth="token")


def test_gui_origins_from_kong_urls():
    s = load_settings(env={"MESHWAY_ADMIN_GUI_URL": "https://Manager.example:443/manager/, http://127.0.0.1:8002"})
    assert s.admin_gui_origin == ("https://manager.example", "http://127.0.0.1:8002")


@pytest.mark.parametrize("value", ["*", "null", "manager.example", "ftp://a.example", "http://a.example:99999"])
def test_bad_gui_origin_names_the_key(value):
    with pytest.raises(SettingsError, match="admin_gui_origin: invalid origin"):
        load_settings(env={"MESHWAY_ADMIN_GUI_ORIGIN": value})


def test_normalize_origin_is_what_browsers_send():
    assert normalize_origin("HTTP://A.Example:80") == "http://a.example"
    assert normalize_origin("http://[::1]:8002/x?y") == "http://[::1]:8002"
    assert normalize_origin("http://a.example@evil.example") is None


def test_server_names_are_names():
    assert load_settings(env={"MESHWAY_ADMIN_SERVER_NAMES": "Admin.Internal., 10.0.0.5"}).admin_server_names == (
        "admin.internal", "10.0.0.5")
    with pytest.raises(SettingsError, match="admin_server_names: invalid name 'a:8001'"):
        load_settings(env={"MESHWAY_ADMIN_SERVER_NAMES": "a:8001"})
