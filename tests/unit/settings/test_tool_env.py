"""MESHWAY_* variables of other meshway tools (the transparent-proxy installer's) are not node
settings: node commands run with them set, while an unknown MESHWAY_<KEY> still stops start-up."""
import pytest

from meshway.settings import SCHEMA, TOOL_ENV_PREFIXES, SettingsError, load_settings, without_settings_env
from tests.helpers.node import clean_env, run_cli_for_test

TPROXY_ENV = {"MESHWAY_TRANSPARENT_PROXY_REDIRECT_DNS_ENABLED": "true",
              "MESHWAY_TRANSPARENT_PROXY_REDIRECT_DNS_PORT": "15053"}


def test_transparent_proxy_variables_are_not_settings():
    s = load_settings(env={**TPROXY_ENV, "MESHWAY_LOG_LEVEL": "debug"})
    assert s.log_level == "debug" and s.sources["log_level"] == "environment"
    assert set(without_settings_env(TPROXY_ENV)) == set(TPROXY_ENV)  # the node's processes keep them


def test_unknown_settings_still_stop_start_up():
    for name in ("MESHWAY_TRANSPARENT_PROXYX", "MESHWAY_TRANSPARENT", "MESHWAY_REDIRECT_DNS_ENABLED"):
        with pytest.raises(SettingsError, match=f"unknown setting '{name}'"):
            load_settings(env={**TPROXY_ENV, name: "1"})


def test_no_setting_lives_in_a_tool_family():
    assert not [k for k in SCHEMA if ("MESHWAY_" + k.upper()).startswith(TOOL_ENV_PREFIXES)]


def test_node_command_runs_with_transparent_proxy_variables(tmp_path):
    conf = tmp_path / "meshway.conf"
    conf.write_text(f"prefix = {tmp_path / 'prefix'}\n")
    done = run_cli_for_test("check", "-c", str(conf), env=clean_env(**TPROXY_ENV))
    assert done.returncode == 0, done.stderr
    bad = run_cli_for_test("check", "-c", str(conf), env=clean_env(**TPROXY_ENV, MESHWAY_PROXY_LISEN="127.0.0.1:1"))
    assert bad.returncode != 0 and "MESHWAY_PROXY_LISEN" in bad.stderr
