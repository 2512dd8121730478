"""The HTTP side of the tracing plugins' exports (opentelemetry, zipkin): a queue's batch of
encoded spans POSTed as one body to the collector, with one keep-alive httpx client per event
loop (a worker's loop can be replaced; a client is bound to the loop that made it)."""
from __future__ import annotations

from typing import Any, Callable, Mapping


class SpanBatchSender:
    """`await sender(batch)`: one POST of `encode(batch)`; a status outside `accepted` raises,
    so the queue retries the batch with backoff."""

    def __init__(self, url: str, headers: Mapping[str, str], timeouts_ms: tuple[int, int, int],
                 encode: Callable[[list[bytes]], bytes], accepted: range = range(200, 300)) -> None:
        self.url, self.headers, self.timeouts_ms = url, dict(headers), timeouts_ms
        self.encode, self.accepted = encode, accepted
        self._client: Any = None
        self._loop: Any = None

    def client(self) -> Any:
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            connect, send, read = (t / 1000 for t in self.timeouts_ms)
            timeout = httpx.Timeout(connect=connect, write=send, read=read, pool=connect)
            self._client, self._loop = httpx.AsyncClient(timeout=timeout), loop
        return self._client

    async def __call__(self, batch: list[bytes]) -> None:
        response = await self.client().post(self.url, content=self.encode(batch), headers=self.headers)
        if response.status_code not in self.accepted:
            raise RuntimeError(f"request to {self.url} returned status code {response.status_code}")
