import pytest

from meshway.settings import effective_listeners, ListenSpec, SettingsError, check_role, load_settings, parse_listen


def test_defaults_follow_kong():
    s = load_settings(env={})
    assert s.role == "traditional" and s.database == "sqlite"
    assert [str(x) for x in s.admin_listen] == ["127.0.0.1:8001", "127.0.0.1:8444 ssl"]
    assert s.proxy_listen[1] == ListenSpec("0.0.0.0", 8443, ssl=True, http2=True, reuseport=True)
    assert s.stream_listen == ()


def test_walkthrough_listen_specs():
    specs = parse_listen("proxy_listen", "127.0.0.3:8000 transparent, 127.0.0.3:8443 ssl transparent")
    assert specs == (
        ListenSpec("127.0.0.3", 8000, transparent=True),
        ListenSpec("127.0.0.3", 8443, ssl=True, transparent=True),
    )


def test_ipv6_and_off():
    assert parse_listen("x", "[::1]:8000 http2")[0] == ListenSpec("::1", 8000, http2=True)
    assert parse_listen("x", "off") == ()


@pytest.mark.parametrize("value, fragment", [
    ("127.0.0.1", "invalid address '127.0.0.1'"),
    ("127.0.0.1:70000", "port 70000 out of range"),
    ("127.0.0.1:80 sssl", "unknown flag 'sssl'"),
])
def test_bad_listen_names_key_and_value(value, fragment):
    with pytest.raises(SettingsError) as e:
        load_settings(env={"MESHWAY_PROXY_LISTEN": value})
    assert "proxy_listen" in str(e.value) and fragment in str(e.value)


def test_udp_stream_listeners_as_kong():
    assert parse_listen("stream_listen", "0.0.0.0:5353 udp, 127.0.0.1:9000") == (
        ListenSpec("0.0.0.0", 5353, udp=True), ListenSpec("127.0.0.1", 9000))
    assert str(parse_listen("stream_listen", "0.0.0.0:5353 udp reuseport")[0]) == "0.0.0.0:5353 reuseport udp"
    for value, fragment in (("0.0.0.0:5353 udp ssl", "udp cannot be combined with ssl"),
                            ("0.0.0.0:5353 proxy_protocol udp", "udp cannot be combined with proxy_protocol")):
        with pytest.raises(SettingsError, match=fragment):
            load_settings(env={"MESHWAY_STREAM_LISTEN": value})
    with pytest.raises(SettingsError, match="proxy_listen: the udp flag is only valid on stream_listen"):
        load_settings(env={"MESHWAY_PROXY_LISTEN": "127.0.0.1:8000 udp"})


def test_conf_file_then_env_then_overrides(tmp_path):
    conf = tmp_path / "meshway.conf"
    conf.write_text("# comment\nlog_level = debug\nworkers = 3\nprefix = /from/conf\n")
    s = load_settings(conf, env={"MESHWAY_WORKERS": "2"}, overrides={"prefix": "/from/cli"})
    assert (s.log_level, s.workers, s.prefix) == ("debug", 2, "/from/cli")
    assert s.sources["workers"] == "environment"


def test_unknown_key_in_file_and_env(tmp_path):
    conf = tmp_path / "meshway.conf"
    conf.write_text("proxy_lisen = 127.0.0.1:8000\n")
    with pytest.raises(SettingsError, match="unknown setting 'proxy_lisen'.*127.0.0.1:8000"):
        load_settings(conf, env={})
    with pytest.raises(SettingsError, match="MESHWAY_FOO"):
        load_settings(env={"MESHWAY_FOO": "1"})


def test_malformed_values_name_the_key():
    with pytest.raises(SettingsError, match="role: invalid value 'gateway'"):
        load_settings(env={"MESHWAY_ROLE": "gateway"})
    with pytest.raises(SettingsError, match="workers: invalid integer 'many'"):
        load_settings(env={"MESHWAY_WORKERS": "many"})


def test_kong_aliases():
    s = load_settings(env={"MESHWAY_NGINX_PROXY_PROXY_BIND": "127.0.0.3"})
    assert s.proxy_bind == "127.0.0.3"


def test_roles_refuse_nonsense():
    dp = {"MESHWAY_ROLE": "data_plane", "MESHWAY_CLUSTER_CERT": "c", "MESHWAY_CLUSTER_CERT_KEY": "k"}
    with pytest.raises(SettingsError, match="requires database = off"):
        check_role(load_settings(env=dp))
    with pytest.raises(SettingsError, match="requires cluster_control_plane"):
        check_role(load_settings(env={**dp, "MESHWAY_DATABASE": "off"}))
    check_role(load_settings(env={**dp, "MESHWAY_DATABASE": "off", "MESHWAY_CLUSTER_CONTROL_PLANE": "cp:8005"}))
    cp = {"MESHWAY_ROLE": "control_plane", "MESHWAY_CLUSTER_CERT": "c", "MESHWAY_CLUSTER_CERT_KEY": "k"}
    with pytest.raises(SettingsError, match="proxy_listen cannot be used with role = control_plane"):
        check_role(load_settings(env={**cp, "MESHWAY_PROXY_LISTEN": "127.0.0.1:8000"}))
    with pytest.raises(SettingsError, match="cluster_cert must be set"):
        check_role(load_settings(env={"MESHWAY_ROLE": "control_plane", "MESHWAY_CLUSTER_LISTEN": "127.0.0.1:8005"}))
    # without the cluster certificate a control plane serves `meshway dp run` data planes only
    only_mesh = load_settings(env={"MESHWAY_ROLE": "control_plane"})
    check_role(only_mesh)
    assert effective_listeners(only_mesh, "cluster_listen") == ()
    assert [l.port for l in effective_listeners(only_mesh, "mesh_dp_listen")] == [5678]


def test_redacted_hides_secrets():
    s = load_settings(env={"MESHWAY_PG_PASSWORD": "hunter2"})
    assert s.redacted()["pg_password"] == "******"


def test_dataplane_cleanup_age_takes_kumas_durations():
    from meshway.settings import SettingsError, load_settings

    age = lambda v: load_settings(None, env={"MESHWAY_MESH_DATAPLANE_CLEANUP_AGE": v}).mesh_dataplane_cleanup_age  # noqa: E731
    assert load_settings(None, env={}).mesh_dataplane_cleanup_age == 72 * 3600  # Kuma's default
    assert (age("90s"), age("1h30m"), age("120"), age("0")) == (90, 5400, 120, 0)
    for bad, why in (("-1", "is negative"), ("soon", "invalid duration 'soon'")):
        with pytest.raises(SettingsError, match=f"mesh_dataplane_cleanup_age: .*{why}"):
            age(bad)
