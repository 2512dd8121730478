"""Recorded settings (`<prefix>/.meshway_env`): what `start` writes is what `restart` reads back."""
import os
import stat

import pytest

from meshway.node._prefix import record_settings, recorded_path
from meshway.settings import SettingsError, load_settings, without_settings_env


def test_given_settings_round_trip_and_defaults_stay_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    given = {"MESHWAY_PREFIX": "node", "MESHWAY_ROLE": "data_plane", "MESHWAY_DATABASE": "off",
             "MESHWAY_CLUSTER_CONTROL_PLANE": "cp:8005", "MESHWAY_CLUSTER_CERT": "c.crt",
             "MESHWAY_CLUSTER_CERT_KEY": "c.key", "MESHWAY_PG_PASSWORD": "a#b c"}
    settings = load_settings(env=given)
    path = record_settings(settings)
    assert path == recorded_path(tmp_path / "node") and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    back = load_settings(env={}, recorded=path)
    assert back.values == {**settings.values, "prefix": str(tmp_path / "node"),
                           "cluster_cert": str(tmp_path / "c.crt"), "cluster_cert_key": str(tmp_path / "c.key")}
    assert back.pg_password == "a#b c"
    # a default is written as a comment: it stays a default (the role checks tell them apart)
    assert back.sources["admin_listen"] == "default" and "# admin_listen = " in path.read_text()


def test_later_layers_win_over_the_recorded_ones(tmp_path):
    path = record_settings(load_settings(env={"MESHWAY_PREFIX": str(tmp_path), "MESHWAY_LOG_LEVEL": "warn",
                                              "MESHWAY_WORKERS": "3"}))
    conf = tmp_path / "new.conf"
    conf.write_text("workers = 1\n")
    settings = load_settings(conf, env={"MESHWAY_LOG_LEVEL": "debug"}, recorded=path)
    assert (settings.log_level, settings.workers) == ("debug", 1)


def test_worker_consistency_and_kongs_older_name():
    assert load_settings(env={}).worker_consistency == "strict"
    assert load_settings(env={"MESHWAY_ROUTER_CONSISTENCY": "eventual"}).worker_consistency == "eventual"
    with pytest.raises(SettingsError, match="worker_consistency"):
        load_settings(env={"MESHWAY_WORKER_CONSISTENCY": "sometimes"})


def test_the_status_api_is_off_by_default():
    assert load_settings(env={}).status_listen == ()


def test_node_processes_see_no_setting_variables():
    env = {"MESHWAY_ROLE": "x", "MESHWAY_NGINX_WORKER_PROCESSES": "2", "MESHWAY_TRANSPARENT_PROXY_X": "y", "PATH": "/bin"}
    assert without_settings_env(env) == {"MESHWAY_TRANSPARENT_PROXY_X": "y", "PATH": "/bin"}
