"""acme: Kong's defaults and 400s naming the field, the domain matcher, and the directory URL."""
from __future__ import annotations

import pytest

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled._acme_client import directory_url
from meshway.plugins.bundled.acme import DomainMatcher

BASE = {"account_email": "ops@example.test", "api_uri": "https://ca.example.test/dir"}


def test_defaults_are_kongs():
    conf = validate_plugin_config("acme", BASE)
    assert (conf["cert_type"], conf["rsa_key_size"], conf["renew_threshold_days"], conf["storage"]) == ("rsa", 4096, 14, "shm")
    assert conf["storage_config"]["shm"] == {"shm_name": "kong"} and conf["fail_backoff_minutes"] == 5
    assert validate_plugin_config("acme", {"account_email": "a@b.test", "tos_accepted": True})["api_uri"] == \
        "https://acme-v02.api.letsencrypt.org/directory"


@pytest.mark.parametrize("config, field, needle", [
    ({}, "account_email", "required"),
    ({**BASE, "account_email": "nobody"}, "account_email", "invalid value"),
    ({"account_email": "a@b.test"}, "@entity", "terms of service must be accepted"),
    ({**BASE, "cert_type": "dsa"}, "cert_type", ""),
    ({**BASE, "rsa_key_size": 1024}, "rsa_key_size", ""),
    ({**BASE, "storage": "redis"}, "storage", "not supported by meshway yet"),
    ({**BASE, "account_key": {"key_id": "k"}}, "account_key", "not supported"),
    ({**BASE, "domains": ["bad host"]}, "domains", "invalid hostname"),
    ({**BASE, "api_uri": "not a url"}, "api_uri", "host"),
])
def test_bad_config_names_the_field(config, field, needle):
    with pytest.raises(PluginConfigError) as err:
        validate_plugin_config("acme", config)
    assert needle.lower() in str(err.value.fields["config"].get(field, err.value.fields["config"])).lower(), err.value.fields


def test_domains_match_as_kongs():
    m = DomainMatcher(["example.test", "*.wild.test"])
    assert "example.test" in m and "a.wild.test" in m and "a.b.wild.test" in m
    assert "wild.test" not in m and "other.test" not in m and "a.example.test" not in m


def test_directory_url():
    assert directory_url("https://acme-v02.api.letsencrypt.org") == "https://acme-v02.api.letsencrypt.org/directory"
    assert directory_url("https://127.0.0.1:14000/dir") == "https://127.0.0.1:14000/dir"
