"""key-auth: a consumer is identified by an API key in a header, the query string or the body."""
from __future__ import annotations

import time
from typing import Any, Mapping

from pydantic import Field

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.bundled import _body
from meshway.plugins.bundled._auth import AnonymousFallback, credentials_by
from meshway.proxy import _core
from meshway.proxy._context import Context

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
    no_consumer = True
    Config = KeyAuthConfig

    def __init__(self, config: KeyAuthConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        # key -> (credential, consumer, expiry or None): what a request needs, in one lookup.
        self.lookup = {key: (cred, consumer, _expiry(cred))
                       for key, (cred, consumer) in credentials_by(index, "keyauth_credentials", "key").items()}
        self.anonymous = AnonymousFallback(self.name, index, config.anonymous)
        self.challenge = {"WWW-Authenticate": f'Key realm="{config.realm or "kong"}"'}
        # Only a key in the body needs the engine to buffer it.
        self.buffers_request = config.key_in_body
        self.skip_preflight = not config.run_on_preflight
        self.header_names = tuple(config.key_names) if config.key_in_header else ()
        self.first_name = config.key_names[0]
        # The common config (keys in headers or the query string, none hidden): a key in a
        # header is found without the general loop.
        self.headers_first = config.key_in_header and not config.key_in_body and not config.hide_credentials
        # The proxy's Context where the compiled core is on, the first name a plain token, nothing
        # before the lookup (no preflight skip, no anonymous OR): the header's bytes are looked up
        # as they came (`lookup_raw`: the keys' latin-1 bytes, as `get_header` decodes them).
        first = self.first_name.lower()
        plain = first.isascii() and first.replace("-", "").replace("_", "").isalnum()
        self.first_low = first.encode("ascii") if plain and self.headers_first and not self.skip_preflight \
            and not self.anonymous.configured else None
        self.lookup_raw = {key.encode("latin-1"): found for key, found in self.lookup.items() if _latin1(key)}

    def access(self, ctx: RequestContext) -> None:
        low = self.first_low
        if low is not None and ctx.__class__ is Context and _core.compiled is not None:
            raw = _core.compiled.header_value(ctx.headers, low)
            if raw:  # the usual request: a known key without expiry in the first name's header
                found = self.lookup_raw.get(raw)
                if found is not None and found[2] is None:
                    ctx.authenticate(found[1], found[0])
                    return
        if self.skip_preflight and ctx.method == "OPTIONS":
            return
        if self.anonymous.configured and ctx.credential is not None:
            return  # an earlier auth plugin authenticated (logical OR with anonymous)
        # The usual request: the key in the first name's header (`header_key`'s first step, inline).
        key = ctx.get_header(self.first_name) if self.headers_first else None
        if not key and self.headers_first:
            key = self.header_key(ctx)
        if not key:
            key = self.find_key(ctx)
            if key is None:
                return  # find_key answered (duplicate key)
            if not key:
                return self.anonymous.fail(ctx, 401, NO_KEY, self.challenge)
        found = self.lookup.get(key)
        if found is None or (found[2] is not None and time.time() >= found[2]):
            return self.anonymous.fail(ctx, 401, INVALID, self.challenge)
        ctx.authenticate(found[1], found[0])

    def header_key(self, ctx: RequestContext) -> str | None:
        """A key from a header when that settles it, else None (then `find_key` decides).

        Kong tries each name in turn, its header then its query argument: a header key of the
        first name always wins; one of a later name only when there is no query string (an
        earlier name could be there)."""
        names = self.header_names
        value = ctx.get_header(names[0])
        if value:
            return value
        if ctx.query:
            return None
        for name in names[1:]:
            value = ctx.get_header(name)
            if value:
                return value
        return None

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


def _latin1(key: Any) -> bool:
    try:
        key.encode("latin-1")
    except (UnicodeEncodeError, AttributeError):
        return False
    return True


def _expiry(credential: Mapping[str, Any]) -> float | None:
    """When a credential with a ttl stops being valid (unix seconds); None: never."""
    ttl, created = credential.get("ttl"), credential.get("created_at")
    return created + ttl if ttl and created else None


PLUGIN = KeyAuth
