"""The acme plugin's background work in a proxy worker: what a TLS handshake cannot wait for.

The `certificate` phase runs inside OpenSSL's SNI callback on the worker's event loop, so it
never waits for an order nor for a storage over the network. Instead, in a thread:
- `order_later` (storage shm): an allowed host without a certificate is ordered; the handshake
  that noticed gets the default certificate, as in Kong.
- `RemoteCertificates` (storage redis): each process keeps the certificates it read from the
  storage. `serve` answers from there and, in a thread, reads a host's entry again when it has
  none or it is older than REFRESH (another node may have ordered or renewed it); orders one when
  the storage has none (the storage's lock lets one node order, the others find the certificate
  at their next read); and renews one within `renew_threshold_days` of expiry (at most once a
  day per host and threshold), the old certificate served until the new one is stored.
- `keep_renewing`: Kong's renewal timer in every worker (`PATCH /acme`'s work every day), for
  the acme plugin of the config this process runs now, so that hosts no client connects to are
  renewed too on nodes without an Admin API (data planes).
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from cryptography import x509

log = logging.getLogger("meshway.plugins")
REFRESH = 60.0  # seconds a certificate read from the storage is served before it is read again
MISS_RETRY = 5.0  # Kong's negative cache ttl: a host without a certificate is looked up again after
RENEW_EVERY = 86400.0

_running: set[Any] = set()  # the background jobs of this process, by what they are for


def _in_thread(job: Any, fn: Callable[..., None], *args: Any) -> None:
    """Run `fn` in the loop's thread pool unless the same job is already running in this process."""
    if job in _running:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # outside a worker's loop (nothing to hand the job to)
        return
    _running.add(job)
    loop.run_in_executor(None, fn, *args).add_done_callback(lambda _: _running.discard(job))


_current: list[Any] = [None]  # a weak reference to this process's acme plugin (Kong's CONFIG)
_timer: list[Any] = [None]


def keep_renewing(plugin: Any) -> None:
    """Make `plugin` the one the daily renewal uses; start the timer once per process (in its loop)."""
    _current[0] = weakref.ref(plugin)
    if _timer[0] is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # compiled outside the loop: the first handshake starts it
            return
        _timer[0] = loop.create_task(renew_every(RENEW_EVERY))


async def renew_every(seconds: float) -> None:
    from meshway.plugins.bundled._acme_api import renew

    while True:
        await asyncio.sleep(seconds)
        plugin = _current[0]() if _current[0] is not None else None
        if plugin is None:  # the config has no acme plugin any more
            continue
        try:
            await asyncio.to_thread(renew, plugin.config, plugin.store, None, plugin.trusted)
        except Exception as e:  # the next run tries again
            log.error("acme: renewal failed: %s", e)


def order_later(config: Any, store: Any, host: str, trusted: str | None) -> None:
    from meshway.plugins.bundled import _cluster_counters

    if (_cluster_counters._node or {}).get("role") == "data_plane" and config.storage == "kong":
        log.error('acme: creating new certificate through proxy side with "kong" storage in Hybrid mode is not '
                  "supported; consider create certificate using Admin API or use other external storages")
        return
    _in_thread(("order", host), _order, config, store, host, trusted)


def _order(config: Any, store: Any, host: str, trusted: str | None, previous_key: str | None = None) -> bool:
    from meshway.plugins.bundled._acme_api import obtain

    try:
        obtain(config, store, None, host, trusted, previous_key)
    except Exception as e:  # another node or worker holds the lock, or the order failed (backoff recorded)
        log.error("acme: failed to update certificate for host: %s err: %s", host, e)
        return False
    log.info("acme: certificate for %s obtained", host)
    return True


@dataclass(frozen=True)
class Loaded:
    """A host's certificate as last read from the storage (cert None: the storage had none)."""

    cert: str | None
    key: str | None
    not_after: float
    at: float  # time.monotonic() of the read


_loaded: dict[tuple[int, str], Loaded] = {}
_renew_tried: dict[tuple[int, str], tuple[float, float]] = {}  # (threshold, time.monotonic())


class RemoteCertificates:
    """Certificates of one remote storage, as this process last read them."""

    def __init__(self, config: Any, store: Any, trusted: str | None) -> None:
        self.config, self.store, self.trusted = config, store, trusted
        self.scope = id(store)  # one storage object per storage settings per process
        self.threshold = config.renew_threshold_days * 86400

    def serve(self, host: str) -> tuple[str, str] | None:
        entry = _loaded.get((self.scope, host))
        now = time.monotonic()
        if entry is None or now - entry.at > (REFRESH if entry.cert else MISS_RETRY) or self.renew_due(host, entry):
            _in_thread(("load", self.scope, host), self.load, host)
        return (entry.cert, entry.key) if entry is not None and entry.cert and entry.key else None

    def renew_due(self, host: str, entry: Loaded) -> bool:
        if entry.cert is None or entry.not_after - self.threshold > time.time():
            return False
        tried = _renew_tried.get((self.scope, host))
        return tried is None or tried[0] != self.threshold or time.monotonic() - tried[1] > RENEW_EVERY

    def load(self, host: str) -> None:
        """In a thread: read the host's certificate; order or renew it when needed."""
        from meshway.plugins.bundled._acme_client import load_stored_certkey

        try:
            found = load_stored_certkey(self.store, host)
        except Exception as e:  # the storage is down: keep serving what was read before
            log.error("acme: can't load cert and key from storage: %s", e)
            return
        if found is None and _order(self.config, self.store, host, self.trusted):
            found = load_stored_certkey(self.store, host)
        elif found is not None and self.renew_due(host, _loaded_of(found)):
            _renew_tried[(self.scope, host)] = (self.threshold, time.monotonic())
            log.info("acme: renew certificate for host %s", host)
            if _order(self.config, self.store, host, self.trusted, found[1]):
                found = load_stored_certkey(self.store, host) or found
        _loaded[(self.scope, host)] = _loaded_of(found)


def _loaded_of(found: tuple[str, str] | None) -> Loaded:
    if found is None:
        return Loaded(None, None, 0.0, time.monotonic())
    not_after = x509.load_pem_x509_certificate(found[0].encode()).not_valid_after_utc.timestamp()
    return Loaded(found[0], found[1], not_after, time.monotonic())
