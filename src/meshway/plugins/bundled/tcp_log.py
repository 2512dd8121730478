"""tcp-log: sends one JSON line per request (Kong's log serializer shape) to a TCP server."""
from __future__ import annotations

import json
from typing import Any, Mapping

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled._queue import BatchQueue
from meshway.plugins.bundled._sockets import FIRE_AND_FORGET, Host, Port, TcpSender

# Instances with the same destination share one queue and connection across config reloads.
_QUEUES: dict[tuple, BatchQueue] = {}


class TcpLogConfig(PluginConfig):
    """Kong's tcp-log schema (custom_fields_by_lua is not supported)."""

    host: Host
    port: Port
    timeout: float = 10000
    keepalive: float = 60000
    tls: bool = False
    tls_sni: str | None = None
    custom_fields_by_lua: None = None


class TcpLog(Plugin):
    """Writes request logs to a TCP (or TLS) connection, newline-delimited JSON, in the background."""

    name = "tcp-log"
    priority = 7
    Config = TcpLogConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    stream = True

    def __init__(self, config: TcpLogConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        key = (config.host, config.port, config.timeout, config.keepalive, config.tls, config.tls_sni)
        queue = _QUEUES.get(key)
        if queue is None:
            sender = TcpSender(config.host, config.port, config.timeout, config.keepalive, config.tls, config.tls_sni)
            queue = _QUEUES[key] = BatchQueue(f"tcp-log {config.host}:{config.port}", sender, FIRE_AND_FORGET)
        self.queue = queue

    def log(self, ctx: RequestContext) -> None:
        self.queue.add(json.dumps(ctx.log_fields(), separators=(",", ":"), default=str).encode())


PLUGIN = TcpLog
