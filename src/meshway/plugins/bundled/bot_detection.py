"""bot-detection: refuses requests whose User-Agent is a known bot or matches `deny` (403).

Order as in Kong: `allow` regexes first (a match lets the request through), then `deny`, then
the built-in bot rules. Kong's built-in list is taken from ua-parser's uap-core regexes (device
family "Spider"); we ask the ua-parser library, which ships the current uap-core rules, for that
family. Results are cached per config instance (10,000 User-Agents, as Kong's LRU cache).
"""
from __future__ import annotations

import functools
import re
from typing import Any, Mapping

from pydantic import field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext

ALLOW, PASS, DENY = 0, 1, 2


class BotDetectionConfig(PluginConfig):
    """Kong's bot-detection schema."""

    allow: list[str] = []
    deny: list[str] = []

    @field_validator("allow", "deny")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"'{pattern}' is not a valid regex: {e}") from None
        return value


@functools.cache
def _is_spider() -> Any:
    # Imported and compiled once per process, at config time (ua-parser's first parse builds
    # its matchers, about a second), never on a request.
    from ua_parser import parse_device

    parse_device("warm-up")
    return lambda user_agent: (d := parse_device(user_agent)) is not None and d.family == "Spider"


class BotDetection(Plugin):
    """403 for bots and denied User-Agents; 400 when a request has several User-Agent headers."""

    name = "bot-detection"
    priority = 2500
    Config = BotDetectionConfig
    no_consumer = True

    def __init__(self, config: BotDetectionConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.allow = [re.compile(p) for p in config.allow]
        self.deny = [re.compile(p) for p in config.deny]
        self.is_spider = _is_spider()
        self.examine = functools.lru_cache(maxsize=10_000)(self._examine)

    def _examine(self, user_agent: str) -> int:
        user_agent = user_agent.strip()
        if any(p.search(user_agent) for p in self.allow):
            return ALLOW
        if any(p.search(user_agent) for p in self.deny) or self.is_spider(user_agent):
            return DENY
        return PASS

    def access(self, ctx: RequestContext) -> None:
        user_agent = ctx.get_header("user-agent")
        if user_agent is None:
            return
        if sum(1 for name, _ in ctx.get_headers() if name.lower() == "user-agent") > 1:
            ctx.exit(400, {"message": "Only one User-Agent header allowed"})
            return
        if self.examine(user_agent) == DENY:
            ctx.exit(403, {"message": "Forbidden"})


PLUGIN = BotDetection
