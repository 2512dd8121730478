"""statsd: Kong's StatsD metrics per request (names in `_statsd.py`), sent over UDP or TCP."""
from __future__ import annotations

import re
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled import _statsd
from meshway.plugins.bundled._queue import BatchQueue, QueueConfig
from meshway.plugins.bundled._sockets import Host, Port, TcpSender, UdpSender

MetricName = Literal["kong_latency", "latency", "request_count", "request_per_user", "request_size",
                     "response_size", "status_count", "status_count_per_user", "unique_users",
                     "upstream_latency", "status_count_per_workspace", "status_count_per_user_per_route",
                     "shdict_usage"]
ConsumerId = Literal["consumer_id", "custom_id", "username"]
ServiceId = Literal["service_id", "service_name", "service_host", "service_name_or_host"]
WorkspaceId = Literal["workspace_id", "workspace_name"]
_RANGE = re.compile(r"^(\d+)-(\d+)$")
_QUEUES: dict[tuple, BatchQueue] = {}


class Metric(BaseModel):
    """One entry of Kong's `metrics` array."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: MetricName
    stat_type: Literal["counter", "gauge", "histogram", "meter", "set", "timer"]
    sample_rate: float | None = Field(default=None, gt=0)
    consumer_identifier: ConsumerId | None = None
    service_identifier: ServiceId | None = None
    workspace_identifier: WorkspaceId | None = None

    @model_validator(mode="after")
    def _rate(self) -> "Metric":
        if self.stat_type in ("counter", "gauge") and self.sample_rate is None:
            raise ValueError("sample_rate: required field missing")
        return self


def _default(name: str, stat_type: str) -> Metric:
    return Metric(name=name, stat_type=stat_type, sample_rate=1 if stat_type in ("counter", "gauge") else None)


DEFAULT_METRICS = tuple(_default(n, t) for n, t in (
    ("request_count", "counter"), ("latency", "timer"), ("request_size", "counter"), ("status_count", "counter"),
    ("response_size", "counter"), ("unique_users", "set"), ("request_per_user", "counter"),
    ("upstream_latency", "timer"), ("kong_latency", "timer"), ("status_count_per_user", "counter"),
    ("status_count_per_workspace", "counter"), ("status_count_per_user_per_route", "counter"),
    ("shdict_usage", "gauge")))


class StatsdConfig(PluginConfig):
    """Kong's statsd schema (retry_count, queue_size, flush_timeout: Kong's deprecated fields)."""

    host: Host = "localhost"
    port: Port = 8125
    prefix: str = "kong"
    metrics: tuple[Metric, ...] = DEFAULT_METRICS
    allow_status_codes: list[str] | None = None
    udp_packet_size: float = Field(default=0, ge=0, le=65507)
    use_tcp: bool = False
    hostname_in_prefix: bool = False
    consumer_identifier_default: ConsumerId = "custom_id"
    service_identifier_default: ServiceId = "service_name_or_host"
    workspace_identifier_default: WorkspaceId = "workspace_id"
    retry_count: int | None = None
    queue_size: int | None = None
    flush_timeout: float | None = None
    tag_style: Literal["dogstatsd", "influxdb", "librato", "signalfx"] | None = None
    queue: QueueConfig = Field(default_factory=QueueConfig)

    @field_validator("allow_status_codes")
    @classmethod
    def _ranges(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            if not _RANGE.match(item):
                raise ValueError(f"invalid value: {item}")
        return value


class UdpPacker:
    """Kong's udp_packet_size: metrics joined by newlines into datagrams up to that size (0: one each)."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.udp, self.size = UdpSender(host, port), size

    async def __call__(self, batch: list[bytes]) -> None:
        metrics = [m for entry in batch for m in entry.split(b"\n")]
        if not self.size:
            await self.udp(metrics)
            return
        packets, current = [], b""
        for m in metrics:
            if current and len(current) + 1 + len(m) > self.size:
                packets.append(current)
                current = b""
            current = current + b"\n" + m if current else m
        packets.append(current)
        await self.udp(packets)


def _allowed(ranges: list[str] | None) -> Any:
    if ranges is None:
        return None
    bounds = [tuple(map(int, _RANGE.match(r).groups())) for r in ranges]
    return lambda status: any(lo <= status <= hi for lo, hi in bounds)


class Statsd(Plugin):
    """Counts and times requests into a StatsD server, in the background."""

    name = "statsd"
    priority = 11
    Config = StatsdConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols

    def __init__(self, config: StatsdConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        self.allowed = _allowed(config.allow_status_codes)
        self.prefix = config.prefix
        if config.hostname_in_prefix and config.tag_style is None:
            self.prefix += ".node." + _statsd.HOSTNAME
        key = (config.host, config.port, config.use_tcp, config.udp_packet_size, config.queue)
        queue = _QUEUES.get(key)
        if queue is None:
            sender = (TcpSender(config.host, config.port, 1000, 60000) if config.use_tcp
                      else UdpPacker(config.host, config.port, int(config.udp_packet_size)))
            queue = _QUEUES[key] = BatchQueue(f"statsd {config.host}:{config.port}", sender, config.queue)
        self.queue = queue

    def log(self, ctx: RequestContext) -> None:
        status = ctx.response_status or ctx.status or 0
        if self.allowed is not None and not self.allowed(status):
            return
        metrics = _statsd.lines(self.config, self.prefix, ctx, status)
        if metrics:
            self.queue.add("\n".join(metrics).encode())


PLUGIN = Statsd
