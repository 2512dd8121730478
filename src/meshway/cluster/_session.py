"""The push side of one connected data plane.

Only the newest configuration matters: a session holds one pending slot, overwritten by each
offer, and a single sender task writes it and waits for the socket to drain. A slow data plane
therefore costs one queued snapshot, never a backlog, and cannot delay the others.
A data plane that takes deltas (`_delta`) is offered one from `base`: the version it will run
once it has taken what was already sent (the last one sent, unless it rejected it).
"""
from __future__ import annotations

import asyncio
import logging

from ._wsconn import Closed, WsConnection

log = logging.getLogger("meshway.cluster")


class DataPlaneSession:
    """One connected data plane: what it reported, what it was sent, and the next config to send."""

    def __init__(self, conn: WsConnection, node_id: str, reported_hash: str, drain_timeout: float = 60.0,
                 hostname: str = "", delta: bool = False) -> None:
        self.conn = conn
        self.node_id = node_id
        self.hostname = hostname
        self.reported = reported_hash
        self.sent: str | None = None
        self.rejected: str | None = None
        self.delta = delta  # it said in its hello that it applies `reconfigure_delta` frames
        self._drain_timeout = drain_timeout
        self._pending: tuple[bytes, str] | None = None
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._send_loop())

    @property
    def base(self) -> str:
        """The version this data plane runs once it has processed the frames already sent."""
        return self.sent if self.sent is not None and self.sent != self.rejected else self.reported

    def offer(self, frame: bytes | None, config_hash: str | None) -> None:
        """Send this config unless the data plane has it or was already sent it (and may have rejected
        it): at once while the socket takes it (no task switch per data plane on a push to thousands),
        else in the pending slot until it drains."""
        if frame is None or config_hash in (self.reported, self.sent):
            return
        self._pending = (frame, config_hash)
        if self.conn.writable and not self._ready.is_set():
            self._write_pending()
        else:
            self._ready.set()

    def _write_pending(self) -> None:
        frame, config_hash = self._pending
        self._pending = None
        try:
            self.conn.send(frame)
        except Closed as e:
            self._failed(str(e))
            return
        self.sent = config_hash

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._ready.wait()
                await self.conn.drain(self._drain_timeout)
                self._ready.clear()
                if self._pending is not None:
                    self._write_pending()
        except TimeoutError:
            self._failed("send buffer did not drain")

    def _failed(self, reason: str) -> None:
        log.warning("data plane %s: cannot push configuration (%s); closing", self.node_id, reason)
        self.conn.close(1011, "push failed")

    def stop(self) -> None:
        self._task.cancel()
