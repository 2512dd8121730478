"""New connections in bursts: a worker takes a queue of them in a few turns of its loop, and
running out of file descriptors pauses accepting instead of spinning.

uvloop's own server accepts one connection per loop turn; on a loaded worker a burst of 1,000
new connections then waited in the kernel's queue for over a second (see proxy/_accept.py).
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import uvloop

from meshway.proxy._accept import BATCH, Acceptor
from meshway.proxy._state import Worker
from meshway.proxy.netutil import prepare_listener_socket
from meshway.settings import load_settings, parse_listen

REPO = Path(__file__).resolve().parents[3]


def test_a_worker_accepts_a_burst_of_connections_in_a_few_loop_turns(tmp_path):
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    clients: list[socket.socket] = []
    try:
        settings = load_settings(env={"MESHWAY_PREFIX": str(tmp_path), "MESHWAY_PROXY_ACCESS_LOG": "off"})
        worker = Worker(loop, settings)
        spec = parse_listen("proxy_listen", "127.0.0.1:0 backlog=2048")[0]
        loop.run_until_complete(worker.serve_sockets([(prepare_listener_socket(spec), spec, "proxy")]))
        port = worker.servers[0].sockets[0].getsockname()[1]
        burst = 3 * BATCH
        for _ in range(burst):  # the kernel completes each handshake: all wait in the accept queue
            clients.append(socket.create_connection(("127.0.0.1", port)))
        turns = 0

        def turn() -> None:  # one call per loop turn: it re-schedules itself for the next
            nonlocal turns
            turns += 1
            if len(worker.connections) < burst and turns < 10 * burst:
                loop.call_soon(turn)
            else:
                done.set_result(None)

        done = loop.create_future()
        loop.call_soon(turn)
        loop.run_until_complete(done)
        assert len(worker.connections) == burst
        # 3 batches and the turn that finds the queue empty (5 here: each transport starts in the
        # turn its connection is accepted, no task per connection); uvloop's own server needed
        # one turn per connection (386)
        assert turns <= 5, f"{burst} queued connections took {turns} loop turns to accept"
        # and they are served: a request on the last one gets the router's answer
        clients[-1].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        clients[-1].setblocking(False)
        got = b""
        while b"\r\n\r\n" not in got and turns < 1000:
            loop.run_until_complete(asyncio.sleep(0.01))
            turns += 1
            try:
                got += clients[-1].recv(4096)
            except BlockingIOError:
                pass
        assert got.startswith(b"HTTP/1.1 404 ")
    finally:
        for c in clients:
            c.close()
        loop.close()
        asyncio.set_event_loop(None)


class _SlowStartLoop:
    """A uvloop loop whose connect_accepted_socket first yields a bare turn (as `asyncio.sleep(0)`)
    and fails every other connection once started: what the acceptor drives instead of a task."""

    def __init__(self, loop) -> None:
        self._loop = loop
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._loop, name)

    async def connect_accepted_socket(self, factory, sock, **kw):
        self.calls += 1
        n = self.calls
        await asyncio.sleep(0)
        if n % 2 == 0:
            sock.close()
            raise ConnectionResetError("dropped before it started")
        return await self._loop.connect_accepted_socket(factory, sock, **kw)


def test_the_acceptor_drives_the_start_through_bare_yields_and_failures():
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    made: list[asyncio.Transport] = []

    class Greeter(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport)
            transport.write(b"hi")

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    slow = _SlowStartLoop(loop)
    acceptor = Acceptor(slow, listener, Greeter)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(6)]
    try:
        async def until_made() -> None:
            while len(made) < 3:
                await asyncio.sleep(0.01)
        loop.run_until_complete(asyncio.wait_for(until_made(), 10))
        assert slow.calls == 6 and len(made) == 3
        greeted = 0
        for c in clients:
            c.settimeout(5)
            greeted += c.recv(2) == b"hi"  # the dropped ones read their close: b""
        assert greeted == 3
    finally:
        acceptor.close()
        for t in made:
            t.close()
        for c in clients:
            c.close()
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        asyncio.set_event_loop(None)


def _nodelay(transport) -> int:
    return transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_client_and_upstream_connections_send_small_writes_at_once(tmp_path):
    """TCP_NODELAY on both sides of the proxy (a response head must not wait for Nagle): the
    listener's transports and the pool's connections have it from the loop's TCP transports."""
    from meshway.model import parse_declarative

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    clients: list[socket.socket] = []

    class Origin(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    try:
        origin = loop.run_until_complete(loop.create_server(Origin, "127.0.0.1", 0))
        origin_port = origin.sockets[0].getsockname()[1]
        settings = load_settings(env={"MESHWAY_PREFIX": str(tmp_path), "MESHWAY_PROXY_ACCESS_LOG": "off"})
        worker = Worker(loop, settings)
        spec = parse_listen("proxy_listen", "127.0.0.1:0")[0]
        loop.run_until_complete(worker.serve_sockets([(prepare_listener_socket(spec), spec, "proxy")]))
        doc = {"_format_version": "3.0", "services": [
            {"name": "o", "url": f"http://127.0.0.1:{origin_port}", "routes": [{"name": "r", "paths": ["/"]}]}]}
        assert loop.run_until_complete(worker.apply_config(parse_declarative(doc), None))["op"] == "applied"
        port = worker.servers[0].sockets[0].getsockname()[1]

        def ask() -> bytes:
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            clients.append(c)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b"ok"):
                got += c.recv(4096)
            return got

        answers = loop.run_until_complete(asyncio.gather(*(loop.run_in_executor(None, ask) for _ in range(3))))
        assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
        assert len(worker.connections) == 3
        assert [_nodelay(c.transport) for c in worker.connections] == [1, 1, 1]
        idle = [conn for conns in worker.pool.idle.values() for conn in conns]
        assert idle and all(_nodelay(conn.transport) for conn in idle)
    finally:
        for c in clients:
            c.close()
        loop.close()
        asyncio.set_event_loop(None)


_SERVER = textwrap.dedent("""
    import asyncio, logging, os, resource, socket, sys
    import uvloop
    from meshway.proxy._accept import Acceptor

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(message)s")

    class Greeter(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(b"hi")

    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        Acceptor(loop, sock, Greeter)
        await asyncio.sleep(0)
        spare = 12  # descriptors this process may open beyond what it has now
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + spare, 4096))
        print(sock.getsockname()[1], flush=True)
        await asyncio.sleep(3600)

    uvloop.run(main())
""")


def _greeted(conn: socket.socket) -> bool:
    try:
        return conn.recv(2) == b"hi"
    except BlockingIOError:
        return False


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_pauses_accepting_then_resumes(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(_SERVER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    log = tmp_path / "server.log"
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=log.open("wb"), env=env)
    conns: list[socket.socket] = []
    try:
        port = int(server.stdout.readline())
        for _ in range(40):  # more than the server has descriptors for
            c = socket.create_connection(("127.0.0.1", port))
            c.setblocking(False)
            conns.append(c)
        deadline = time.monotonic() + 10
        greeted: set[int] = set()
        while len(greeted) < 8 and time.monotonic() < deadline:
            greeted |= {i for i, c in enumerate(conns) if i not in greeted and _greeted(c)}
            time.sleep(0.05)
        assert 0 < len(greeted) < len(conns)  # some were accepted, then the limit stopped it
        # at the limit, with connections still queued: the server waits, it does not spin
        cpu, wall = _cpu_seconds(server.pid), time.monotonic()
        time.sleep(1.0)
        assert _cpu_seconds(server.pid) - cpu < 0.5 * (time.monotonic() - wall)
        greeted |= {i for i, c in enumerate(conns) if i not in greeted and _greeted(c)}
        # the accepted ones leave: their descriptors come back and the rest are accepted
        for i in greeted:
            conns[i].close()
        waiting = [c for i, c in enumerate(conns) if i not in greeted]
        served: set[int] = set()
        deadline = time.monotonic() + 10
        while len(served) < min(len(waiting), len(greeted)) and time.monotonic() < deadline:
            served |= {i for i, c in enumerate(waiting) if i not in served and _greeted(c)}
            time.sleep(0.05)
        assert len(served) >= min(len(waiting), len(greeted)) - 2  # (a close may still be in flight)
    finally:
        server.kill()
        server.wait(10)
        for c in conns:
            c.close()
    assert "pausing accepts" in log.read_text()
