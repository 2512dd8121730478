"""tcp-log and udp-log configs: Kong's defaults, and bad values refused on their field."""
from __future__ import annotations

import pytest

from meshway.plugins import PluginConfigError, validate_plugin_config


def test_defaults_are_kongs():
    tcp = validate_plugin_config("tcp-log", {"host": "127.0.0.1", "port": 9999})
    assert (tcp["timeout"], tcp["keepalive"], tcp["tls"], tcp["tls_sni"]) == (10000, 60000, False, None)
    udp = validate_plugin_config("udp-log", {"host": "logs.test", "port": 514})
    assert udp["timeout"] == 10000


@pytest.mark.parametrize("name, config, field", [
    ("tcp-log", {"port": 9999}, "host"),
    ("tcp-log", {"host": "127.0.0.1"}, "port"),
    ("tcp-log", {"host": "127.0.0.1", "port": 70000}, "port"),
    ("tcp-log", {"host": "not a host!", "port": 1}, "host"),
    ("tcp-log", {"host": "127.0.0.1", "port": 1, "tls": "maybe"}, "tls"),
    ("udp-log", {"host": "127.0.0.1", "port": -1}, "port"),
    ("udp-log", {"host": "127.0.0.1", "port": 1, "timeout": "soon"}, "timeout"),
])
def test_bad_config_names_the_field(name, config, field):
    with pytest.raises(PluginConfigError) as e:
        validate_plugin_config(name, config)
    assert field in str(e.value.fields)
