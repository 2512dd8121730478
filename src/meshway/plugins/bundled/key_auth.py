"""key-auth: a consumer is identified by an API key in a header, the query string or the body."""
from __future__ import annotations

import time
from typing import Any, Mapping

from pydantic import Field

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled import _body
from meshway.plugins.bundled._auth import AnonymousFallback, credentials_by

NO_KEY = {"message": "No API key found in request"}
INVALID = {"message": "Invalid authentication credentials"}
DUPLICATE = {"message": "Duplicate API key found"}


class KeyAuthConfig(PluginConfig):
    """Kong's key-auth schema."""

    key_names: list[str] = Field(default_factory=lambda: ["apikey"], min_length=1)
    hide_credentials: bool = False
    anonymous: str | None = None
    key_in_header: bool = True
    key_in_query: bool = True
    key_in_body: bool = False
    run_on_preflight: bool = True
    realm: str | None = None


class KeyAuth(Plugin):
    """Authenticates a consumer by API key."""

    name = "key-auth"
    priority = 1250
    Config = KeyAuthConfig

    def __init__(self, config: KeyAuthConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.keys = credentials_by(index, "keyauth_credentials", "key")
        self.anonymous = AnonymousFallback(self.name, index, config.anonymous)
        self.challenge = {"WWW-Authenticate": f'Key realm="{config.realm or "kong"}"'}
        # Only a key in the body needs the engine to buffer it.
        self.buffers_request = config.key_in_body

    def access(self, ctx: RequestContext) -> None:
        if ctx.method == "OPTIONS" and not self.config.run_on_preflight:
            return
        if self.anonymous.skip(ctx):
            return
        key = self.find_key(ctx)
        if key is None:
            return  # find_key answered (duplicate key)
        if not key:
            return self.anonymous.fail(ctx, 401, NO_KEY, self.challenge)
        found = self.keys.get(key)
        if found is None or _expired(found[0]):
            return self.anonymous.fail(ctx, 401, INVALID, self.challenge)
        ctx.authenticate(found[1], found[0])

    def find_key(self, ctx: RequestContext) -> str | None:
        """The first key found ("" when none); None after answering a duplicate key."""
        conf = self.config
        for name in conf.key_names:
            if conf.key_in_header:
                value = ctx.get_header(name)
                if value:
                    if conf.hide_credentials:
                        ctx.remove_header(name)
                    return value
            if conf.key_in_query and ctx.query:
                value = self.take_arg(ctx, name)
                if value != "":
                    return value
            if conf.key_in_body:
                value = self.take_body_field(ctx, name)
                if value != "":
                    return value
        return ""

    def take_arg(self, ctx: RequestContext, name: str) -> str | None:
        args = _body.decode_args(ctx.query)
        values = args.get(name)
        if not values:
            return ""
        if len(values) > 1:
            return ctx.exit(401, DUPLICATE, self.challenge)
        if self.config.hide_credentials:
            del args[name]
            ctx.set_query(_body.encode_args(args))
        return values[0]

    def take_body_field(self, ctx: RequestContext, name: str) -> str | None:
        kind, fields = _body.decode_body(ctx.get_header("content-type"), ctx.read_body())
        value = (fields or {}).get(name)
        if kind == _body.FORM and value:
            if len(value) > 1:
                return ctx.exit(401, DUPLICATE, self.challenge)
            value = value[0]
        if not isinstance(value, str) or not value:
            return ""
        if self.config.hide_credentials:
            del fields[name]
            ctx.set_body(_body.encode_body(kind, fields))
        return value


def _expired(credential: Mapping[str, Any]) -> bool:
    ttl, created = credential.get("ttl"), credential.get("created_at")
    return bool(ttl and created and time.time() >= created + ttl)


PLUGIN = KeyAuth
