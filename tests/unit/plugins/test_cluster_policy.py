"""`policy: cluster` is offered as Kong's schema offers it: not on a DB-less node nor a control plane."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled import _cluster_counters

CONFIGS = {"rate-limiting": {"minute": 5, "policy": "cluster"},
           "response-ratelimiting": {"limits": {"videos": {"minute": 5}}, "policy": "cluster"}}


def _node_for_test(monkeypatch, database: str, role: str = "traditional") -> None:
    monkeypatch.setattr(_cluster_counters, "_node", None)
    _cluster_counters.set_node_database(SimpleNamespace(database=database, role=role, pg_host="127.0.0.1", pg_port=5432,
                                                        pg_user="u", pg_password="", pg_database="d", pg_timeout=5000))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("database, role, message", [
    ("off", "traditional", "expected one of: local, redis"),
    ("off", "data_plane", "expected one of: local, redis"),
    ("postgres", "control_plane", "expected one of: local, redis"),
    ("sqlite", "traditional", "keeps its counters in PostgreSQL"),
])
def test_refused_where_kong_refuses_it(monkeypatch, name, database, role, message):
    _node_for_test(monkeypatch, database, role)
    with pytest.raises(PluginConfigError) as err:
        validate_plugin_config(name, CONFIGS[name])
    assert message in err.value.fields["config"]["policy"]
    assert validate_plugin_config(name, {**CONFIGS[name], "policy": "local"})["policy"] == "local"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_accepted_on_a_postgres_node(monkeypatch, name):
    _node_for_test(monkeypatch, "postgres")
    assert validate_plugin_config(name, CONFIGS[name])["policy"] == "cluster"
