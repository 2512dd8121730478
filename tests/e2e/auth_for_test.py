"""Shared by the auth plugins' end-to-end tests: an origin that echoes what it received, a hybrid
control plane / data plane pair, and polling for a data plane to catch up."""
from __future__ import annotations

import http.server
import json
import threading
import time

from meshway.pki import gen_cluster_cert
from tests.helpers.node import free_port


class EchoOriginForTest:
    """Answers every request with 200 and JSON {method, path, headers (lowercased names), body}."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("latin-1") if length else ""
                seen = {"method": self.command, "path": self.path, "body": body,
                        "headers": {k.lower(): v for k, v in self.headers.items()}}
                data = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def hybrid_pair_for_test(node_factory, tmp_path):
    """A started control plane (SQLite) and a data plane (2 workers) connected to it."""
    cert, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    gen_cluster_cert(cert, key)
    port = free_port()
    cp = node_factory("cp", role="control_plane", proxy_listen="off", cluster_listen=f"127.0.0.1:{port}",
                      cluster_cert=str(cert), cluster_cert_key=str(key))
    cp.start()
    dp = node_factory("dp", role="data_plane", database="off", admin_listen="off", workers="2",
                      cluster_control_plane=f"127.0.0.1:{port}", cluster_cert=str(cert), cluster_cert_key=str(key))
    dp.start()
    return cp, dp


def eventually_for_test(check, timeout: float = 30.0, what: str = "condition"):
    """Polls `check` until it returns something true (a data plane applies config asynchronously)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - connection refused while a node starts, etc.
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what} not met in {timeout} s (last: {last!r})")
