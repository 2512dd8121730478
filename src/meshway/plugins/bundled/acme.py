"""acme: certificates from an ACME CA (Let's Encrypt, or any RFC 8555 server) for the proxy's hosts.

Kong's plugin, global only:
- `access` answers the CA's http-01 challenge, `GET /.well-known/acme-challenge/<token>` on plain
  HTTP for a host of `domains` (or any host with `allow_any_domain`), with the key authorization
  the order in progress stored for that token; `.../x` is Kong's sanity check (404 `Not found\\n`).
  As in Kong, the request must match a route for a global plugin to run (Kong's docs: a dummy
  route for `/.well-known/acme-challenge`).
- Certificates are ordered through the Admin API (`POST /acme {"host": ...}`; `PATCH /acme`
  renews those within `renew_threshold_days` of expiry; see `_acme_api`). With `storage: kong` on
  a node with a database they become a `certificates` entity and an `snis` entity (tagged
  `managed-by-acme`, Kong's save_dao), served by SNI as any other certificate; otherwise (`shm`)
  they stay in the node's store and `certificate` serves them to a handshake whose SNI has no
  configured certificate.
- Account key, challenges, renewal records and `shm` certificates live in the node's shared
  store (`_cache_store`, dictionary `storage_config.shm.shm_name`, Kong's `kong` by default).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext, TLSHandshake
from meshway.plugins._shm import shared_directory
from meshway.plugins.bundled import _cluster_counters
from meshway.plugins.bundled._cache_store import cache_store

log = logging.getLogger("meshway.plugins")
CHALLENGE = re.compile(r"^/\.well-known/acme-challenge/(.+)")
LETSENCRYPT = ("https://acme-v02.api.letsencrypt.org", "https://acme-staging-v02.api.letsencrypt.org")
MB = 1 << 20
STORE_SIZE = 5 * MB  # Kong's `kong` shared dict


class ShmStorage(PluginConfig):
    shm_name: str = "kong"

    @field_validator("shm_name")
    @classmethod
    def _known(cls, name: str) -> str:
        from meshway.plugins.bundled.proxy_cache import DICTIONARIES

        if name not in DICTIONARIES:  # Kong: ngx.shared[name] must exist
            raise ValueError(f"missing shared dict '{name}'")
        return name


class KongStorage(PluginConfig):
    pass


class StorageConfig(PluginConfig):
    shm: ShmStorage = ShmStorage()
    kong: KongStorage = KongStorage()
    # Kong's other storages: accepted as records (deck dumps carry them), not used (see `storage`).
    redis: dict[str, Any] = {}
    consul: dict[str, Any] = {}
    vault: dict[str, Any] = {}


class AcmeConfig(PluginConfig):
    account_email: str
    account_key: dict[str, Any] | None = None
    api_uri: str = "https://acme-v02.api.letsencrypt.org/directory"
    tos_accepted: bool = False
    eab_kid: str | None = None
    eab_hmac_key: str | None = None
    cert_type: Literal["rsa", "ecc"] = "rsa"
    rsa_key_size: Literal[2048, 3072, 4096] = 4096
    renew_threshold_days: float = 14
    domains: list[str] | None = None
    allow_any_domain: bool = False
    fail_backoff_minutes: float = 5
    storage: Literal["kong", "shm", "redis", "consul", "vault"] = "shm"
    storage_config: StorageConfig = StorageConfig()
    preferred_chain: str | None = None
    enable_ipv4_common_name: bool = True

    @field_validator("account_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not re.search(r"\w*[^\w\s]*@+\w*\.?\w*", value) or "@" not in value:
            raise ValueError("invalid value: " + value)
        return value

    @field_validator("api_uri")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("missing host in url")
        return value

    @field_validator("account_key")
    @classmethod
    def _account_key(cls, value: dict | None) -> dict | None:
        if value is not None:
            raise ValueError("account keys from key sets are not supported by meshway yet; leave it null "
                             "(an account key is made and kept in the storage)")
        return value

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        if value in ("redis", "consul", "vault"):
            raise ValueError(f"storage '{value}' is not supported by meshway yet; use 'kong' or 'shm'")
        node = _cluster_counters._node
        if node is not None and value == "kong" and node["database"] == "off" and node["role"] != "data_plane":
            raise ValueError('"kong" storage can\'t be used with dbless mode')
        if node is not None and value == "shm" and node["role"] == "control_plane":
            raise ValueError('"shm" storage can\'t be used in Hybrid mode')
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str] | None) -> list[str] | None:
        for host in value or ():
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*", host):
                raise ValueError(f"invalid hostname: {host}")
        return value

    @model_validator(mode="after")
    def _tos(self) -> "AcmeConfig":
        if self.api_uri.rstrip("/").removesuffix("/directory") in LETSENCRYPT and not self.tos_accepted:
            raise ValueError("terms of service must be accepted, see https://letsencrypt.org/repository/")
        return self


class DomainMatcher:
    """Kong's build_domain_matcher: exact names, and `*.example.com` as any name ending `.example.com`."""

    def __init__(self, domains: list[str] | None) -> None:
        self.plain = {d.lower() for d in domains or () if not d.startswith("*")}
        self.suffixes = tuple(d[1:].lower() for d in domains or () if d.startswith("*"))

    def __contains__(self, host: str) -> bool:
        return host in self.plain or (bool(self.suffixes) and host.endswith(self.suffixes))


class Acme(Plugin):
    """Answers ACME http-01 challenges; serves the certificates it obtained (storage shm)."""

    name = "acme"
    priority = 1705  # before authentication plugins, which would refuse the CA's requests
    Config = AcmeConfig
    protocols = ("grpc", "grpcs", "http", "https")
    no_consumer = True
    global_only = True
    referenceable = ("account_email", "eab_kid", "eab_hmac_key")

    def __init__(self, config: AcmeConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.domains = DomainMatcher(config.domains)
        self.store = storage(config)
        # Names that have a configured certificate: Kong serves those, not the plugin's.
        self.configured = {s.get("name", "").lower() for s in index.entities("snis")}
        if config.storage == "kong" and (_cluster_counters._node or {}).get("database", "off") != "off":
            self.certificate = None  # certificates are entities: served by SNI as any other

    def allowed(self, host: str) -> bool:
        if not self.config.enable_ipv4_common_name and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host):
            return False
        return self.config.allow_any_domain or host in self.domains

    def access(self, ctx: RequestContext) -> None:
        if ctx.scheme != "http":
            return
        host = ctx.host.lower().rsplit(":", 1)[0] if not ctx.host.startswith("[") else ctx.host
        if not self.allowed(host):
            return
        found = CHALLENGE.match(ctx.path)
        if found is None:
            return
        token = found.group(1)
        if token == "x":  # Kong's sanity check (POST /acme with test_http_challenge_flow)
            ctx.exit(404, "Not found\n")
            return
        entry = self.store.fetch(challenge_key(token), _now())
        if entry is None:
            ctx.exit(404, "Not found\n")
            return
        ctx.exit(200, entry[1], {"Content-Type": "text/plain"})

    def certificate(self, tls: TLSHandshake) -> None:
        host = (tls.sni or "").lower()
        if not host or host in self.configured or not self.allowed(host):
            return
        entry = self.store.fetch(certkey_key(host), _now())
        if entry is not None:
            meta = entry[0]
            tls.set_certificate(meta["cert"], meta["key"])
        elif host not in _ordering:
            self.order_later(host)

    def order_later(self, host: str) -> None:
        """Kong: no certificate yet for an allowed host: serve the default one now, order one in the
        background (here in a thread; the storage's lock keeps other workers from ordering too)."""
        import asyncio

        node = _cluster_counters._node or {}
        if node.get("role") == "data_plane" and self.config.storage == "kong":
            log.error('acme: creating new certificate through proxy side with "kong" storage in Hybrid mode '
                      "is not supported; consider create certificate using Admin API")
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        _ordering.add(host)
        future = loop.run_in_executor(None, _order_in_background, self.config, self.store, host, _trusted(node))
        future.add_done_callback(lambda _: _ordering.discard(host))


_ordering: set[str] = set()  # hosts this process is ordering a certificate for


def _trusted(node: Mapping[str, Any]) -> str | None:
    for entry in str(node.get("trusted") or "").split(","):
        if entry.strip() and entry.strip() != "system":
            return entry.strip()
    return None


def _order_in_background(config: AcmeConfig, store: Any, host: str, trusted: str | None) -> None:
    from meshway.plugins.bundled._acme_api import obtain

    try:
        obtain(config, store, None, host, trusted, None)
        log.info("acme: certificate for %s obtained", host)
    except Exception as e:  # another worker holds the lock, or the order failed (backoff recorded)
        log.error("acme: failed to update certificate for host: %s err: %s", host, e)


def storage(config: AcmeConfig) -> Any:
    """The node's shared store holding this plugin's ACME state (`storage_config.shm.shm_name`)."""
    from meshway.plugins.bundled.proxy_cache import DICTIONARIES

    name = config.storage_config.shm.shm_name
    return cache_store(shared_directory(), name, DICTIONARIES.get(name, STORE_SIZE))


def challenge_key(token: str) -> str:
    return f"kong_acme:challenge:{token}"


def certkey_key(host: str) -> str:
    return f"kong_acme:cert_key:{host}"


def _now() -> float:
    import time

    return time.time()


PLUGIN = Acme
