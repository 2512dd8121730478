"""hmac-auth: a consumer signs chosen request headers with its secret (Kong's hmac-auth).

The client sends `Authorization` (or `Proxy-Authorization`) as
`hmac username="u", algorithm="hmac-sha256", headers="date request-line", signature="<base64>"`;
the signing string is, per listed header, `name: value` (`request-line` is `GET /p?q HTTP/1.1`,
`@request-target` is `get /p?q`, a header the request lacks is `name:`), joined by newlines.
Rules, as Kong 3.x:
- `Date` or `X-Date` must be within `clock_skew` seconds of now (replay window).
- `Proxy-Authorization` is tried first, then `Authorization`; a missing or unparsable one, an
  unknown username, a disallowed algorithm or an enforced header not signed is 401
  "HMAC signature cannot be verified"; a wrong signature (or a `Digest` that does not match the
  body when `validate_request_body`) is 401 "HMAC signature does not match".
- The header is parsed with a linear pattern (values without quotes) instead of Kong's greedy
  `(.+)` groups, which backtrack polynomially on a hostile header.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from email.utils import parsedate_tz, mktime_tz
from typing import Any, Literal, Mapping

from pydantic import Field, PositiveFloat

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled._auth import AnonymousFallback, credentials_by

Algorithm = Literal["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"]
ALGORITHMS: tuple[str, ...] = ("hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512")
DIGESTS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256,
           "hmac-sha384": hashlib.sha384, "hmac-sha512": hashlib.sha512}
UNAUTHORIZED = "Unauthorized"
NO_DATE = ("HMAC signature cannot be verified, a valid date or x-date header is required for "
           "HMAC Authentication")
NOT_VALID = "HMAC signature cannot be verified"
NOT_SAME = "HMAC signature does not match"
_PARAMS = re.compile(r'\s*[Hh]mac\s*username="([^"]+)",\s*algorithm="([^"]+)",\s*headers="([^"]+)",'
                     r'\s*signature="([^"]+)"')


class HmacAuthConfig(PluginConfig):
    """Kong's hmac-auth schema."""

    hide_credentials: bool = False
    clock_skew: PositiveFloat = 300
    anonymous: str | None = None
    validate_request_body: bool = False
    enforce_headers: list[str] = Field(default_factory=list)
    algorithms: list[Algorithm] = Field(default_factory=lambda: list(ALGORITHMS))
    realm: str | None = None


class HmacAuth(Plugin):
    """Authenticates a consumer by an HMAC signature of the request's headers."""

    name = "hmac-auth"
    priority = 1030
    no_consumer = True
    Config = HmacAuthConfig

    def __init__(self, config: HmacAuthConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.users = credentials_by(index, "hmacauth_credentials", "username")
        self.anonymous = AnonymousFallback(self.name, index, config.anonymous)
        self.challenge = {"WWW-Authenticate": f'hmac realm="{config.realm}"' if config.realm else "hmac"}
        self.algorithms = frozenset(config.algorithms)
        self.enforced = frozenset(config.enforce_headers)
        self.buffers_request = config.validate_request_body  # only a Digest check needs the body

    def access(self, ctx: RequestContext) -> None:
        if self.anonymous.skip(ctx):
            return
        failure = self.authenticate(ctx)
        if failure is not None:
            self.anonymous.fail(ctx, 401, {"message": failure}, self.challenge)

    def authenticate(self, ctx: RequestContext) -> str | None:
        """Attach the signing consumer; or the 401 message."""
        authorization, proxy_authorization = ctx.get_header("authorization"), ctx.get_header("proxy-authorization")
        if not (authorization or proxy_authorization):
            return UNAUTHORIZED
        skew = self.config.clock_skew
        if not (_date_ok(ctx.get_header("x-date"), skew) or _date_ok(ctx.get_header("date"), skew)):
            return NO_DATE
        params = _parse(proxy_authorization)
        used = "proxy-authorization"
        if params is None:
            params, used = _parse(authorization), "authorization"
        if self.config.hide_credentials:
            ctx.remove_header(used)
        if params is None or not self.params_allowed(params):
            return NOT_VALID
        found = self.users.get(params[0])
        if found is None:
            return NOT_VALID
        credential, consumer = found
        if not _signature_ok(ctx, params, (credential.get("secret") or "").encode()):
            return NOT_SAME
        if self.config.validate_request_body and not _digest_ok(ctx):
            return NOT_SAME
        ctx.authenticate(consumer, credential, credential["username"])
        return None

    def params_allowed(self, params: tuple[str, str, list[str], str]) -> bool:
        return self.enforced.issubset(params[2]) and params[1] in self.algorithms


def _parse(header: str | None) -> tuple[str, str, list[str], str] | None:
    """(username, algorithm, signed header names, signature) from an hmac authorization value."""
    if not header:
        return None
    m = _PARAMS.search(header)
    if m is None:
        return None
    return m[1], m[2], m[3].split(" "), m[4]


# Parsed Date values: clients of a busy route send the same few per second (a parse is ~40% of
# the plugin's cost); cleared whole when full.
_DATES: dict[str, float | None] = {}


def _date_ok(value: str | None, skew: float) -> bool:
    if not value:
        return False
    stamp = _DATES.get(value, False)
    if stamp is False:
        try:
            parsed = parsedate_tz(value)
            stamp = mktime_tz(parsed) if parsed else None
        except (ValueError, OverflowError, TypeError):
            stamp = None
        if len(_DATES) >= 1024:
            _DATES.clear()
        _DATES[value] = stamp
    return stamp is not None and abs(time.time() - stamp) <= skew


def _signing_string(ctx: RequestContext, names: list[str]) -> str:
    target = ctx.path + ("?" + ctx.query if ctx.query else "")
    lines = []
    for name in names:
        value = ctx.get_header(name) if name else None
        if value is not None:
            lines.append(f"{name}: {value}")
        elif name == "@request-target":
            lines.append(f"{name}: {ctx.method.lower()} {target}")
        elif name == "request-line":
            lines.append(f"{ctx.method} {target} HTTP/{ctx.http_version}")
        else:
            lines.append(f"{name}:")
    return "\n".join(lines)


def _signature_ok(ctx: RequestContext, params: tuple[str, str, list[str], str], secret: bytes) -> bool:
    try:
        given = base64.b64decode(params[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    text = _signing_string(ctx, params[2])
    try:
        data = text.encode("latin-1")  # header values are the client's bytes read as latin-1
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    expected = hmac.new(secret, data, DIGESTS[params[1]]).digest()
    return hmac.compare_digest(expected, given)


def _digest_ok(ctx: RequestContext) -> bool:
    """`Digest: SHA-256=<base64 of the body's sha256>`; no Digest is fine only without a body."""
    body = ctx.read_body() or b""
    received = ctx.get_header("digest")
    if received is None:
        return body == b""
    return hmac.compare_digest(received.encode("latin-1", "replace"),
                               b"SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()))


PLUGIN = HmacAuth
