"""Run by test_steady_state_gc in a fresh interpreter: a real Worker (uvloop, real sockets) proxies
keep-alive GETs from a client process to an origin process, one at a time; after a warm-up it
counts the worker's garbage collections (gc.callbacks) and the growth of the youngest generation
over the measured requests. Prints JSON. argv: http1_impl requests."""
import asyncio
import gc
import json
import os
import selectors
import socket
import sys
import tempfile
from pathlib import Path

import uvloop

from meshway.model import parse_declarative
from meshway.proxy import Worker
from meshway.settings import ListenSpec, load_settings

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
WARM = 2000


def origin(sock: socket.socket) -> None:
    """Child process: answers each request head on each connection with ANSWER (the worker opens
    a new upstream connection every `upstream_keepalive_max_requests`)."""
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    bufs: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                conn, _ = sock.accept()
                bufs[conn] = b""
                sel.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            data = conn.recv(65536)
            if not data:
                sel.unregister(conn)
                conn.close()
                del bufs[conn]
                continue
            bufs[conn] += data
            while b"\r\n\r\n" in bufs[conn]:
                _, bufs[conn] = bufs[conn].split(b"\r\n\r\n", 1)
                conn.sendall(ANSWER)


def client(port: int, requests: int, mark_w: int, ack_r: int) -> None:
    """Child process: once told to go, WARM requests, a mark to the worker's process, then
    `requests` more."""
    os.read(ack_r, 1)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(WARM + requests):
        if i == WARM:
            os.write(mark_w, b"m")
            os.read(ack_r, 1)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: probe\r\n\r\n")
        data = b""
        while not data.endswith(b"hello"):
            more = sock.recv(65536)
            if not more:
                os._exit(3)
            data += more
        if not data.startswith(b"HTTP/1.1 200"):
            os._exit(4)
    os._exit(0)


def fork(fn, *args) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
        finally:
            os._exit(1)
    return pid


async def main(impl: str, up: socket.socket, sock: socket.socket, client_pid: int, mark_r: int, ack_w: int,
               requests: int) -> dict:
    loop = asyncio.get_running_loop()
    tmp = tempfile.mkdtemp(prefix="meshway-gcsteady-")
    conf = Path(tmp) / "meshway.conf"
    conf.write_text(f"prefix = {tmp}\nhttp1_impl = {impl}\n")  # the access log on, as by default
    worker = Worker(loop, load_settings(str(conf)))
    port = sock.getsockname()[1]
    await worker.serve_sockets([(sock, ListenSpec(host="127.0.0.1", port=port), "proxy")])
    doc = {"_format_version": "3.0", "services": [
        {"name": "s", "url": f"http://127.0.0.1:{up.getsockname()[1]}", "routes": [{"name": "r", "paths": ["/"]}]}]}
    reply = await worker.apply_config(parse_declarative(doc), None)
    assert reply["op"] == "applied", reply
    os.write(ack_w, b"g")
    collections: list[int] = []
    counting = [False]
    gc.callbacks.append(lambda phase, info: counting[0] and phase == "start" and collections.append(info["generation"]))
    marked = loop.create_future()
    loop.add_reader(mark_r, lambda: marked.done() or marked.set_result(os.read(mark_r, 1)))
    await marked
    loop.remove_reader(mark_r)
    count0 = gc.get_count()[0]
    counting[0] = True
    os.write(ack_w, b"a")
    _, status = await loop.run_in_executor(None, os.waitpid, client_pid, 0)
    counting[0] = False
    growth = gc.get_count()[0] - count0
    await worker.shutdown(0)
    return {"client_status": status, "collections": collections, "gen0_growth": growth, "requests": requests}


def run(impl: str, requests: int) -> dict:
    """The origin and the client are forked before the event loop exists."""
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen(8)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    mark_r, mark_w = os.pipe()
    ack_r, ack_w = os.pipe()
    origin_pid = fork(origin, up)
    client_pid = fork(client, sock.getsockname()[1], requests, mark_w, ack_r)
    try:
        return uvloop.run(main(impl, up, sock, client_pid, mark_r, ack_w, requests))
    finally:
        os.kill(origin_pid, 9)
        os.waitpid(origin_pid, 0)


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))
