"""Helpers for stream tests: an in-process proxy on uvloop, ncat services, a small PKI."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshway.proxy import netutil
from meshway.proxy.stream import compile_stream_runtime, start_stream_listener
from meshway.settings import load_settings, parse_listen

HOST = "127.0.0.1"


def free_port_for_test() -> int:
    from tests.helpers.node import free_port as _helpers_free_port

    return _helpers_free_port(HOST)


def wait_port_for_test(port: int, host: str = HOST, timeout: float = 30.0) -> None:
    """Until something listens on the port (a process starting: seconds on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def service_for_test(sid: str, port: int, protocol: str = "tcp", host: str = HOST, **fields) -> dict:
    return {"id": sid, "name": sid, "protocol": protocol, "host": host, "port": port, "retries": 5,
            "connect_timeout": 2000, "read_timeout": 10000, "write_timeout": 10000, "tags": None,
            "tls_verify": None, "ca_certificates": None, "client_certificate": None, **fields}


def route_for_test(rid: str, service: str, protocols=("tcp",), **fields) -> dict:
    return {"id": rid, "name": rid, "protocols": list(protocols), "sources": None, "destinations": None,
            "snis": None, "service": {"id": service}, **fields}


def snapshot_for_test(services=(), routes=(), **more) -> dict:
    snap = {k: [] for k in ("services", "routes", "upstreams", "targets", "certificates", "snis", "ca_certificates")}
    snap.update(services=list(services), routes=list(routes), **more)
    return snap


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class ProxyForTest:
    """A stream listener on 127.0.0.1:<free port>, served by uvloop in a thread."""

    def __init__(self, snapshot: dict, listen_flags: str = "", access_log=None, **settings: str) -> None:
        overrides = {"stream_preread_timeout": "0.2", **settings}
        self.settings = load_settings(env={}, overrides=overrides)
        self.runtime = compile_stream_runtime(snapshot, self.settings)
        self.spec = parse_listen("stream_listen", f"{HOST}:0 {listen_flags}")[0]
        self.sock = netutil.prepare_listener_socket(self.spec)
        self.port = self.sock.getsockname()[1]
        self._log = _Lines()
        logging.getLogger("meshway.stream").addHandler(self._log)
        logging.getLogger("meshway.stream").setLevel(logging.INFO)
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = self._call(start_stream_listener(self.sock, self.spec, lambda: self.runtime, self.settings,
                                                       access_log=access_log))

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def swap(self, snapshot: dict) -> None:
        self.runtime = compile_stream_runtime(snapshot, self.settings)

    @property
    def lines(self) -> list[str]:
        return list(self._log.lines)

    def wait_line(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self._log.lines:
                if needle in line:
                    return line
            time.sleep(0.01)
        raise AssertionError(f"no log line with {needle!r}; got {self._log.lines}")

    def close(self) -> None:
        async def stop():
            self.server.close()

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        logging.getLogger("meshway.stream").removeHandler(self._log)


class Processes:
    """Child processes a test started; all killed at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, *argv: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), stdout=kw.pop("stdout", subprocess.PIPE),
                                stderr=kw.pop("stderr", subprocess.PIPE), **kw)
        self.procs.append(proc)
        return proc

    def ncat_server(self, *args: str, port: int | None = None, host: str = HOST) -> int:
        port = port or free_port_for_test()
        self.start("ncat", "--listen", "--keep-open", *args, host, str(port), stdin=subprocess.DEVNULL)
        wait_port_for_test(port, host)
        return port

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


class PkiForTest:
    """A CA and leaf certificates written as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshway test CA")])
        self.ca_cert = self._builder(self.ca_name, self.ca_key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(self.ca_key, hashes.SHA256())
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        self.ca_path = self._write("ca.pem", self.ca_pem)

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.ca_name if hasattr(self, "ca_cert") else subject)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2)))

    def _write(self, name: str, text: str) -> str:
        path = self.dir / name
        path.write_text(text)
        return str(path)

    def leaf(self, name: str) -> dict:
        """{'cert': pem, 'key': pem, 'cert_path': ..., 'key_path': ...} for DNS name `name`."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return {"cert": cert_pem, "key": key_pem, "cert_path": self._write(f"{name}.crt", cert_pem),
                "key_path": self._write(f"{name}.key", key_pem)}


def recv_all_for_test(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    """Read until EOF (bounded by `limit` bytes and the socket's timeout)."""
    chunks, total = [], 0
    while total < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(30)
        while True:  # ends at the client's EOF (or the timeout)
            chunk = self.request.recv(262144)
            if not chunk:
                break
            self.request.sendall(chunk)
        self.request.shutdown(socket.SHUT_WR)


class EchoServerForTest(socketserver.ThreadingTCPServer):
    """Echoes each connection, answers its EOF with EOF (what `ncat --exec cat` does not)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _Echo)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
