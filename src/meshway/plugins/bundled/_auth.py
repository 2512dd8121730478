"""What the authentication plugins (key-auth, basic-auth, jwt) share: Kong's consumer rules.

- `anonymous` names a consumer by id or username; when a request fails to authenticate, that
  consumer is attached with no credential (the engine then sends `X-Anonymous-Consumer: true`).
  Configured but missing from the snapshot is a server error, as in Kong.
- Several auth plugins with `anonymous` set form a logical OR: once one of them attached a
  real credential, the later ones do nothing.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from meshway.plugins import ConfigIndex, RequestContext

log = logging.getLogger("meshway.plugins")

UNEXPECTED = {"message": "An unexpected error occurred"}


def consumers_by_id(index: ConfigIndex) -> dict[str, Mapping[str, Any]]:
    return {c["id"]: c for c in index.entities("consumers")}


def find_consumer(index: ConfigIndex, ref: str | None) -> Mapping[str, Any] | None:
    """The consumer named by id or username."""
    if not ref:
        return None
    found = index.consumer(ref)
    if found is not None:
        return found
    return next((c for c in index.entities("consumers") if c.get("username") == ref), None)


def credentials_by(index: ConfigIndex, collection: str, field: str) -> dict[str, tuple[Mapping, Mapping]]:
    """`field` value -> (credential, consumer), for credentials whose consumer exists."""
    consumers = consumers_by_id(index)
    table: dict[str, tuple[Mapping, Mapping]] = {}
    for cred in index.entities(collection):
        consumer = consumers.get(((cred.get("consumer") or {}).get("id")) or "")
        if consumer is not None and cred.get(field) is not None:
            table[cred[field]] = (cred, consumer)
    return table


class AnonymousFallback:
    """Resolves `config.anonymous` once; answers a failed authentication per Kong's rules."""

    def __init__(self, plugin_name: str, index: ConfigIndex, anonymous: str | None) -> None:
        self.plugin_name = plugin_name
        self.configured = bool(anonymous)
        self.ref = anonymous
        self.consumer = find_consumer(index, anonymous)

    def skip(self, ctx: RequestContext) -> bool:
        """True when an earlier auth plugin already authenticated (logical OR with anonymous)."""
        return self.configured and ctx.credential is not None

    def fail(self, ctx: RequestContext, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Attach the anonymous consumer, or answer the client with the error."""
        if not self.configured:
            ctx.exit(status, body, headers)
            return
        if self.consumer is None:
            log.error("%s: anonymous consumer %s is configured but doesn't exist", self.plugin_name, self.ref)
            ctx.exit(500, UNEXPECTED)
            return
        ctx.authenticate(self.consumer, None)
