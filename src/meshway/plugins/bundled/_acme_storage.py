"""The acme plugin's storages: lua-resty-acme's storage interface, with Kong's key names and values.

Theory of operation:
- A storage keeps strings under keys: `get`, `set` (with an optional ttl in seconds), `add` (set
  only when absent: the update lock), `delete` and `list(prefix)`. What the plugin keeps, as Kong
  (client.lua) and lua-resty-acme (challenge/http-01.lua) name and encode it, so that a meshway
  node and a Kong node sharing one redis read each other's entries:
  | key | value |
  | --- | --- |
  | `kong_acme:account:<api_uri>:<base64 email>` | `{"key": <account key PEM>}` |
  | `kong_acme:cert_key:<host>` | `{"cert": <full chain PEM>, "key": <key PEM>}` |
  | `kong_acme:renew_config:<host>` | `{"host": <host>, "expire_at": <unix seconds>}` |
  | `kong_acme:renew_last_run` | local time of the last renewal run |
  | `kong_acme:fail_backoff:<host>` | unix second until which orders for host wait (ttl) |
  | `kong_acme:update_lock:<host>` | `placeholder` (ttl 30 s) |
  | `<token>#http-01` | the challenge's key authorization (ttl 1 h) |
- `shm`: the node's shared store (`_cache_store`, dictionary `storage_config.shm.shm_name`):
  shared by the node's workers and its Admin API, not by other nodes.
- `redis`: a redis server shared by any number of nodes (DB-less, data planes, Kong); keys get
  `storage_config.redis.extra_options.namespace` in front, as lua-resty-acme's. Blocking
  (redis-py's synchronous client): callers run it in a thread, never on a worker's event loop.
  `remote` is True for it: the certificate phase, which cannot wait, reads it through a cache.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

STORE_SIZE = 5 << 20  # Kong's `kong` shared dict
FOREVER = 10 * 365 * 86400  # the shm store wants a ttl


class ShmStorage:
    """The node's shared store (one SQLite file per dictionary, see `_cache_store`)."""

    remote = False

    def __init__(self, directory: Path | None, name: str) -> None:
        from meshway.plugins.bundled._cache_store import cache_store
        from meshway.plugins.bundled.proxy_cache import DICTIONARIES

        self.store = cache_store(directory, name, DICTIONARIES.get(name, STORE_SIZE))
        # One connection per process, used from the event loop and from order threads: one
        # write transaction at a time (two BEGINs on one connection would fail).
        self.writing = threading.Lock()

    def get(self, key: str) -> str | None:
        found = self.store.fetch(key, time.time())
        return found[0]["v"] if found is not None else None

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        with self.writing:
            if not self.store.store(key, {"v": value}, b"", ttl or FOREVER, time.time()):
                raise OSError(f"could not write {key} to shm storage")

    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        with self.writing:  # atomic across the node's workers: one transaction
            return self.store.store(key, {"v": value}, b"", ttl or FOREVER, time.time(), only_new=True)

    def delete(self, key: str) -> None:
        with self.writing:
            self.store.purge(key)

    def list(self, prefix: str) -> list[str]:
        return self.store.keys_with_prefix(prefix, time.time())


class RedisStorage:
    """A redis server (Kong's `storage_config.redis`), shared by every node configured with it."""

    remote = True

    def __init__(self, config: Any, trusted: str | None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from meshway.plugins.bundled._ratelimit import redis_options

        options = redis_options(config)
        if config.ssl and config.ssl_verify and trusted:
            options["ssl_ca_certs"] = trusted  # Kong: lua_ssl_trusted_certificate
        self.client = redis.Redis(retry=Retry(NoBackoff(), 0), decode_responses=True, **options)
        self.namespace = config.extra_options.namespace
        self.scan_count = int(config.extra_options.scan_count)

    def get(self, key: str) -> str | None:
        return self.client.get(self.namespace + key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.client.set(self.namespace + key, value, px=int(ttl * 1000) if ttl else None)

    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        return bool(self.client.set(self.namespace + key, value, nx=True, px=int(ttl * 1000) if ttl else None))

    def delete(self, key: str) -> None:
        self.client.delete(self.namespace + key)

    def list(self, prefix: str) -> list[str]:
        found = self.client.scan_iter(match=_glob_escape(self.namespace + prefix) + "*", count=self.scan_count)
        return sorted(key[len(self.namespace):] for key in found)


def _glob_escape(text: str) -> str:
    """A SCAN pattern matching `text` literally (redis globs treat *?[]\\ specially)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


_opened: dict[str, Any] = {}
_lock = threading.Lock()


def open_storage(conf: Any, shm_directory: Path | None, trusted: str | None) -> Any:
    """The storage of an acme config (one per storage settings per process: redis keeps its pool)."""
    if conf.storage == "redis":
        key = "redis:" + conf.storage_config.redis.model_dump_json()
    else:
        key = f"shm:{shm_directory}:{conf.storage_config.shm.shm_name}"
    with _lock:
        if key not in _opened:
            if conf.storage == "redis":
                _opened[key] = RedisStorage(conf.storage_config.redis, trusted)
            else:
                _opened[key] = ShmStorage(shm_directory, conf.storage_config.shm.shm_name)
        return _opened[key]
