"""session: an encrypted cookie remembers who authenticated, so later requests need no credential.

Theory of operation (as Kong 3.x's session plugin, storage `cookie`):
- `access` (priority 1900, before the auth plugins) opens the cookie: a valid session attaches
  its consumer and credential, so an auth plugin with `anonymous` set (logical OR) lets the
  request through. A logout request (a method of `logout_methods` with `logout_query_arg` in
  the query, or `logout_post_arg` in the body with `read_body_for_logout`) is answered 200 with
  the cookie cleared.
- `response`: when an auth plugin authenticated the request (a credential and a consumer) and no
  session says so already, a new session cookie is set; an open session is renewed (a new
  cookie) once a quarter of its idling timeout or half its rolling timeout has passed.
- The cookie is AES-256-GCM (key derived from `secret` and `audience` by HKDF-SHA256) over a
  JSON payload: session id, consumer id, credential id, groups, subject, created (for
  `absolute_timeout`) and issued (for `idling_timeout` and `rolling_timeout`) times. Anything
  that does not decrypt, or is past a timeout, is no session: never an error.
Differences from Kong: the cookie format is ours (resty.session's is not needed by clients);
`storage: kong` (sessions in the database) is refused; `remember` makes the same cookie
persistent with the remember timeouts instead of adding a second cookie; `store_metadata` and
`hash_subject` only concern database storage and are accepted without effect.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import time
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled import _body

HeaderName = Literal["id", "audience", "subject", "timeout", "idling-timeout", "rolling-timeout", "absolute-timeout"]
READ_BODY_METHODS = frozenset({"DELETE", "PATCH", "POST", "PUT"})
PENDING = "session.set_cookie"
OPENED = "session.opened"
MAX_COOKIE = 8192
_SHORTHANDS = {"cookie_lifetime": "rolling_timeout", "cookie_idletime": "idling_timeout", "cookie_discard": "stale_ttl",
               "cookie_samesite": "cookie_same_site", "cookie_httponly": "cookie_http_only",
               "cookie_persistent": "remember"}


def _random_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


class SessionConfig(PluginConfig):
    """Kong 3.x's session schema (with its deprecated shorthands)."""

    secret: str = Field(default_factory=_random_secret, min_length=1)
    storage: Literal["cookie", "kong"] = "cookie"
    audience: str = "default"
    idling_timeout: float = 900
    rolling_timeout: float = 3600
    absolute_timeout: float = 86400
    stale_ttl: float = 10
    cookie_name: str = Field(default="session", min_length=1, pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_same_site: Literal["Strict", "Lax", "None", "Default"] = "Strict"
    cookie_http_only: bool = True
    cookie_secure: bool = True
    remember: bool = False
    remember_cookie_name: str = "remember"
    remember_rolling_timeout: float = 604800
    remember_absolute_timeout: float = 2592000
    response_headers: list[HeaderName] | None = None
    request_headers: list[HeaderName] | None = None
    read_body_for_logout: bool = False
    logout_methods: list[Literal["GET", "POST", "DELETE"]] = Field(default_factory=lambda: ["POST", "DELETE"])
    logout_query_arg: str = "session_logout"
    logout_post_arg: str = "session_logout"
    hash_subject: bool = False
    store_metadata: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data.pop("cookie_renew", None)  # Kong ignores it (resty.session 4 computes renewals)
        for old, new in _SHORTHANDS.items():
            if old in data:
                value = data.pop(old)
                if old == "cookie_idletime" and value is None:
                    value = 0
                if old == "cookie_samesite" and value == "off":
                    value = "Lax"
                data[new] = value
        return data

    @field_validator("storage")
    @classmethod
    def _cookie_storage_only(cls, value: str) -> str:
        if value == "kong":
            raise ValueError("'kong' (sessions in the database) is not supported by meshway; use 'cookie'")
        return value


class Session(Plugin):
    """Keeps an authenticated consumer in an encrypted cookie (Kong's session plugin)."""

    name = "session"
    priority = 1900
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    no_consumer = True
    referenceable = ("secret",)
    Config = SessionConfig

    def __init__(self, config: SessionConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(hashes.SHA256(), 32, salt=None, info=b"meshway session " + config.audience.encode()).derive(
            config.secret.encode())
        self.aead = AESGCM(key)
        self.ad = config.cookie_name.encode()
        self.consumers = {c["id"]: c for c in index.entities("consumers")}
        self.rolling = config.remember_rolling_timeout if config.remember else config.rolling_timeout
        self.absolute = config.remember_absolute_timeout if config.remember else config.absolute_timeout
        self.logout_methods = frozenset(config.logout_methods)
        self.buffers_request = config.read_body_for_logout
        self.attributes = _cookie_attributes(config, self.rolling)

    # ---- access: open, log out, attach ----------------------------------------------------

    def access(self, ctx: RequestContext) -> None:
        data = self.open(ctx)
        if data is None:
            return
        if self.is_logout(ctx):
            return ctx.exit(200, None, {"Set-Cookie": self.cleared()})
        consumer = self.consumers.get(data.get("c") or "")
        if consumer is None:  # the consumer is gone: the session ends
            ctx.shared[PENDING] = self.cleared()
            return
        ctx.shared[OPENED] = data
        now = time.time()
        age = now - data["i"]
        if age >= (self.config.idling_timeout or 1e18) / 4 or age >= (self.rolling or 1e18) / 2:
            ctx.shared[PENDING] = self.seal({**data, "i": int(now)})
        groups = data.get("g")
        if groups:
            ctx.authenticated_groups = list(groups)
            ctx.set_header("X-Authenticated-Groups", ", ".join(groups))
        else:
            ctx.remove_header("X-Authenticated-Groups")
        credential_id = data.get("k")
        ctx.authenticate(consumer, {"id": credential_id, "consumer_id": consumer["id"]} if credential_id else None,
                         credential_id)
        if self.config.request_headers:
            for name, value in self.session_headers(data, self.config.request_headers):
                ctx.set_header(name, value)

    def open(self, ctx: RequestContext) -> dict[str, Any] | None:
        """The session in the request's cookie, if one decrypts and is within its timeouts."""
        value = _cookie(ctx, self.config.cookie_name)
        if not value or len(value) > MAX_COOKIE:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            data = json.loads(self.aead.decrypt(raw[:12], raw[12:], self.ad))
            created, issued = float(data["t"]), float(data["i"])
        except Exception:  # noqa: BLE001 - tampered, truncated, another secret: no session
            return None
        now = time.time()
        conf = self.config
        if (conf.idling_timeout and now - issued >= conf.idling_timeout) or (
                self.rolling and now - issued >= self.rolling) or (self.absolute and now - created >= self.absolute):
            return None
        return data

    def is_logout(self, ctx: RequestContext) -> bool:
        if ctx.method not in self.logout_methods:
            return False
        if self.config.logout_query_arg and self.config.logout_query_arg in _body.decode_args(ctx.query):
            return True
        if self.config.read_body_for_logout and ctx.method in READ_BODY_METHODS:
            _, fields = _body.decode_body(ctx.get_header("content-type"), ctx.read_body())
            return bool(fields) and bool(fields.get(self.config.logout_post_arg))
        return False

    # ---- response: save -------------------------------------------------------------------

    def response(self, ctx: RequestContext) -> None:
        pending = ctx.shared.get(PENDING)
        opened = ctx.shared.get(OPENED)
        credential, consumer = ctx.credential, ctx.consumer
        if credential is not None and consumer is not None:
            if opened is None or opened.get("c") != consumer.get("id") or opened.get("k") != credential.get("id"):
                now = int(time.time())
                opened = {"s": _session_id(), "c": consumer["id"], "k": credential.get("id") or consumer["id"],
                          "g": ctx.authenticated_groups or None, "t": now, "i": now,
                          "u": consumer.get("username") or consumer.get("custom_id") or consumer["id"]}
                pending = self.seal(opened)
        if pending:
            ctx.add_response_header("Set-Cookie", pending)
        if opened is not None and self.config.response_headers:
            for name, value in self.session_headers(opened, self.config.response_headers):
                ctx.set_response_header(name, value)

    def seal(self, data: Mapping[str, Any]) -> str:
        nonce = os.urandom(12)
        sealed = self.aead.encrypt(nonce, json.dumps(data, separators=(",", ":")).encode(), self.ad)
        value = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{self.config.cookie_name}={value}{self.attributes}"

    def cleared(self) -> str:
        return f"{self.config.cookie_name}={_cookie_attributes(self.config, None)}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:01 GMT"

    def session_headers(self, data: Mapping[str, Any], names: list[str]) -> list[tuple[str, str]]:
        """resty.session's Session-* headers: id, audience, subject and the seconds left."""
        now, conf = time.time(), self.config
        left = {"idling-timeout": conf.idling_timeout and conf.idling_timeout - (now - data["i"]),
                "rolling-timeout": self.rolling and self.rolling - (now - data["i"]),
                "absolute-timeout": self.absolute and self.absolute - (now - data["t"])}
        left["timeout"] = min((v for v in left.values() if v), default=0)
        values = {"id": data.get("s"), "audience": conf.audience, "subject": data.get("u"),
                  **{k: str(max(0, int(v))) for k, v in left.items()}}
        return [("Session-" + "-".join(p.capitalize() for p in n.split("-")), str(values[n]))
                for n in names if values.get(n) is not None]


def _session_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _cookie_attributes(conf: SessionConfig, max_age: float | None) -> str:
    parts = [f"; Path={conf.cookie_path}"]
    if conf.cookie_domain:
        parts.append(f"; Domain={conf.cookie_domain}")
    if conf.cookie_same_site != "Default":
        parts.append(f"; SameSite={conf.cookie_same_site}")
    if conf.cookie_http_only:
        parts.append("; HttpOnly")
    if conf.cookie_secure:
        parts.append("; Secure")
    if max_age and conf.remember:
        parts.append(f"; Max-Age={int(max_age)}")
    return "".join(parts)


def _cookie(ctx: RequestContext, name: str) -> str | None:
    """The named cookie; from the first Cookie header, else from any (HTTP/2 may split them)."""
    first = ctx.get_header("cookie")
    if first is None:
        return None
    found = _in_cookie_header(first, name)
    if found is not None:
        return found
    for header, value in ctx.get_headers():
        if header.lower() == "cookie" and value is not first:
            found = _in_cookie_header(value, name)
            if found is not None:
                return found
    return None


def _in_cookie_header(value: str, name: str) -> str | None:
    if name not in value:
        return None
    for part in value.split(";"):
        key, sep, found = part.strip().partition("=")
        if sep and key == name:
            return found.strip().strip('"')
    return None


PLUGIN = Session
