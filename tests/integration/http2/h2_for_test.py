"""Helpers for HTTP/2 and gRPC tests: a real grpcio origin, a worker with h2 listeners, clients.

The gRPC origin uses generic handlers over raw bytes (no proto to compile): service
`test.Echo` with `Unary`, `ServerStream`, `ClientStream`, `Bidi`, `Fail`, `Slow`.
"""
from __future__ import annotations

import socket
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tests.integration.proxy.proxy_for_test import WorkerProcess, cert_pair_for_test

SERVICE = "test.Echo"


class GrpcOrigin:
    """A grpcio server on 127.0.0.1 (h2c, or TLS when `tls`), recording the peers it saw."""

    def __init__(self, tls: bool = False, workers: int = 16, options: list | None = None):
        self.peers: set[str] = set()
        self.metadata: list[dict[str, str]] = []
        self.cancelled_after: list[float] = []
        self.slow_now = self.most_slow = 0  # `Slow` calls in progress, and the most at once
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options or [])
        self.server.add_generic_rpc_handlers((self._handler(),))
        if tls:
            cert, key = cert_pair_for_test("localhost", sans=["localhost"])
            creds = grpc.ssl_server_credentials([(key.encode(), cert.encode())])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _seen(self, context: Any) -> None:
        with self.lock:
            self.peers.add(context.peer())
            self.metadata.append(dict(context.invocation_metadata()))

    def _handler(self) -> grpc.GenericRpcHandler:
        def unary(request: bytes, context: Any) -> bytes:
            self._seen(context)
            context.send_initial_metadata((("x-initial", "yes"),))
            context.set_trailing_metadata((("x-trailer", "done"),))
            return b"echo:" + request

        def server_stream(request: bytes, context: Any):
            self._seen(context)
            for i in range(int(request or b"3")):
                yield b"item-%d" % i

        def client_stream(requests: Any, context: Any) -> bytes:
            self._seen(context)
            parts = list(requests)
            return b"%d:%d" % (len(parts), sum(map(len, parts)))

        def bidi(requests: Any, context: Any):
            self._seen(context)
            for req in requests:
                yield b"re:" + req

        def fail(request: bytes, context: Any) -> bytes:
            self._seen(context)
            context.set_trailing_metadata((("x-why", "because"),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad thing happened: " + request.decode())

        def slow(request: bytes, context: Any) -> bytes:
            self._seen(context)
            with self.lock:
                self.slow_now += 1
                self.most_slow = max(self.most_slow, self.slow_now)
            try:
                threading.Event().wait(float(request or b"0.3"))
            finally:
                with self.lock:
                    self.slow_now -= 1
            return b"slow"

        def hang(request: bytes, context: Any) -> bytes:
            self._seen(context)
            started = time.monotonic()
            while context.is_active() and time.monotonic() - started < 5:
                time.sleep(0.02)
            self.cancelled_after.append(time.monotonic() - started)
            return b"late"

        handlers = {
            "Hang": grpc.unary_unary_rpc_method_handler(hang),
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def close(self) -> None:
        self.server.stop(0)


def grpc_channel_for_test(port: int, root_cert: str | None = None, options: list | None = None) -> grpc.Channel:
    """A grpcio channel to the proxy: h2c, or TLS trusting `root_cert` (name `localhost`)."""
    opts = list(options or [])
    if root_cert is None:
        return grpc.insecure_channel(f"127.0.0.1:{port}", options=opts)
    creds = grpc.ssl_channel_credentials(root_certificates=root_cert.encode())
    opts.append(("grpc.ssl_target_name_override", "localhost"))
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=opts)


def method_for_test(channel: grpc.Channel, name: str, kind: str = "unary_unary") -> Any:
    """A raw-bytes callable for `/test.Echo/<name>`."""
    return getattr(channel, kind)(f"/{SERVICE}/{name}")


class H2Worker:
    """A standalone worker with a plain `http2` listener and an `ssl http2` one (cert for localhost)."""

    def __init__(self, snapshot: dict, prefix: Path, env: dict | None = None):
        prefix.mkdir(parents=True, exist_ok=True)
        self.cert, key = cert_pair_for_test("localhost", sans=["localhost"])
        (prefix / "proxy.crt").write_text(self.cert)
        (prefix / "proxy.key").write_text(key)
        full_env = {"MESHWAY_SSL_CERT": str(prefix / "proxy.crt"), "MESHWAY_SSL_CERT_KEY": str(prefix / "proxy.key"),
                    **(env or {})}
        self.proc = WorkerProcess(snapshot, prefix / "worker", listen=["127.0.0.1:0 http2", "127.0.0.1:0 ssl http2"],
                                  env=full_env)
        self.plain = self.proc.addrs[0][1]
        self.tls = self.proc.addrs[1][1]
        self.ca_file = str(prefix / "proxy.crt")

    def alive(self) -> bool:
        return self.proc.alive()

    def error_log(self) -> str:
        return self.proc.error_log()

    def stop(self) -> None:
        self.proc.stop()


def free_port_for_test() -> int:
    from tests.helpers.node import free_port as _helpers_free_port

    return _helpers_free_port("127.0.0.1")


class RawH2ForTest:
    """A blocking HTTP/2 client on a plain socket (h2c prior knowledge), for frame-level tests."""

    def __init__(self, port: int, window: int | None = None, timeout: float = 5.0):
        import h2.config
        import h2.connection
        import h2.settings

        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None,
                                                                       validate_outbound_headers=False,
                                                                       normalize_outbound_headers=False))
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.h2.initiate_connection()
        self.send()
        self.events: list[Any] = []
        self.closed = False

    def send(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, headers: list | None = None, body: bytes | None = None, method: str = "GET") -> int:
        sid = self.h2.get_next_available_stream_id()
        block = [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", b"localhost"),
                 (b":path", path.encode()), *(headers or [])]
        self.h2.send_headers(sid, block, end_stream=body is None)
        if body is not None:
            self.h2.send_data(sid, body, end_stream=True)
        self.send()
        return sid

    def read(self, ack: bool = True, timeout: float | None = None) -> list[Any]:
        """One socket read's worth of events ([] on close or timeout)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return []
        except ConnectionError:
            data = b""
        finally:
            if timeout is not None:
                self.sock.settimeout(self.timeout)
        if not data:
            self.closed = True
            return []
        events = self.h2.receive_data(data)
        if ack:
            import h2.events

            for ev in events:
                if isinstance(ev, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        self.send()
        self.events += events
        return events

    def response(self, sid: int, deadline: float = 5.0) -> tuple[dict, bytes]:
        """Read until stream `sid` ends: (headers dict, body)."""
        import time

        import h2.events

        end = time.monotonic() + deadline
        while time.monotonic() < end and not self.closed:
            if any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == sid
                   for e in self.events):
                break
            self.read(timeout=max(0.01, end - time.monotonic()))
        headers: dict = {}
        body = b""
        for e in self.events:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                headers = {k.decode(): v.decode() for k, v in e.headers}
            elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                body += e.data
        return headers, body

    def goaway_code(self, deadline: float = 10.0) -> int | None:
        """Read until the server's GOAWAY (its error code) or the close (None); `deadline` only ends
        a wait for a GOAWAY that does not come (a loaded machine can take seconds to send one)."""
        import time

        import h2.events

        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for e in self.events:
                if isinstance(e, h2.events.ConnectionTerminated):
                    return int(e.error_code)
            if self.closed:
                return None
            try:
                self.read(timeout=max(0.01, end - time.monotonic()))
            except Exception:  # the client-side h2 state machine may object to what follows
                return None
        return None

    def close(self) -> None:
        self.sock.close()


def goaway_in_for_test(raw: bytes) -> int | None:
    """The error code of the first GOAWAY frame in raw server bytes (after its SETTINGS), else None."""
    pos = 0
    while pos + 9 <= len(raw):
        length = int.from_bytes(raw[pos:pos + 3], "big")
        kind = raw[pos + 3]
        if kind == 0x7 and pos + 9 + 8 <= len(raw):
            return int.from_bytes(raw[pos + 9 + 4:pos + 9 + 8], "big")
        pos += 9 + length
    return None


def rss_kib_for_test(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
