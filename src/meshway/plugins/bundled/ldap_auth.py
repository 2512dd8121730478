"""ldap-auth: `Authorization: LDAP base64(user:password)` checked by a simple bind (Kong's ldap-auth).

Rules, as Kong 3.x:
- The value must start with `header_type` (any case) then whitespace and base64 of
  `username:password` (the password not empty). `Proxy-Authorization` is tried first, then
  `Authorization`. The bind DN is `<attribute>=<username>,<base_dn>`.
- Results, good and bad, are cached per (host, port, base_dn, attribute, cache_ttl, username,
  password) for `cache_ttl` seconds, so the directory sees one bind per user and password per
  ttl (Kong's kong.cache with neg_ttl); concurrent misses for one key share one bind.
- A refused bind, or a TLS handshake (LDAPS/StartTLS) that fails, is 401 `Unauthorized` with
  `WWW-Authenticate: LDAP` (`header_type` as given when not `ldap`, plus `realm`); a directory
  that cannot be reached is a 500, as in Kong.
- The authenticated request has no consumer: the credential (username) identifies it, and
  `anonymous` is used on failure.
Unlike Kong, the username is escaped as an RDN value (RFC 4514), so `a,ou=admins` cannot pick
another part of the tree. The bind runs in a thread (ldap3 is blocking) with `timeout`;
`keepalive` is accepted and unused: each cache miss binds on a new connection.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import ssl
import time
from typing import Any, Mapping

from pydantic import Field, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled._auth import UNEXPECTED, AnonymousFallback

log = logging.getLogger("meshway.plugins")
UNAUTHORIZED = {"message": "Unauthorized"}
CACHE_SIZE = 10_000
_PAIR = re.compile(r"^(.*?):(.+)$")


class LdapAuthConfig(PluginConfig):
    """Kong's ldap-auth schema."""

    ldap_host: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.:\[\]_-]+$")
    ldap_port: int = Field(default=389, ge=0, le=65535)
    ldaps: bool = False
    start_tls: bool = False
    verify_ldap_host: bool = False
    base_dn: str = Field(min_length=1)
    attribute: str = Field(min_length=1)
    cache_ttl: float = 60
    hide_credentials: bool = False
    timeout: float = 10000
    keepalive: float = 60000
    anonymous: str | None = None
    header_type: str = Field(default="ldap", min_length=1)
    realm: str | None = None

    @model_validator(mode="after")
    def _one_tls_mode(self) -> "LdapAuthConfig":
        if self.ldaps and self.start_tls:
            raise ValueError("'ldaps' and 'start_tls' cannot be enabled simultaneously")
        return self


class LdapAuth(Plugin):
    """Authenticates a user by a bind to an LDAP directory."""

    name = "ldap-auth"
    priority = 1200
    no_consumer = True
    Config = LdapAuthConfig

    def __init__(self, config: LdapAuthConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.anonymous = AnonymousFallback(self.name, index, config.anonymous)
        scheme = "LDAP" if config.header_type == "ldap" else config.header_type
        self.challenge = {"WWW-Authenticate": f'{scheme} realm="{config.realm}"' if config.realm else scheme}
        self.prefix = re.compile(r"^\s*" + re.escape(config.header_type.lower()) + r"\s+")
        self.key_prefix = (f"{config.ldap_host.lower()}:{config.ldap_port}:{config.base_dn}:{config.attribute}:"
                           f"{int(config.cache_ttl)}:")
        self.cache: dict[str, tuple[float, bool]] = {}
        self.pending: dict[str, asyncio.Future] = {}

    async def access(self, ctx: RequestContext) -> None:
        if self.anonymous.skip(ctx):
            return
        authorization, proxy_authorization = ctx.get_header("authorization"), ctx.get_header("proxy-authorization")
        if not (authorization or proxy_authorization):
            return self.anonymous.fail(ctx, 401, UNAUTHORIZED, self.challenge)
        found = None
        try:
            for value in (proxy_authorization, authorization):
                if value and found is None:
                    found = await self.authenticate(value)
        except OSError as e:
            log.error("ldap-auth: cannot reach %s:%s: %s", self.config.ldap_host, self.config.ldap_port, e)
            return ctx.exit(500, UNEXPECTED)
        if found is None:
            return self.anonymous.fail(ctx, 401, UNAUTHORIZED, self.challenge)
        if self.config.hide_credentials:
            ctx.remove_header("authorization")
            ctx.remove_header("proxy-authorization")
        ctx.authenticate(None, found, found["username"])

    async def authenticate(self, value: str) -> dict[str, Any] | None:
        """The credential for a header value whose bind succeeds; None otherwise."""
        pair = self.credentials(value)
        if pair is None:
            return None
        key = "ldap_auth_cache:" + hashlib.sha256((self.key_prefix + f"{pair[0]}:{pair[1]}").encode(
            "utf-8", "surrogatepass")).hexdigest()
        ok = await self.cached_bind(key, *pair)
        return {"id": key, "username": pair[0]} if ok else None

    def credentials(self, value: str) -> tuple[str, str] | None:
        """(username, password) from `<header_type> base64(user:password)`."""
        m = self.prefix.match(value.lower())
        if m is None:
            return None
        try:
            decoded = base64.b64decode(value[m.end():].strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        pair = _PAIR.match(decoded)
        return (pair[1], pair[2]) if pair else None

    async def cached_bind(self, key: str, username: str, password: str) -> bool:
        now = time.monotonic()
        hit = self.cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        waiting = self.pending.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future = asyncio.get_running_loop().run_in_executor(None, bind, self.config, username, password)
        self.pending[key] = future
        try:
            ok = await future
        finally:
            self.pending.pop(key, None)
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = (time.monotonic() + self.config.cache_ttl, ok)
        return ok


def bind(conf: LdapAuthConfig, username: str, password: str) -> bool:
    """A simple bind as `attribute=username,base_dn`: True when accepted, False when refused or the
    TLS handshake fails; OSError when the directory cannot be reached."""
    import ldap3
    from ldap3.core import exceptions as ldap_errors
    from ldap3.utils.dn import escape_rdn

    if not username:
        return False  # `attribute=,base_dn` names no entry (and ldap3 cannot escape an empty value)
    seconds = max(1, -(-int(conf.timeout) // 1000))  # whole seconds: ldap3 packs them into SO_RCVTIMEO
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED if conf.verify_ldap_host else ssl.CERT_NONE)
    server = ldap3.Server(conf.ldap_host, port=conf.ldap_port, use_ssl=conf.ldaps, tls=tls, connect_timeout=seconds,
                          get_info=ldap3.NONE)
    who = f"{conf.attribute}={escape_rdn(username)},{conf.base_dn}"
    conn = ldap3.Connection(server, user=who, password=password, receive_timeout=seconds, raise_exceptions=False,
                            read_only=True)
    try:
        conn.open()
        if conf.start_tls and not conn.start_tls():
            return False
        return bool(conn.bind())
    except ldap_errors.LDAPCommunicationError as e:  # cannot connect, lost connection, timeout
        if conf.ldaps and isinstance(e, ldap_errors.LDAPSocketOpenError) and _tls_failure(e):
            return False  # the LDAPS handshake failed: refused, as Kong's
        raise OSError(str(e)) from None
    except (ldap_errors.LDAPException, ssl.SSLError, ValueError, UnicodeError):
        return False  # StartTLS refused, or credentials ldap3 will not send (SASLprep): refused
    finally:
        try:
            conn.unbind()
        except Exception:  # noqa: BLE001 - closing a connection that may never have opened
            pass


def _tls_failure(error: Exception) -> bool:
    text = str(error).lower()
    return "ssl" in text or "certificate" in text or "tls" in text


PLUGIN = LdapAuth
