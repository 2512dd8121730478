"""A real HTTP log receiver in a thread: records each request; can be told to fail."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ReceiverForTest:
    """POSTs to http://127.0.0.1:<port>/... are recorded as (method, path, headers, json body)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.record()

            def do_PUT(self) -> None:
                self.record()

            def record(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.arrived:
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                    if not failing:
                        receiver.received.append({"method": self.command, "path": self.path,
                                                  "headers": dict(self.headers), "body": json.loads(body)})
                    receiver.arrived.notify_all()
                status = 500 if failing else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= n, timeout)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
