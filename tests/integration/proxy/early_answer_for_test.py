"""An in-process worker on uvloop (as `meshway start` runs it) and a raw-socket origin.

Why in process: the race of the service-mesh walkthrough (an upstream that answers and closes
before the proxy has written the request) depends on which of two loop callbacks runs first.
`hold_connect_until_closed_for_test` makes the losing order happen every time: the connect
path gets its new connection only once that connection has seen the origin's close.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import uvloop

from meshway.proxy._state import Worker
from meshway.proxy.netutil import prepare_listener_socket
from meshway.settings import load_settings, parse_listen

ANSWER_FIRST = b"HTTP/1.1 200 OK\r\n\r\nHello from Service B\n"  # ncat --sh-exec "echo ..."
KEEP_ALIVE_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class WorkerInProcessForTest:
    """A real `Worker` serving one plain listener on a uvloop loop in a background thread."""

    def __init__(self, snapshot: dict, prefix: Path) -> None:
        self.loop = uvloop.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        settings = load_settings(env={"MESHWAY_PREFIX": str(prefix), "MESHWAY_PROXY_ACCESS_LOG": "off"})
        self.worker = self.call(self._start(settings, snapshot))
        self.port = self.worker.servers[0].sockets[0].getsockname()[1]

    async def _start(self, settings: Any, snapshot: dict) -> Worker:
        worker = Worker(asyncio.get_running_loop(), settings)
        spec = parse_listen("proxy_listen", "127.0.0.1:0")[0]
        await worker.serve_sockets([(prepare_listener_socket(spec), spec, "proxy")])
        reply = await worker.apply_config(snapshot, "early-answer")
        assert reply["op"] == "applied", reply
        return worker

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def idle_upstream_connections(self) -> int:
        async def idle() -> int:
            return self.worker.pool.stats()["idle"]

        return self.call(idle())

    def stop(self) -> None:
        self.call(self.worker.shutdown(grace=0.1))
        self.loop.call_soon_threadsafe(self.loop.stop)


def hold_connect_until_closed_for_test(worker: Worker) -> None:
    """New upstream connections reach the exchange only after the origin's close was processed."""
    connect = worker.pool.connect

    async def held(*args: Any, **kw: Any) -> Any:
        conn = await connect(*args, **kw)
        for _ in range(2000):  # bounded: a test must not hang on a broken origin
            if conn.closed:
                break
            await asyncio.sleep(0.005)
        return conn

    worker.pool.connect = held


class RawOriginForTest:
    """A TCP origin on 127.0.0.1 whose n-th accepted connection runs `script(conn, n)` in a thread."""

    def __init__(self, script: Callable[[socket.socket, int], None]) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn, self.accepted), daemon=True).start()

    def _run(self, conn: socket.socket, n: int) -> None:
        with conn:
            conn.settimeout(10)
            try:
                self.script(conn, n)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def read_head_for_test(conn: socket.socket) -> bytes:
    """Read one request head (up to the blank line)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
