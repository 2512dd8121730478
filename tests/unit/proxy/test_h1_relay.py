"""The compiled response relay (`_h1parse.ResponseParser.relay`) against the Python relay
(`_relay.ResponseRelay`, what `http1_impl = python` runs): a worker's client connection and a
pooled upstream connection on recording transports, the same request and upstream answer fed to
both (whole, and cut at every few bytes), must give the client the same bytes, pool (or close)
the upstream connection alike and log the same access line. On a route with a plugin that
changes the response head (rate-limiting's five headers) the compiled path sets them and
encodes the head in C (`set_header_pairs`, `response_head`): the same bytes again."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from meshway.model import parse_declarative
from meshway.proxy import Worker, _core
from meshway.proxy._http1 import H1Server
from meshway.proxy._upstream import UpstreamConn
from meshway.settings import load_settings
from tests.integration.proxy.proxy_for_test import pass_through_snapshot_for_test

pytestmark = pytest.mark.skipif(not _core.available(), reason="the compiled core is not built")

KEY = ("127.0.0.1", 9, None)


class Recorder:
    """Enough of a transport for the proxy: keeps what is written and whether it was closed."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool: return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close


# rate-limiting's counts (shared by both workers of this process) and its reset time vary
_COUNTED = re.compile(rb"((?:X-)?RateLimit-(?:Remaining(?:-Minute)?|Reset): )\d+", re.IGNORECASE)
PLUGINS = [{"name": "rate-limiting", "config": {"minute": 1_000_000, "policy": "local"}}]


def _worker(tmp: Path, impl: str, tokens: str, plugins: list) -> Worker:
    loop = asyncio.new_event_loop()
    loop.time = lambda: 1000.0  # type: ignore[method-assign]  # latency headers and log fields: fixed
    conf = tmp / f"{impl}.conf"
    conf.write_text(f"prefix = {tmp / impl}\nhttp1_impl = {impl}\nheaders = {tokens}\n")
    worker = Worker(loop, load_settings(str(conf)))
    snapshot = {**pass_through_snapshot_for_test(port=9), "plugins": plugins}
    reply = loop.run_until_complete(worker.apply_config(parse_declarative(snapshot), None))
    assert reply["op"] == "applied", reply
    return worker


def _exchange(worker: Worker, request: bytes, answer: bytes, cut: int, upstream_closes: bool) -> tuple:
    server = H1Server(worker, "http", 8000)
    client = Recorder()
    server.connection_made(client)
    conn = UpstreamConn(worker.pool, KEY)
    up = Recorder()
    conn.connection_made(up)
    worker.pool.put(conn)
    server.data_received(request)
    assert up.out, "the request went upstream"
    for i in range(0, len(answer), cut or len(answer)):
        conn.data_received(answer[i:i + cut] if cut else answer)
    if upstream_closes:
        conn.connection_lost(None)
    pooled = conn in worker.pool.idle.get(KEY, [])
    worker.pool.forget(conn)
    log = [re.sub(rb"\[[^]]*\]", b"[]", line) for line in worker.access.pending]
    worker.access.pending.clear()
    return _COUNTED.sub(rb"\1N", b"".join(client.out)), client.closed, pooled, up.closed, log


ANSWERS = [
    (b"HTTP/1.1 200 OK\r\nServer: o\r\nContent-Length: 5\r\n\r\nhello", False),
    (b"HTTP/1.1 200 OK\r\nratelimit-limit: spoofed\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a\r\n" + b"x" * 26 + b"\r\n0\r\n\r\n", False),
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nnop", False),
    (b"HTTP/1.1 204 No Content\r\nProxy-Thing: 1\r\nTE: trailers\r\n\r\n", False),
    (b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n", False),
    (b"HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n", False),  # no reason phrase, none known either
    (b"HTTP/1.1 201 \r\nContent-Length: 0\r\n\r\n", False),  # no reason phrase: the known one
    (b"HTTP/1.1 200 Fine Thanks\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nclose-delimited body", True),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + bytes(range(256)) * 273 + b"x" * 112, False),
]
REQUESTS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: h.test\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: h.test\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: h.test\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: h.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n",
]


@pytest.mark.parametrize("plugins", [[], PLUGINS], ids=["no-plugins", "rate-limiting"])
@pytest.mark.parametrize("tokens", ["server_tokens,latency_tokens", "off"])
def test_compiled_relay_gives_the_python_relays_bytes(tmp_path: Path, tokens: str, plugins: list) -> None:
    compiled, python = _worker(tmp_path, "compiled", tokens, plugins), _worker(tmp_path, "python", tokens, plugins)
    try:
        for request in REQUESTS:
            for answer, closes in ANSWERS:
                if request.startswith(b"HEAD") and closes:
                    continue  # a HEAD answer has no body to delimit
                for cut in (0, 1, 7, 64):
                    _core.select("compiled")
                    got = _exchange(compiled, request, answer, cut, closes)
                    _core.select("python")
                    want = _exchange(python, request, answer, cut, closes)
                    assert got == want, (request, answer, cut)
                    assert got[0].startswith(b"HTTP/1.1 ")
                    assert (b"RateLimit-Limit: 1000000\r\n" in got[0]) == bool(plugins)
                    assert b"spoofed" not in got[0] or not plugins
    finally:
        _core.select("auto")
        for worker in (compiled, python):
            worker.loop.close()


def test_plugins_that_leave_the_response_alone_are_relayed_in_c(tmp_path: Path, monkeypatch) -> None:
    """rate-limiting sets its headers before the response and file-log reads the response in its
    log phase: neither changes the response as it passes, so the compiled relay takes it (the
    Python relay's `on_up_headers` is never called) and gives the client and the log phase what
    the Python relay gives: the same bytes, and the same logged status and headers."""
    from meshway.proxy._relay import ResponseRelay

    python_relay = ResponseRelay.on_up_headers
    calls = []
    monkeypatch.setattr(ResponseRelay, "on_up_headers", lambda self, *a, **kw: (calls.append(1), python_relay(self, *a, **kw)))
    logs = {}
    workers = {}
    for impl in ("compiled", "python"):
        logs[impl] = tmp_path / f"{impl}.log"
        plugins = [*PLUGINS, {"name": "file-log", "config": {"path": str(logs[impl])}}]
        workers[impl] = _worker(tmp_path, impl, "off", plugins)
    try:
        got = {}
        for impl, worker in workers.items():
            _core.select(impl)
            calls.clear()
            got[impl] = [_exchange(worker, REQUESTS[0], answer, 0, False)[:4] for answer, _ in ANSWERS[:3]]
            assert bool(calls) == (impl == "python"), impl
        assert got["compiled"] == got["python"]
        assert b"spoofed" not in b"".join(out for out, *_ in got["compiled"])
        # what the log phase saw of each exchange (the routes' ids and the times differ by worker)
        seen = {impl: [{k: entry[k] for k in ("request", "upstream_uri", "response", "latencies", "source")}
                       for entry in map(json.loads, logs[impl].read_bytes().splitlines())]
                for impl in workers}
        for entry in (*seen["compiled"], *seen["python"]):
            headers = entry["response"]["headers"]
            headers["ratelimit-reset"] = "N"  # the second may turn between the two
            # the global plugin's counters are one for both workers of this process (Kong keys them by
            # the plugin's scope, not the request's route): the second worker's remaining counts go on
            headers["ratelimit-remaining"] = headers["x-ratelimit-remaining-minute"] = "N"
        assert seen["compiled"] == seen["python"]
        assert [e["response"]["status"] for e in seen["compiled"]] == [200, 200, 200]
        assert all(e["response"]["headers"]["ratelimit-limit"] == "1000000" for e in seen["compiled"])
    finally:
        _core.select("auto")
        for worker in workers.values():
            worker.loop.close()
