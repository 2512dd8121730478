"""Read your writes: an Admin API write answers once this node's workers proxy with it.

Kong's `worker_consistency = strict` (its default) makes every worker rebuild its router
before it proxies the next request after a change. Here the workers compile off their event
loop and swap (docs/snapshot.md), so the same promise is kept on the write side: the answer of
a successful write is held until the master has exported the store and every worker has
acknowledged the new snapshot (`StorePoller.sync`), at most `WRITE_WAIT` seconds; past that
the answer goes out anyway and the log says so. `eventual` answers at once and only asks for
an early check. Other nodes on the same database follow within `db_update_frequency`.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from meshway.node._sources import StorePoller

log = logging.getLogger("meshway.node")
WRITE_WAIT = 5.0
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReadYourWrites:
    """ASGI wrapper of the Admin API: holds a successful write's answer until the workers apply it."""

    def __init__(self, app: ASGIApp, poller: "StorePoller", strict: bool) -> None:
        self.app, self.poller, self.strict = app, poller, strict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS:
            await self.app(scope, receive, send)
            return

        async def send_after_apply(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                await self._applied(scope)
            await send(message)

        await self.app(scope, receive, send_after_apply)

    async def _applied(self, scope: Scope) -> None:
        if not self.strict:
            self.poller.poke()
            return
        if not await self.poller.sync(WRITE_WAIT):
            log.warning("%s %s: the workers did not apply the change within %g s; answering anyway "
                        "(it applies when their compile ends)", scope["method"], scope["path"], WRITE_WAIT)
