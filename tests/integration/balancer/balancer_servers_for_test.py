"""Small real servers on 127.0.0.1 for health-check tests: HTTP(S) with a settable status, TCP."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
from pathlib import Path
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port_for_test() -> int:
    """A port nothing listens on (bound, then released)."""
    from tests.helpers.node import free_port as _helpers_free_port

    return _helpers_free_port("127.0.0.1")


class HttpServer_for_test:
    """Answers every request with `status` after `delay` seconds; remembers what it was asked."""

    def __init__(self, status: int = 200, delay: float = 0.0, tls: ssl.SSLContext | None = None,
                 port: int = 0, silent: bool = False) -> None:
        self.status, self.delay, self.tls, self.port, self.silent = status, delay, tls, port, silent
        self.requests: list[bytes] = []
        self.answered: list[int] = []  # statuses actually sent, in order
        self.active = 0
        self.peak = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> HttpServer_for_test:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            await asyncio.sleep(3600 if self.silent else self.delay)
            self.answered.append(self.status)
            writer.write(f"HTTP/1.0 {self.status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self.active -= 1
            writer.close()


class TcpServer_for_test:
    """Accepts connections and closes them."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> TcpServer_for_test:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


def self_signed_for_test(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1/localhost and the cert path (to trust it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, cert_path


async def wait_for_test(predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def active_for_test(kind: str = "http", *, interval: float = 0.05, successes: int = 2,
                    http_failures: int = 2, tcp_failures: int = 2, timeouts: int = 2,
                    **active: Any) -> dict[str, Any]:
    """A healthchecks tree with active checks every `interval` seconds."""
    tree = {"type": kind, "timeout": 0.5,
            "healthy": {"interval": interval, "successes": successes},
            "unhealthy": {"interval": interval, "http_failures": http_failures,
                          "tcp_failures": tcp_failures, "timeouts": timeouts}}
    tree.update(active)
    return {"active": tree, "threshold": 0}


def balancers_for_test(targets: list[str], healthchecks: dict[str, Any] | None = None,
                       name: str = "up", **fields: Any) -> dict[str, Any]:
    """Compiled balancers of one upstream `name` with weight-100 `targets`."""
    from meshway.proxy.balancer import compile_balancers
    upstream = {"id": f"id-{name}", "name": name, "algorithm": "round-robin",
                "healthchecks": healthchecks, **fields}
    entities = [{"id": f"t{i}", "target": t, "weight": 100, "upstream": {"id": upstream["id"]}}
                for i, t in enumerate(targets)]
    return compile_balancers({"upstreams": [upstream], "targets": entities})


def target_health_for_test(checker: Any, target: str, upstream: str = "up") -> str:
    return next(t["health"] for t in checker.health(upstream)["data"] if t["target"] == target)
