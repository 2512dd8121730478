"""The dashboard's settings (Kong Manager's keys) and its start-up checks."""
import pytest

from meshway.settings import SettingsError, check_role, load_settings
from meshway.ui import gui_urls


def _settings(**env: str):
    return load_settings(env={f"MESHWAY_{k.upper()}": v for k, v in env.items()})


def test_defaults_are_kong_managers_port_on_loopback():
    s = _settings()
    assert [str(spec) for spec in s.admin_gui_listen] == ["127.0.0.1:8002"]
    assert s.admin_gui_path == "/"
    assert gui_urls(s, list(s.admin_gui_listen)) == ["http://127.0.0.1:8002/"]


def test_urls_show_the_path_and_a_wildcard_as_localhost():
    s = _settings(admin_gui_listen="0.0.0.0:9002, [::1]:9445 ssl", admin_gui_path="/manager",
                  admin_listen_insecure="on")
    assert gui_urls(s, list(s.admin_gui_listen)) == ["http://localhost:9002/manager/", "https://[::1]:9445/manager/"]


@pytest.mark.parametrize("path", ["manager", "/manager/", "/a b", "//x", "/../x/"])
def test_a_bad_gui_path_is_refused_naming_the_key(path):
    with pytest.raises(SettingsError, match="admin_gui_path: invalid path"):
        _settings(admin_gui_path=path)


def test_a_non_loopback_dashboard_needs_authentication():
    with pytest.raises(SettingsError) as e:
        check_role(_settings(admin_gui_listen="0.0.0.0:8002"))
    assert "admin_gui_listen 0.0.0.0:8002 is not a loopback address and the dashboard" in str(e.value)
    check_role(_settings(admin_gui_listen="0.0.0.0:8002", admin_auth="token"))
    check_role(_settings(admin_gui_listen="0.0.0.0:8002", admin_listen_insecure="on"))


def test_a_data_plane_has_no_dashboard():
    s = _settings(role="data_plane", database="off", cluster_control_plane="cp:8005",
                  cluster_cert="/c.crt", cluster_cert_key="/c.key")
    from meshway.settings import effective_listeners

    assert effective_listeners(s, "admin_gui_listen") == ()
    with pytest.raises(SettingsError, match="admin_gui_listen cannot be used with role = data_plane"):
        check_role(_settings(role="data_plane", database="off", cluster_control_plane="cp:8005",
                             cluster_cert="/c.crt", cluster_cert_key="/c.key", admin_gui_listen="127.0.0.1:9"))


def test_a_node_without_an_admin_api_serves_no_dashboard_unless_asked():
    from meshway.settings import effective_listeners

    assert effective_listeners(_settings(admin_listen="off"), "admin_gui_listen") == ()
    asked = _settings(admin_listen="off", admin_gui_listen="127.0.0.1:9002")
    assert [str(s) for s in effective_listeners(asked, "admin_gui_listen")] == ["127.0.0.1:9002"]
