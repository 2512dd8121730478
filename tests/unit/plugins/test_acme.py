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
    ({**BASE, "storage": "redis"}, "@entity", "storage_config.redis.host: required field missing"),
    ({**BASE, "storage": "consul"}, "storage", '"consul" storage is not available in meshway'),
    ({**BASE, "storage": "vault"}, "storage", "Debian 12 does not package it"),
    ({**BASE, "storage_config": {"redis": {"extra_options": {"namespace": "kong_acme:cert_key:x"}}}}, "storage_config",
     "namespace can't be prefixed with reserved word: kong_acme:cert_key:"),
    ({**BASE, "storage_config": {"redis": {"auth": "a", "password": "b"}}}, "storage_config",
     "both deprecated and new field are used"),
    ({**BASE, "storage_config": {"redis": {"port": 70000}}}, "storage_config", "port"),
    ({**BASE, "account_key": {"key_id": "k"}}, "account_key", "not supported"),
    ({**BASE, "domains": ["bad host"]}, "domains", "invalid hostname"),
    ({**BASE, "api_uri": "not a url"}, "api_uri", "host"),
])
def test_bad_config_names_the_field(config, field, needle):
    with pytest.raises(PluginConfigError) as err:
        validate_plugin_config("acme", config)
    assert needle.lower() in str(err.value.fields["config"].get(field, err.value.fields["config"])).lower(), err.value.fields


def test_redis_storage_record_is_kongs_with_its_deprecated_names():
    conf = validate_plugin_config("acme", {**BASE, "storage": "redis", "storage_config": {"redis": {
        "host": "127.0.0.1", "auth": "secret", "ssl_server_name": "redis.test", "namespace": "ns:", "scan_count": 20}}})
    redis = conf["storage_config"]["redis"]
    assert (redis["host"], redis["port"], redis["database"], redis["timeout"]) == ("127.0.0.1", 6379, 0, 2000)
    assert (redis["password"], redis["server_name"], redis["ssl"], redis["ssl_verify"]) == ("secret", "redis.test", False, False)
    assert redis["extra_options"] == {"namespace": "ns:", "scan_count": 20} and "auth" not in redis
    # A stored config (the defaults filled in) still takes a deprecated name in a PATCH...
    stored = validate_plugin_config("acme", {**BASE, "storage": "redis", "storage_config": {"redis": {"host": "h"}}})
    plain = stored["storage_config"]["redis"]
    again = validate_plugin_config("acme", {**stored, "storage_config": {"redis": {**plain, "namespace": "other:"}}})
    assert again["storage_config"]["redis"]["extra_options"]["namespace"] == "other:"
    # ...but not one that contradicts a value set under the new name.
    with pytest.raises(PluginConfigError) as err:
        validate_plugin_config("acme", {**conf, "storage_config": {"redis": {**redis, "namespace": "other:"}}})
    assert "namespace = other: vs extra_options.namespace = ns:" in str(err.value.fields)


def test_shm_storage_keeps_kongs_values_and_locks(tmp_path):
    from meshway.plugins.bundled._acme_storage import ShmStorage, _glob_escape

    store = ShmStorage(tmp_path, "kong")
    assert store.add("kong_acme:update_lock:a.test", "placeholder", 30) is True
    assert store.add("kong_acme:update_lock:a.test", "placeholder", 30) is False
    store.set("kong_acme:renew_config:a.test", '{"host": "a.test"}')
    store.set("kong_acme:renew_config:b.test", '{"host": "b.test"}', 0.001)
    import time
    time.sleep(0.01)
    assert store.list("kong_acme:renew_config:") == ["kong_acme:renew_config:a.test"]
    store.delete("kong_acme:update_lock:a.test")
    assert store.get("kong_acme:update_lock:a.test") is None
    assert _glob_escape("ns*[x]:") == "ns\\*\\[x\\]:"


def test_domains_match_as_kongs():
    m = DomainMatcher(["example.test", "*.wild.test"])
    assert "example.test" in m and "a.wild.test" in m and "a.b.wild.test" in m
    assert "wild.test" not in m and "other.test" not in m and "a.example.test" not in m


def test_directory_url():
    assert directory_url("https://acme-v02.api.letsencrypt.org") == "https://acme-v02.api.letsencrypt.org/directory"
    assert directory_url("https://127.0.0.1:14000/dir") == "https://127.0.0.1:14000/dir"


class PluginForTest:
    """What the renewal timer reads of the acme plugin: its config, storage and CA file."""

    def __init__(self, config, store):
        self.config, self.store, self.trusted = config, store, None


class _CountedSlot(list):
    """The timer's `_current` slot, counting the timer's looks at it (each run reads it)."""

    reads = 0

    def __getitem__(self, index):
        self.reads += 1
        return super().__getitem__(index)


def test_the_renewal_timer_runs_for_the_current_plugin_only(tmp_path, monkeypatch):
    import asyncio
    import gc
    import weakref

    from meshway.plugins.bundled import _acme_worker
    from meshway.plugins.bundled._acme_storage import ShmStorage
    from meshway.plugins.bundled.acme import AcmeConfig

    store = ShmStorage(tmp_path, "kong")
    plugin = PluginForTest(AcmeConfig.model_validate(BASE), store)
    slot = _CountedSlot([weakref.ref(plugin)])
    monkeypatch.setattr(_acme_worker, "_current", slot)

    async def run_until(condition, bound: float = 30.0):  # the bound only ends a wait that failed
        task = asyncio.ensure_future(_acme_worker.renew_every(0.01))
        deadline = asyncio.get_running_loop().time() + bound
        while not condition() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(run_until(lambda: store.get("kong_acme:renew_last_run")))
    assert store.get("kong_acme:renew_last_run")  # Kong's record of a renewal run
    store.delete("kong_acme:renew_last_run")
    del plugin  # a new config without acme: the old instance goes, and the timer renews nothing
    gc.collect()
    slot.reads = 0
    asyncio.run(run_until(lambda: slot.reads >= 40))  # 20 runs of the timer at least
    assert slot.reads >= 40
    assert store.get("kong_acme:renew_last_run") is None
