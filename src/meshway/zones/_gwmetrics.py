"""A mesh gateway's connection counts per SNI, in Prometheus' text format.

The gateway's node logs one access line per stream connection (`sni=... route=... close=...`);
the gateway process reads the new lines of that log at each turn of its loop (by offset, so a
line is counted once; a log that shrank was rotated and is read from its start) and serves the
counts on `-prometheus-bind` at `-prometheus-scrape-path` (Consul's flag; default `/metrics`):

    meshway_mesh_gateway_connections_total{sni="api.default.cloud.internal.mesh.meshway",
                                           route="remote-cloud",close="upstream_closed"} 3
    meshway_mesh_gateway_bytes_total{sni="...",direction="up|down"} ...

A connection with no SNI (not TLS, or no server_name) counts under `sni=""`.
"""
from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
MAX_SERIES = 10_000  # distinct (sni, route, close): beyond it, new names count under sni="(other)"


def parse_line(line: str) -> dict[str, str] | None:
    """The fields of one stream access line, or None for another line."""
    if not line.startswith("stream "):
        return None
    return {k: v.strip('"') for k, v in _FIELD.findall(line)}


class SniCounters:
    """Counts by (sni, route, close) and bytes by (sni, direction), fed from access log lines."""

    def __init__(self) -> None:
        self.connections: dict[tuple[str, str, str], int] = {}
        self.bytes: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, fields: dict[str, str]) -> None:
        sni = "" if fields.get("sni", "-") == "-" else fields["sni"]
        key = (sni, fields.get("route", "-"), fields.get("close", "-"))
        with self._lock:
            if key not in self.connections and len(self.connections) >= MAX_SERIES:
                key = ("(other)", key[1], key[2])
            self.connections[key] = self.connections.get(key, 0) + 1
            for direction, field in (("up", "up_bytes"), ("down", "down_bytes")):
                if field in fields and fields[field].isdigit():
                    bkey = (key[0], direction)
                    self.bytes[bkey] = self.bytes.get(bkey, 0) + int(fields[field])

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP meshway_mesh_gateway_connections_total Connections through the mesh gateway, "
                     "by SNI, route and how they ended",
                     "# TYPE meshway_mesh_gateway_connections_total counter"]
            for (sni, route, close), n in sorted(self.connections.items()):
                lines.append(f'meshway_mesh_gateway_connections_total{{sni="{_esc(sni)}",route="{_esc(route)}",'
                             f'close="{_esc(close)}"}} {n}')
            lines += ["# HELP meshway_mesh_gateway_bytes_total Bytes relayed by the mesh gateway, by SNI "
                      "(up: from the client)", "# TYPE meshway_mesh_gateway_bytes_total counter"]
            for (sni, direction), n in sorted(self.bytes.items()):
                lines.append(f'meshway_mesh_gateway_bytes_total{{sni="{_esc(sni)}",direction="{direction}"}} {n}')
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class LogFollower:
    """Reads the lines appended to a file since the last call (bounded per call)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new_lines(self, limit: int = 1 << 20) -> list[str]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset = 0  # rotated
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(limit)
        end = data.rfind(b"\n") + 1  # a partial last line waits for the next call
        self.offset += end
        return data[:end].decode("utf-8", "replace").splitlines()


def serve_metrics(bind: str, path: str, counters: SniCounters) -> ThreadingHTTPServer:
    """Serve the counters at http://bind/path in a daemon thread."""
    host, _, port = bind.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] != path:
                self.send_error(404)
                return
            body = counters.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
