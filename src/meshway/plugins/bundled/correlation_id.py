"""correlation-id: gives every request an id header, kept if the client sent one."""
from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any, Literal, Mapping

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext

# uuid#counter: one random uuid per worker process, then a counter (cheap and unique).
_WORKER_UUID = str(uuid.uuid4())
_COUNTER = itertools.count(1)


class CorrelationIdConfig(PluginConfig):
    """Kong's correlation-id schema."""

    header_name: str = "Kong-Request-ID"
    generator: Literal["uuid", "uuid#counter", "tracker"] = "uuid#counter"
    echo_downstream: bool = False


class CorrelationId(Plugin):
    """Sets a correlation id header upstream (and downstream with echo_downstream)."""

    name = "correlation-id"
    priority = 100001
    Config = CorrelationIdConfig

    def __init__(self, config: CorrelationIdConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.header = config.header_name
        self.generate = {"uuid": _uuid, "uuid#counter": _uuid_counter, "tracker": _tracker}[config.generator]
        self.shared_key = f"correlation-id:{entity.get('id')}"

    def access(self, ctx: RequestContext) -> None:
        value = ctx.get_header(self.header)
        if not value:
            value = self.generate(ctx)
            ctx.set_header(self.header, value)
        if self.config.echo_downstream:
            ctx.shared[self.shared_key] = value

    def response(self, ctx: RequestContext) -> None:
        value = ctx.shared.get(self.shared_key)
        if value:
            ctx.set_response_header(self.header, value)


def _uuid(ctx: RequestContext) -> str:
    return str(uuid.uuid4())


def _uuid_counter(ctx: RequestContext) -> str:
    return f"{_WORKER_UUID}#{next(_COUNTER)}"


def _tracker(ctx: RequestContext) -> str:
    """Kong's tracker shape: server-pid-request counter-client-time, dash separated."""
    return f"{ctx.host}-{os.getpid()}-{next(_COUNTER)}-{ctx.client_ip}-{time.time():.3f}"


PLUGIN = CorrelationId
