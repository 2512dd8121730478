"""acme: certificates from an ACME CA (Let's Encrypt, or any RFC 8555 server) for the proxy's hosts.

Kong's plugin, global only:
- `access` answers the CA's http-01 challenge, `GET /.well-known/acme-challenge/<token>` on plain
  HTTP for a host of `domains` (or any host with `allow_any_domain`), with the key authorization
  the order in progress stored for that token; `.../x` is Kong's sanity check (404 `Not found\\n`).
  As in Kong, the request must match a route for a global plugin to run (Kong's docs: a dummy
  route for `/.well-known/acme-challenge`).
- Certificates are ordered through the Admin API (`POST /acme {"host": ...}`; `PATCH /acme`
  renews those within `renew_threshold_days` of expiry; see `_acme_api`), or by a TLS handshake
  for an allowed host that has no certificate yet (Kong's certificate phase: the default
  certificate now, an order in the background; see `_acme_worker`).
- Where certificates go is Kong's rule: a node with a database (traditional mode) makes them
  `certificates` + `snis` entities (tagged `managed-by-acme`, Kong's save_dao), served by SNI as
  any other; DB-less nodes and hybrid nodes keep them in the storage, and the `certificate`
  phase serves them to a handshake whose SNI has no configured certificate.
- The storage (`_acme_storage`) holds the account key, challenges, renewal records and those
  certificates under Kong's key names: `shm` (also used for `kong`) is the node's shared store,
  `redis` a server any number of nodes share (so a certificate ordered by one node is served
  by all, and any of them answers the CA's challenge). Kong's `consul` and `vault` are refused.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext, TLSHandshake
from meshway.plugins._shm import shared_directory
from meshway.plugins.bundled import _cluster_counters
from meshway.plugins.bundled._acme_storage import open_storage
from meshway.plugins.bundled.rate_limiting import RedisConfig

log = logging.getLogger("meshway.plugins")
CHALLENGE = re.compile(r"^/\.well-known/acme-challenge/(.+)")
LETSENCRYPT = ("https://acme-v02.api.letsencrypt.org", "https://acme-staging-v02.api.letsencrypt.org")


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


RESERVED = ("kong_acme:renew_config:", "kong_acme:renew_last_run", "kong_acme:cert_key:")  # Kong's reserved_words


class RedisExtraOptions(PluginConfig):
    namespace: str = ""
    scan_count: float = 10

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        for word in RESERVED:
            if value and value.startswith(word):
                raise ValueError(f"namespace can't be prefixed with reserved word: {word}")
        return value


# Kong's deprecated names (until 4.0) of `storage_config.redis` fields, and where they now live.
REDIS_SHORTHANDS = {"auth": ("password",), "ssl_server_name": ("server_name",),
                    "namespace": ("extra_options", "namespace"), "scan_count": ("extra_options", "scan_count")}


class RedisStorage(RedisConfig):
    """Kong's shared redis record (`host`, `port`, `database`, `username`, `password`, `ssl`,
    `ssl_verify`, `server_name`, `timeout`) plus acme's `extra_options`."""

    extra_options: RedisExtraOptions = RedisExtraOptions()

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, path in REDIS_SHORTHANDS.items():
            value = data.pop(old, None)
            if value is None:
                continue
            record = data if len(path) == 1 else dict(data.get(path[0]) or {})
            current = record.get(path[-1])
            # A stored config (PATCH merges into it) has the defaults: those count as unset.
            if current not in (None, "", 10) and current != value:
                raise ValueError(f"both deprecated and new field are used but their values mismatch: "
                                 f"{old} = {value} vs {'.'.join(path)} = {current}")
            record[path[-1]] = value
            if len(path) == 2:
                data[path[0]] = record
        return data


class StorageConfig(PluginConfig):
    shm: ShmStorage = ShmStorage()
    kong: KongStorage = KongStorage()
    redis: RedisStorage = RedisStorage()
    # Accepted as records (deck dumps carry them) but refused as `storage` (see AcmeConfig._storage).
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
        if value in ("consul", "vault"):
            raise ValueError(f'"{value}" storage is not available in meshway (no {value.title()} server to test it '
                             'against: Debian 12 does not package it); use "redis" to share certificates '
                             'between nodes, or "kong" or "shm"')
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
        if self.storage == "redis" and not self.storage_config.redis.host:
            raise ValueError("storage_config.redis.host: required field missing (storage is 'redis')")
        return self


class DomainMatcher:
    """Kong's build_domain_matcher: exact names, and `*.example.com` as any name ending `.example.com`."""

    def __init__(self, domains: list[str] | None) -> None:
        self.plain = {d.lower() for d in domains or () if not d.startswith("*")}
        self.suffixes = tuple(d[1:].lower() for d in domains or () if d.startswith("*"))

    def __contains__(self, host: str) -> bool:
        return host in self.plain or (bool(self.suffixes) and host.endswith(self.suffixes))


class Acme(Plugin):
    """Answers ACME http-01 challenges; serves (and orders) certificates kept in its storage."""

    name = "acme"
    priority = 1705  # before authentication plugins, which would refuse the CA's requests
    Config = AcmeConfig
    protocols = ("grpc", "grpcs", "http", "https")
    no_consumer = True
    global_only = True
    referenceable = ("account_email", "eab_kid", "eab_hmac_key")

    def __init__(self, config: AcmeConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        from meshway.plugins.bundled import _acme_worker

        super().__init__(config, index, entity)
        self.domains = DomainMatcher(config.domains)
        node = _cluster_counters._node or {}
        self.trusted = trusted_file(node.get("trusted"))
        self.store = open_storage(config, shared_directory(), self.trusted)
        # Names that have a configured certificate: Kong serves those, not the plugin's.
        self.configured = {s.get("name", "").lower() for s in index.entities("snis")}
        if node.get("database", "off") != "off" and node.get("role") not in ("control_plane", "data_plane"):
            self.certificate = None  # Kong: a node with a database keeps certificates as entities
        else:
            if self.store.remote:
                self.access = self.access_remote  # the storage is over the network: wait in a thread
                self.certs = _acme_worker.RemoteCertificates(config, self.store, self.trusted)
            _acme_worker.keep_renewing(self)

    def allowed(self, host: str) -> bool:
        if not self.config.enable_ipv4_common_name and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host):
            return False
        return self.config.allow_any_domain or host in self.domains

    def challenge(self, ctx: RequestContext) -> str | None:
        """The token of a CA's http-01 request for an allowed host (answered 404 for Kong's `x`)."""
        if ctx.scheme != "http":
            return None
        host = ctx.host.lower().rsplit(":", 1)[0] if not ctx.host.startswith("[") else ctx.host
        found = CHALLENGE.match(ctx.path) if self.allowed(host) else None
        if found is None:
            return None
        if found.group(1) == "x":  # Kong's sanity check (POST /acme with test_http_challenge_flow)
            ctx.exit(404, "Not found\n")
            return None
        return found.group(1)

    def access(self, ctx: RequestContext) -> None:
        token = self.challenge(ctx)
        if token is not None:
            answer(ctx, self.store.get(challenge_key(token)))

    async def access_remote(self, ctx: RequestContext) -> None:
        import asyncio

        token = self.challenge(ctx)
        if token is None:
            return
        try:
            value = await asyncio.to_thread(self.store.get, challenge_key(token))
        except Exception as e:  # Kong: a storage error is a 500 to the CA, which retries
            log.error("acme: error getting challenge response from storage: %s", e)
            ctx.exit(500, "An unexpected error occurred\n")
            return
        answer(ctx, value)

    def certificate(self, tls: TLSHandshake) -> None:
        from meshway.plugins.bundled import _acme_worker
        from meshway.plugins.bundled._acme_client import load_stored_certkey

        if _acme_worker._timer[0] is None:  # this config was compiled outside the worker's loop
            _acme_worker.keep_renewing(self)
        host = (tls.sni or "").lower()
        if not host or host in self.configured or not self.allowed(host):
            return
        if self.store.remote:
            found = self.certs.serve(host)  # never waits: loads, renews or orders in the background
        else:
            found = load_stored_certkey(self.store, host)
            if found is None:
                _acme_worker.order_later(self.config, self.store, host, self.trusted)
        if found is not None:
            tls.set_certificate(*found)


def answer(ctx: RequestContext, value: str | None) -> None:
    if value is None:
        ctx.exit(404, "Not found\n")
    else:
        ctx.exit(200, value, {"Content-Type": "text/plain"})


def trusted_file(setting: Any) -> str | None:
    """The CA file of `lua_ssl_trusted_certificate` (its first file entry; `system` is the default)."""
    for entry in str(setting or "").split(","):
        if entry.strip() and entry.strip() != "system":
            return entry.strip()
    return None


def challenge_key(token: str) -> str:
    return f"{token}#http-01"  # lua-resty-acme's http-01 key


def certkey_key(host: str) -> str:
    return f"kong_acme:cert_key:{host}"


PLUGIN = Acme
