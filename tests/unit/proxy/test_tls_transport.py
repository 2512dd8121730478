"""The TLS transports of proxy listeners (`tls_impl`): OpenSSL on the socket (`_core._tlssock`)
and uvloop's `ssl` transport, driven the same way through `Acceptor` with a real TLS client.

What a protocol sees must not depend on the transport: the SNI the client sent, the ALPN
choice, data both ways, flow control (pause/resume_reading, pause/resume_writing around the
write buffer limits), close with close_notify, abort without it, refused handshakes and the
handshake timeout."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

import pytest
import uvloop

from meshway.proxy import _tlsimpl
from meshway.proxy._accept import Acceptor
from meshway.proxy._tls import ServerTLS, compiled_listener, listener_context
from meshway.settings import load_settings
from tests.fixtures.certs import cert_pair_for_test

IMPLS = ["compiled", "python"]


class Recorder(asyncio.Protocol):
    """Records what the transport gives it; `on_data` lets a test act on each chunk."""

    made: list["Recorder"] = []
    on_data_default = None

    def __init__(self) -> None:
        self.data = bytearray()
        self.events: list[str] = []
        self.lost = asyncio.get_event_loop().create_future()
        self.on_data = Recorder.on_data_default


    def connection_made(self, transport) -> None:
        Recorder.made.append(self)  # uvloop makes the protocol before the handshake, connects it after
        self.transport = transport
        info = transport.get_extra_info("ssl_object")
        self.sni = getattr(info, "meshway_sni", None)
        self.alpn = info.selected_alpn_protocol()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.on_data is not None:
            self.on_data(self, data)

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.fixture()
def pki(tmp_path: Path):
    a_cert, a_key = cert_pair_for_test("a.test")
    snapshot = {"certificates": [{"id": "c1", "cert": a_cert, "key": a_key}],
                "snis": [{"id": "s1", "name": "a.test", "certificate": {"id": "c1"}}]}
    return ServerTLS(snapshot, None)  # no default certificate: an unknown name is refused


class Server:
    def __init__(self, impl: str, tls: ServerTLS, h2: bool = False, timeout: float = 5.0) -> None:
        self.impl = impl
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        Recorder.made = []
        self.dropped: list[BaseException] = []
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        core = _tlsimpl.resolve(impl)
        if core is not None:
            ctx, choose = compiled_listener(core, lambda: tls, h2)
            self.acceptor = Acceptor(self.loop, sock, Recorder, ssl=ctx, ssl_handshake_timeout=timeout,
                                     tls=(core, choose))
            self.acceptor._dropped = self.dropped.append  # what the acceptor is told of refused handshakes
        else:
            ctx = listener_context(lambda: tls, h2)
            self.acceptor = Acceptor(self.loop, sock, Recorder, ssl=ctx, ssl_handshake_timeout=timeout)

    def run(self, client, *args, limit: float = 20.0):
        """Runs the blocking `client(port, *args)` in a thread while the loop serves."""
        fut = self.loop.run_in_executor(None, client, self.port, *args)
        return self.loop.run_until_complete(asyncio.wait_for(fut, limit))

    def until(self, predicate, limit: float = 10.0) -> None:
        async def wait():
            while not predicate():
                await asyncio.sleep(0.01)
        self.loop.run_until_complete(asyncio.wait_for(wait(), limit))

    def close(self) -> None:
        self.acceptor.close()
        self.loop.run_until_complete(asyncio.sleep(0.05))
        self.loop.close()


@pytest.fixture(params=IMPLS)
def server_of(request, pki):
    made = []

    def make(**kw) -> Server:
        s = Server(request.param, pki, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def _client(port: int, sni: str | None = "a.test", alpn=("http/1.1",)) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=sni, suppress_ragged_eofs=False)


def _read_all(s: ssl.SSLSocket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_sni_alpn_and_data_both_ways(server_of):
    srv = server_of(h2=True)

    def answer(proto, data):
        if len(proto.data) == 4000:
            proto.transport.write(b"ok!")
    Recorder.on_data_default = staticmethod(answer)

    def client(port):
        with _client(port, "a.test", ("h2", "http/1.1")) as s:
            s.sendall(b"ping" * 1000)
            return s.selected_alpn_protocol(), _read_all(s, 3)

    try:
        alpn, back = srv.run(client)
    finally:
        Recorder.on_data_default = None
    proto = Recorder.made[0]
    assert (alpn, back) == ("h2", b"ok!")
    assert (proto.sni, proto.alpn, bytes(proto.data)) == ("a.test", "h2", b"ping" * 1000)


def test_accepted_connections_have_tcp_nodelay(server_of):
    """A small write (a response head, an HTTP/2 frame) goes at once, not after Nagle's wait:
    the protocol no longer sets TCP_NODELAY itself, the transport's socket has it."""
    srv = server_of()
    seen: list[int] = []

    def answer(proto, data):
        sock = proto.transport.get_extra_info("socket")
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        proto.transport.write(b"ok")
    Recorder.on_data_default = staticmethod(answer)

    def client(port):
        with _client(port) as s:
            s.sendall(b"x")
            return _read_all(s, 2)

    try:
        assert srv.run(client) == b"ok"
    finally:
        Recorder.on_data_default = None
    assert seen and all(seen)


def test_unknown_name_is_refused_and_the_listener_goes_on(server_of):
    srv = server_of()

    # OpenSSL on the socket sends the alert; uvloop's ssl transport closes without flushing it
    why = "UNRECOGNIZED_NAME" if srv.impl == "compiled" else "UNRECOGNIZED_NAME|UNEXPECTED_EOF"

    def refused(port):
        with pytest.raises(ssl.SSLError, match=why):
            _client(port, "nobody.test")

    srv.run(refused)
    assert Recorder.made == []  # no protocol for a refused handshake
    srv.run(lambda port: _client(port, "a.test").close())
    srv.until(lambda: len(Recorder.made) == 1)


def test_pause_reading_holds_data_until_resumed(server_of):
    srv = server_of()
    state = {}

    def client(port):
        s = _client(port)
        s.sendall(b"first")
        state["sock"] = s

    srv.run(client)
    srv.until(lambda: Recorder.made and len(Recorder.made[0].data) == 5)
    proto = Recorder.made[0]
    proto.transport.pause_reading()
    srv.run(lambda port: state["sock"].sendall(b"x" * 300_000))
    srv.loop.run_until_complete(asyncio.sleep(0.3))
    assert bytes(proto.data) == b"first"  # nothing delivered while paused
    proto.transport.resume_reading()
    srv.until(lambda: len(proto.data) == 300_005)
    state["sock"].close()


def test_write_buffer_limits_pause_and_resume_the_writer(server_of):
    srv = server_of()
    state = {}

    def connect(port):
        s = _client(port)
        s.sendall(b"go")
        state["sock"] = s

    srv.run(connect)
    srv.until(lambda: Recorder.made and Recorder.made[0].data == b"go")
    proto = Recorder.made[0]
    proto.transport.set_write_buffer_limits(high=64 * 1024)
    payload = bytes(range(256)) * 32 * 1024  # 8 MiB: more than the socket buffers hold
    proto.transport.write(payload)
    # uvloop's ssl transport encrypts a whole write into its TCP transport's buffer and never
    # pauses the protocol for one; the compiled transport keeps what the socket did not take
    paces = srv.impl == "compiled"
    if paces:
        assert proto.transport.get_write_buffer_size() > 64 * 1024
        assert proto.events == ["pause_writing"]  # the client reads nothing yet
    got = srv.run(lambda port: _read_all(state["sock"], len(payload)))
    assert got == payload
    if paces:
        srv.until(lambda: proto.transport.get_write_buffer_size() == 0)
        assert proto.events == ["pause_writing", "resume_writing"]
    state["sock"].close()


@pytest.mark.parametrize("how", ["close", "abort"])
def test_close_sends_close_notify_and_abort_does_not(server_of, how):
    srv = server_of()
    state = {}

    def connect(port):
        s = _client(port)
        s.sendall(b"hi")
        state["sock"] = s

    srv.run(connect)
    srv.until(lambda: Recorder.made and Recorder.made[0].data == b"hi")
    proto = Recorder.made[0]
    proto.transport.write(b"bye")
    getattr(proto.transport, how)()
    assert proto.transport.is_closing()

    def read_end(port):
        s = state["sock"]
        try:
            return s.recv(100), s.recv(100)  # the data, then a clean end (close_notify: b"")
        except (ssl.SSLEOFError, ConnectionResetError) as e:  # the TCP connection ended without it
            return type(e).__name__
        finally:
            s.close()

    end = srv.run(read_end)
    srv.loop.run_until_complete(asyncio.wait_for(proto.lost, 5))  # uvloop waits for the client's end
    if how == "close":
        assert end == (b"bye", b"")
    else:
        assert end in ("SSLEOFError", "ConnectionResetError")


def test_client_close_notify_ends_the_connection(server_of):
    srv = server_of()

    def client(port):
        s = _client(port)
        s.sendall(b"hi")
        s.unwrap().close()  # close_notify, then the TCP close

    srv.run(client)
    srv.until(lambda: Recorder.made and Recorder.made[0].lost.done())
    assert Recorder.made[0].data == b"hi"
    assert Recorder.made[0].events == ["eof"]


def test_handshake_timeout_closes_a_silent_client(server_of):
    srv = server_of(timeout=0.3)

    def silent(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            return s.recv(10)  # b"" once the server gives up

    assert srv.run(silent) == b""
    assert Recorder.made == []


def test_tls_impl_setting_selects_the_transport(tmp_path):
    for impl, expected in (("python", None), ("compiled", _tlsimpl._tlssock), ("auto", _tlsimpl._tlssock)):
        conf = tmp_path / f"{impl}.conf"
        conf.write_text(f"prefix = {tmp_path}\ntls_impl = {impl}\n")
        assert _tlsimpl.resolve(load_settings(str(conf), env={}).tls_impl) is expected
    conf = tmp_path / "bad.conf"
    conf.write_text(f"prefix = {tmp_path}\ntls_impl = kernel\n")
    with pytest.raises(Exception, match="tls_impl"):
        load_settings(str(conf), env={})
    assert load_settings(str(conf.with_name("python.conf")), env={"MESHWAY_TLS_IMPL": "compiled"}).tls_impl == "compiled"


def test_kernel_tls_probe_agrees_with_the_kernel():
    """kTLS is detected, not assumed: the probe sets the `tls` ULP the way OpenSSL does (which
    loads the kernel module when there is one) and the kernel's list of ULPs must agree."""
    on, why = _tlsimpl.kernel_tls()
    listed = Path("/proc/sys/net/ipv4/tcp_available_ulp").read_text().split()
    assert on == ("tls" in listed), (on, why, listed)
    if not on:
        assert "CONFIG_TLS" in why or "probe failed" in why
