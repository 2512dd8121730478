"""ip-restriction: allow or deny clients by IP address or CIDR block, IPv4 and IPv6."""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from pydantic import Field, field_validator, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS

CACHE_SIZE = 10_000


class IpRestrictionConfig(PluginConfig):
    """Kong's ip-restriction schema."""

    allow: list[str] | None = None
    deny: list[str] | None = None
    status: int | None = Field(default=None, ge=100, le=599)
    message: str | None = None

    @field_validator("allow", "deny")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"invalid ip or cidr range: '{item}'") from None
        return value

    @model_validator(mode="after")
    def _one_list(self) -> "IpRestrictionConfig":
        if not self.allow and not self.deny:
            raise ValueError("at least one of these fields must be non-empty: 'config.allow', 'config.deny'")
        return self


class IpRestriction(Plugin):
    """Blocks clients whose IP is denied, or not allowed when an allow list is set."""

    name = "ip-restriction"
    priority = 990
    Config = IpRestrictionConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    default_protocols = ("http", "https", "tcp", "tls", "grpc", "grpcs")  # Kong's schema default
    stream = True

    def __init__(self, config: IpRestrictionConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.allow = _networks(config.allow)
        self.deny = _networks(config.deny)
        self.status = config.status or 403
        self.body = {"message": config.message or "Your IP address is not allowed"}
        self.decided: dict[str, bool] = {}

    def access(self, ctx: RequestContext) -> None:
        if self.blocked(ctx.client_ip):
            ctx.exit(self.status, self.body)

    def preread(self, ctx: RequestContext) -> None:
        if self.blocked(ctx.client_ip):
            ctx.exit(self.status, self.body)

    def blocked(self, ip: str) -> bool:
        """Deny wins; then an allow list admits only its members. Decisions cached per IP."""
        found = self.decided.get(ip)
        if found is None:
            found = self.decide(ip)
            if len(self.decided) >= CACHE_SIZE:
                self.decided.clear()
            self.decided[ip] = found
        return found

    def decide(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return True  # not an address we can vouch for
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if self.deny and any(addr in net for net in self.deny):
            return True
        return bool(self.allow) and not any(addr in net for net in self.allow)


def _networks(items: list[str] | None) -> tuple:
    return tuple(ipaddress.ip_network(i, strict=False) for i in items or ())


PLUGIN = IpRestriction
