"""acl: allow or deny authenticated consumers by the groups in the snapshot's `acls`.

Rules (Kong 3's handler, with Kong Enterprise's `include_consumer_groups`):
- The consumer's groups are its `acls` entries; with `include_consumer_groups` also the names of the
  consumer groups it belongs to (Kong Enterprise's `kong.client.get_consumer_groups()`), after them.
- Without a consumer (or an anonymous one, or with `always_use_authenticated_groups`), the groups an
  authentication plugin set (`ctx.authenticated_groups`: ldap-auth, session...) decide instead.
- A consumer in no group is refused by `allow`: 403, or 401 when it came without a credential (an
  anonymous consumer), as Kong; `deny` lets it through.
- An admitted request carries the groups upstream, joined by ", ": `X-Consumer-Groups` when the
  consumer's groups decided, `X-Authenticated-Groups` when authenticated groups did (Kong's
  `constants.HEADERS`); `hide_groups_header` sends neither. A value the client sent is never forwarded.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext

FORBIDDEN = {"message": "You cannot consume this service"}
UNAUTHORIZED = {"message": "Unauthorized"}
GROUPS_HEADER = "X-Consumer-Groups"
AUTHENTICATED_HEADER = "X-Authenticated-Groups"


class AclConfig(PluginConfig):
    """Kong's acl schema: exactly one of allow and deny."""

    allow: list[str] | None = None
    deny: list[str] | None = None
    hide_groups_header: bool = False
    always_use_authenticated_groups: bool = False
    include_consumer_groups: bool = False  # Kong Enterprise's: consumer group names count as groups

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
        # consumer id -> the names of its consumer groups (only read with include_consumer_groups)
        self.group_names = consumer_group_names(index) if config.include_consumer_groups else {}
        for cid, names in self.group_names.items():
            groups[cid] = list(dict.fromkeys([*groups.get(cid, ()), *names]))
        # The decision and header value per consumer, so a request costs one lookup.
        self.by_consumer = {cid: (self.blocked(g), ", ".join(g)) for cid, g in groups.items()}
        self.no_groups = (self.blocked([]), "")

    def blocked(self, groups: list[str]) -> bool:
        if self.allow:
            return self.allow.isdisjoint(groups)
        return not self.deny.isdisjoint(groups)

    def access(self, ctx: RequestContext) -> None:
        consumer, groups = ctx.consumer, ctx.authenticated_groups
        header = GROUPS_HEADER
        if groups and (consumer is None or self.config.always_use_authenticated_groups):
            if consumer is not None and self.group_names:
                groups = list(dict.fromkeys([*groups, *self.group_names.get(consumer["id"], ())]))
            decision, header = (self.blocked(groups), ", ".join(groups)), AUTHENTICATED_HEADER
        elif consumer is not None:
            decision = self.by_consumer.get(consumer["id"])
            if decision is None:
                if self.allow and ctx.credential is None:  # Kong: an anonymous consumer in no group
                    return ctx.exit(401, UNAUTHORIZED)
                decision = self.no_groups
        else:
            status, body = (403, FORBIDDEN) if ctx.credential is not None else (401, UNAUTHORIZED)
            return ctx.exit(status, body)
        if decision[0]:
            return ctx.exit(403, FORBIDDEN)
        ctx.remove_header(GROUPS_HEADER)  # never forward a value the client made up
        if decision[1] and not self.config.hide_groups_header:
            ctx.set_header(header, decision[1])


def consumer_group_names(index: ConfigIndex) -> dict[str, list[str]]:
    """consumer id -> the names of its consumer groups, by name (Kong Enterprise's order)."""
    names = {g["id"]: g.get("name") or g["id"] for g in index.entities("consumer_groups")}
    found: dict[str, list[str]] = {}
    for m in index.entities("consumer_group_consumers"):
        group, consumer = (m.get("consumer_group") or {}).get("id"), (m.get("consumer") or {}).get("id")
        if group in names and consumer:
            found.setdefault(consumer, []).append(names[group])
    return {c: sorted(set(gs)) for c, gs in found.items()}


PLUGIN = Acl
