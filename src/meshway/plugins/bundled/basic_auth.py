"""basic-auth: a consumer is identified by `Authorization: Basic base64(username:password)`."""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from typing import Any, Mapping

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled._auth import AnonymousFallback, credentials_by
from meshway.plugins.bundled._crypto import verify_password

UNAUTHORIZED = {"message": "Unauthorized"}
INVALID = {"message": "Invalid authentication credentials"}
# Verification results by (stored hash, digest of the given password): the stored hash names
# the credential and its salt, so entries stay right across config reloads (a changed password
# has a new hash). Cleared whole when full.
CACHE_SIZE = 10_000
_VERIFIED: dict[tuple[str, bytes], bool] = {}


class BasicAuthConfig(PluginConfig):
    """Kong's basic-auth schema."""

    anonymous: str | None = None
    hide_credentials: bool = False
    realm: str = "service"


class BasicAuth(Plugin):
    """Authenticates a consumer by username and password (stored as a salted hash)."""

    name = "basic-auth"
    priority = 1100
    no_consumer = True
    Config = BasicAuthConfig

    def __init__(self, config: BasicAuthConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.users = credentials_by(index, "basicauth_credentials", "username")
        self.anonymous = AnonymousFallback(self.name, index, config.anonymous)
        self.challenge = {"WWW-Authenticate": f'Basic realm="{config.realm}"'}

    async def access(self, ctx: RequestContext) -> None:
        if self.anonymous.skip(ctx):
            return
        authorization, proxy_authorization = ctx.get_header("authorization"), ctx.get_header("proxy-authorization")
        if not (authorization or proxy_authorization):
            return self.anonymous.fail(ctx, 401, UNAUTHORIZED, self.challenge)
        pair = _read_pair(authorization) or _read_pair(proxy_authorization)
        if self.config.hide_credentials:
            ctx.remove_header("authorization")
            ctx.remove_header("proxy-authorization")
        found = self.users.get(pair[0]) if pair else None
        if found is None or not await self.check(found[0], pair[1]):
            return self.anonymous.fail(ctx, 401, INVALID, self.challenge)
        ctx.authenticate(found[1], found[0], found[0]["username"])

    async def check(self, credential: Mapping[str, Any], password: str) -> bool:
        """Verify against the stored hash; the slow hash runs once per (hash, password), in a thread."""
        stored = credential.get("password") or ""
        key = (stored, hashlib.sha256(password.encode()).digest())
        ok = _VERIFIED.get(key)
        if ok is None:
            ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)
            if len(_VERIFIED) >= CACHE_SIZE:
                _VERIFIED.clear()
            _VERIFIED[key] = ok
        return ok


def _read_pair(header: str | None) -> tuple[str, str] | None:
    """(username, password) from a Basic authorization value."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


PLUGIN = BasicAuth
