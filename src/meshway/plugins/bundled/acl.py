"""acl: allow or deny authenticated consumers by the groups in the snapshot's `acls`."""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext

FORBIDDEN = {"message": "You cannot consume this service"}
UNAUTHORIZED = {"message": "Unauthorized"}
GROUPS_HEADER = "X-Consumer-Groups"


class AclConfig(PluginConfig):
    """Kong's acl schema: exactly one of allow and deny."""

    allow: list[str] | None = None
    deny: list[str] | None = None
    hide_groups_header: bool = False
    always_use_authenticated_groups: bool = False

    @model_validator(mode="after")
    def _one_list(self) -> "AclConfig":
        if bool(self.allow) == bool(self.deny):
            raise ValueError("exactly one of these fields must be non-empty: 'config.allow', 'config.deny'")
        return self


class Acl(Plugin):
    """Restricts access to consumers (or authenticated groups) by group membership."""

    name = "acl"
    priority = 950
    no_consumer = True
    Config = AclConfig

    def __init__(self, config: AclConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.allow = frozenset(config.allow or ())
        self.deny = frozenset(config.deny or ())
        groups: dict[str, list[str]] = {}
        for acl in index.entities("acls"):
            consumer_id = (acl.get("consumer") or {}).get("id")
            if consumer_id:
                groups.setdefault(consumer_id, []).append(acl["group"])
        # The decision and header value per consumer, so a request costs one lookup.
        self.by_consumer = {cid: (self.blocked(g), ", ".join(g)) for cid, g in groups.items()}
        self.no_groups = (self.blocked([]), "")

    def blocked(self, groups: list[str]) -> bool:
        if self.allow:
            return self.allow.isdisjoint(groups)
        return not self.deny.isdisjoint(groups)

    def access(self, ctx: RequestContext) -> None:
        consumer, groups = ctx.consumer, ctx.authenticated_groups
        if groups and (consumer is None or self.config.always_use_authenticated_groups):
            decision = (self.blocked(groups), ", ".join(groups))
        elif consumer is not None:
            decision = self.by_consumer.get(consumer["id"], self.no_groups)
        else:
            status, body = (403, FORBIDDEN) if ctx.credential is not None else (401, UNAUTHORIZED)
            return ctx.exit(status, body)
        if decision[0]:
            return ctx.exit(403, FORBIDDEN)
        if decision[1] and not self.config.hide_groups_header:
            ctx.set_header(GROUPS_HEADER, decision[1])
        else:  # never forward a value the client made up
            ctx.remove_header(GROUPS_HEADER)


PLUGIN = Acl
