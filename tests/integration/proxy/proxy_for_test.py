"""Helpers for proxy tests: snapshot builders, a tiny asyncio origin, a standalone worker."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httptools

ROOT = Path(__file__).resolve().parents[3]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


# -- snapshot builders ------------------------------------------------------------------------
def service_for_test(host: str = "127.0.0.1", port: int = 80, **kw: Any) -> dict[str, Any]:
    s = {"id": str(uuid.uuid4()), "name": kw.pop("name", None), "protocol": "http", "host": host, "port": port,
         "path": None, "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
         "tags": None, "enabled": True, "client_certificate": None, "tls_verify": None, "tls_verify_depth": None,
         "ca_certificates": None}
    s.update(kw)
    return s


def route_for_test(service: dict | None = None, **kw: Any) -> dict[str, Any]:
    r = {"id": str(uuid.uuid4()), "name": None, "protocols": ["http", "https"], "methods": None, "hosts": None,
         "paths": None, "headers": None, "snis": None, "sources": None, "destinations": None,
         "https_redirect_status_code": 426, "regex_priority": 0, "strip_path": True, "path_handling": "v0",
         "preserve_host": False, "request_buffering": True, "response_buffering": True,
         "service": {"id": service["id"]} if service else None, "tags": None}
    r.update(kw)
    return r


def upstream_for_test(name: str, **kw: Any) -> dict[str, Any]:
    u = {"id": str(uuid.uuid4()), "name": name, "algorithm": "round-robin", "hash_on": "none",
         "hash_fallback": "none", "slots": 10000, "healthchecks": None, "host_header": None, "tags": None}
    u.update(kw)
    return u


def target_for_test(upstream: dict, target: str, weight: int = 100) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "target": target, "weight": weight, "upstream": {"id": upstream["id"]}, "tags": None}


def plugin_for_test(name: str, config: dict | None = None, route: dict | None = None, service: dict | None = None,
                    consumer: dict | None = None, **kw: Any) -> dict[str, Any]:
    p = {"id": str(uuid.uuid4()), "name": name, "config": config or {}, "enabled": True,
         "protocols": ["grpc", "grpcs", "http", "https"], "route": {"id": route["id"]} if route else None,
         "service": {"id": service["id"]} if service else None,
         "consumer": {"id": consumer["id"]} if consumer else None, "tags": None, "instance_name": None}
    p.update(kw)
    return p


def snapshot_for_test(**collections: list) -> dict[str, Any]:
    snap: dict[str, Any] = {"_format_version": "3.0"}
    for name in ("services", "routes", "upstreams", "targets", "consumers", "plugins", "certificates", "snis",
                 "ca_certificates", "keyauth_credentials", "basicauth_credentials", "jwt_secrets", "acls"):
        snap[name] = list(collections.get(name, []))
    return snap


def install_plugins_for_test(tmp: Path, module: str, source: str, names: dict[str, str]) -> list[str]:
    """`source` as module `module`, with a dist-info declaring `names` (plugin name -> class)
    in the `meshway.plugins` entry-point group, as pip installs a plugin package. Returns the
    two directories to put on the worker's path."""
    src = tmp / "src"
    src.mkdir()
    (src / f"{module}.py").write_text(source)
    dist = module.replace("_", "-")
    info = tmp / "site" / f"{module}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    lines = "".join(f"{n} = {module}:{c}\n" for n, c in names.items())
    (info / "entry_points.txt").write_text("[meshway.plugins]\n" + lines)
    return [str(tmp / "site"), str(src)]


def pass_through_snapshot_for_test(**service: Any) -> dict[str, Any]:
    """One service (`service_for_test(**service)`) and a route sending every path to it unchanged."""
    svc = service_for_test(**service)
    return snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"], strip_path=False)])


# -- origin -----------------------------------------------------------------------------------
class _OriginConn(asyncio.Protocol):
    def __init__(self, origin: "Origin"):
        self.origin = origin
        self.parser = httptools.HttpRequestParser(self)
        self.origin.connections += 1
        self.conn_id = self.origin.connections
        self.raw = bytearray()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.raw += data
        self.origin.raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body_len, self.body = b"", [], 0, bytearray()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body_len += len(body)
        if len(self.body) < 65536:
            self.body += body

    def on_message_complete(self) -> None:
        self.origin.requests.append({"method": self.parser.get_method().decode(), "url": self.url.decode(),
                                     "headers": self.headers})
        asyncio.ensure_future(self.origin.handle(self))


class Origin:
    """A tiny HTTP/1.1 origin on 127.0.0.1 in a background thread; records what it received.

    Paths: `/stream` (chunked: one chunk, then waits for `release`), `/sleep/<s>` (`most_asleep`:
    the most of them in progress at once), `/close` (close-delimited body), `/garbage`, `/reset`,
    `/big/<n>` (n bytes), `/status/<code>`; anything else answers JSON describing the request (and
    `conn`, the connection number).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self.asleep = self.most_asleep = 0
        self.requests: list[dict[str, Any]] = []
        self.raw = bytearray()
        self.release = threading.Event()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                self.loop.create_server(lambda: _OriginConn(self), "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(5)

    async def handle(self, c: _OriginConn) -> None:
        path = c.url.decode().split("?")[0]
        w = c.transport.write
        if path == "/stream":
            w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            w(b"4\r\nrest\r\n0\r\n\r\n")
        elif path.startswith("/sleep/"):
            self.asleep += 1
            self.most_asleep = max(self.most_asleep, self.asleep)
            try:
                await asyncio.sleep(float(path.split("/")[2]))
            finally:
                self.asleep -= 1
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslept")
        elif path == "/close":
            w(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close")
            c.transport.close()
        elif path == "/garbage":
            w(b"this is not http\r\n\r\n")
        elif path == "/reset":
            c.transport.abort()
        elif path.startswith("/big/"):
            n = int(path.split("/")[2])
            w(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            chunk = b"x" * 65536
            sent = 0
            while sent < n:
                part = chunk[: min(65536, n - sent)]
                w(part)
                sent += len(part)
                if c.transport.get_write_buffer_size() > 1 << 20:
                    while c.transport.get_write_buffer_size() > 1 << 18:
                        await asyncio.sleep(0.001)
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            w(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code)
        else:
            body = json.dumps({"method": c.parser.get_method().decode(), "url": c.url.decode(), "headers": c.headers,
                               "body_len": c.body_len, "body": c.body[:1000].decode("latin-1"),
                               "conn": c.conn_id, "peer": c.transport.get_extra_info("peername")[0]}).encode()
            w(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Origin: yes\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))

    def close(self) -> None:
        self.release.set()

        def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_later(0.05, self.loop.stop)

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(2)


# -- worker -----------------------------------------------------------------------------------
class WorkerProcess:
    """A standalone worker subprocess listening on free ports."""

    def __init__(self, snapshot: dict, prefix: Path, listen: list[str] | None = None, env: dict | None = None,
                 extra_path: list[str] | None = None):
        prefix.mkdir(parents=True, exist_ok=True)
        snap = prefix / "snapshot.json"
        snap.write_text(json.dumps(snapshot))
        self.prefix = prefix
        full_env = {**os.environ, "MESHWAY_PREFIX": str(prefix), **(env or {})}
        if extra_path:
            full_env["PYTHONPATH"] = os.pathsep.join([*extra_path, full_env.get("PYTHONPATH", "")])
        cmd = [PYTHON, "-m", "meshway.proxy.worker", "--standalone", "--snapshot", str(snap)]
        for spec in listen or ["127.0.0.1:0"]:
            cmd += ["--listen", spec]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=str(ROOT))
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ready"):
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"worker did not start: {line!r} {err} {self.error_log()}")
        self.addrs = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in line.split()[1:]]
        self.port = self.addrs[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text() if path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def raw_request_for_test(port: int, data: bytes, timeout: float = 3.0, half_close: bool = False) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout`); return everything read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)


# -- certificates -------------------------------------------------------------------------------
def cert_pair_for_test(common_name: str, kind: str = "rsa", sans: list[str] | None = None) -> tuple[str, str]:
    """A self-signed certificate and key (PEM text) for `common_name`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else \
        ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in (sans or [common_name])]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert_pem, key_pem
