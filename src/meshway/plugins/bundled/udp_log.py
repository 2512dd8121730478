"""udp-log: sends one datagram per request, a JSON object in Kong's log serializer shape."""
from __future__ import annotations

import json
from typing import Any, Mapping

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled._queue import BatchQueue
from meshway.plugins.bundled._sockets import FIRE_AND_FORGET, Host, Port, UdpSender

_QUEUES: dict[tuple, BatchQueue] = {}


class UdpLogConfig(PluginConfig):
    """Kong's udp-log schema (custom_fields_by_lua is not supported; `timeout` is accepted
    for compatibility: a UDP send on a connected socket does not wait)."""

    host: Host
    port: Port
    timeout: float = 10000
    custom_fields_by_lua: None = None


class UdpLog(Plugin):
    """Sends request logs as UDP datagrams, in the background."""

    name = "udp-log"
    priority = 8
    Config = UdpLogConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    stream = True

    def __init__(self, config: UdpLogConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        key = (config.host, config.port)
        queue = _QUEUES.get(key)
        if queue is None:
            queue = _QUEUES[key] = BatchQueue(f"udp-log {config.host}:{config.port}",
                                              UdpSender(config.host, config.port), FIRE_AND_FORGET)
        self.queue = queue

    def log(self, ctx: RequestContext) -> None:
        self.queue.add(json.dumps(ctx.log_fields(), separators=(",", ":"), default=str).encode())


PLUGIN = UdpLog
