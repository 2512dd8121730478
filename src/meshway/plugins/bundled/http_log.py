"""http-log: sends Kong-shaped JSON log entries to an HTTP endpoint, batched, in the background."""
from __future__ import annotations

import json
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from meshway.plugins import ConfigIndex, Plugin, PluginConfig, RequestContext
from meshway.plugins.api import ALL_PROTOCOLS
from meshway.plugins.bundled._queue import BatchQueue, QueueConfig

# Instances with the same destination and queue settings share one queue, as in Kong, so
# a config reload neither loses queued entries nor opens a second stream to the receiver.
_QUEUES: dict[tuple, BatchQueue] = {}


class HttpLogConfig(PluginConfig):
    """Kong's http-log schema (custom_fields_by_lua is not supported; retry_count, queue_size
    and flush_timeout are Kong's deprecated spellings of the `queue` fields)."""

    http_endpoint: str
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    content_type: Literal["application/json", "application/json; charset=utf-8"] = "application/json"
    timeout: float = 10000
    keepalive: float = 60000
    headers: dict[str, str] | None = None
    retry_count: int | None = None
    queue_size: int | None = None
    flush_timeout: float | None = None
    custom_fields_by_lua: None = None
    queue: QueueConfig = Field(default_factory=QueueConfig)

    @field_validator("http_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("missing host in url" if parts.scheme in ("http", "https") else "invalid url scheme")
        return value


class HttpSender:
    """POSTs batches with one keep-alive httpx client per event loop."""

    def __init__(self, conf: HttpLogConfig) -> None:
        self.conf = conf
        self.headers = {"Content-Type": conf.content_type, **(conf.headers or {})}
        self.single = conf.queue.max_batch_size == 1
        self._client: Any = None
        self._loop: Any = None

    def client(self) -> Any:
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            limits = httpx.Limits(max_keepalive_connections=4, keepalive_expiry=self.conf.keepalive / 1000)
            # httpx turns user:password@ in the URL into a Basic Authorization header, as Kong does.
            self._client = httpx.AsyncClient(timeout=self.conf.timeout / 1000, limits=limits)
            self._loop = loop
        return self._client

    async def __call__(self, batch: list[bytes]) -> None:
        body = batch[0] if self.single else b"[" + b",".join(batch) + b"]"
        response = await self.client().request(self.conf.method, self.conf.http_endpoint, content=body, headers=self.headers)
        if response.status_code >= 400:
            raise RuntimeError(f"request to {self.conf.http_endpoint} returned status code {response.status_code}")


class HttpLog(Plugin):
    """Sends request logs to an HTTP server without delaying responses."""

    name = "http-log"
    priority = 12
    Config = HttpLogConfig
    protocols = ALL_PROTOCOLS  # Kong's typedefs.protocols
    stream = True

    def __init__(self, config: HttpLogConfig, index: ConfigIndex, entity: Mapping[str, Any]) -> None:
        super().__init__(config, index, entity)
        key = (config.http_endpoint, config.method, config.content_type, config.timeout, config.keepalive,
               tuple(sorted((config.headers or {}).items())), config.queue)
        queue = _QUEUES.get(key)
        if queue is None:
            queue = _QUEUES[key] = BatchQueue(f"http-log {urlsplit(config.http_endpoint).hostname}",
                                              HttpSender(config), config.queue)
        self.queue = queue

    def log(self, ctx: RequestContext) -> None:
        self.queue.add(json.dumps(ctx.log_fields(), separators=(",", ":"), default=str).encode())


PLUGIN = HttpLog
