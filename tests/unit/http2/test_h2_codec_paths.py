"""An HTTP/2 client connection on the compiled codec (`http2_impl`/`http1_impl = compiled`) against
the Python one: a worker's `H2Server` and a pooled HTTP/1.1 upstream connection on recording
transports; the same client frames and upstream answers fed to both must give the upstream the
same request bytes, the client the same frames and the access log the same lines."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import h2.config
import h2.connection
import pytest

from meshway.model import parse_declarative
from meshway.proxy import Worker, _core
from meshway.proxy._upstream import UpstreamConn
from meshway.proxy.http2 import H2Server, _codec
from meshway.settings import load_settings
from tests.integration.proxy.proxy_for_test import pass_through_snapshot_for_test
from tests.unit.proxy.test_h1_relay import ANSWERS, KEY, Recorder

pytestmark = pytest.mark.skipif(not (_core.available() and _codec.available()), reason="the compiled core is not built")

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a?b=c"), (b":authority", b"h.test:8443")]
REQUESTS = [  # (header block, body or None: no body)
    (BASE, None),
    (BASE + [(b"user-agent", b"t/1"), (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x-forwarded-for", b"10.0.0.1")], None),
    ([(b":method", b"POST"), *BASE[1:], (b"content-length", b"5"), (b"content-type", b"text/plain")], b"hello"),
    ([(b":method", b"POST"), *BASE[1:]], b"chunk"),  # no content-length: chunked upstream
    ([(b":method", b"DELETE"), *BASE[1:]], b""),
    ([(b":method", b"HEAD"), *BASE[1:], (b"x_under", b"1"), (b"connection-ish", b"v")], None),
    ([*BASE[:2], (b":path", b"/%C3%A9/p"), BASE[3], (b"te", b"trailers"), (b"referer", b"/r")], None),
]


def _worker(tmp: Path, impl: str, tokens: str) -> Worker:
    loop = asyncio.new_event_loop()
    loop.time = lambda: 1000.0  # type: ignore[method-assign]  # latency headers and log fields: fixed
    conf = tmp / f"{impl}.conf"
    conf.write_text(f"prefix = {tmp / impl}\nhttp1_impl = {impl}\nhttp2_impl = {impl}\nheaders = {tokens}\n"
                    "http2_max_requests = 0\n")
    worker = Worker(loop, load_settings(str(conf)))
    reply = loop.run_until_complete(worker.apply_config(parse_declarative(pass_through_snapshot_for_test(port=9)), None))
    assert reply["op"] == "applied", reply
    return worker


def _run(worker: Worker, answer: bytes, closes: bool) -> list:
    _core.select(worker.settings.http1_impl)  # a process-wide choice (one worker per process in a node)
    server = H2Server(worker, "https", 8443, "127.0.0.1", 40000, None, None)
    assert (server.codec is None) == (worker.settings.http2_impl == "python")
    client_t = Recorder()
    server.connection_made(client_t)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server.data_received(client.data_to_send())
    seen = []
    for sid, (block, body) in enumerate(REQUESTS, start=0):
        sid = 2 * sid + 1
        conn = UpstreamConn(worker.pool, KEY)
        up = Recorder()
        conn.connection_made(up)
        worker.pool.put(conn)
        client.send_headers(sid, block, end_stream=body is None)
        if body is not None:
            client.send_data(sid, body, end_stream=True)
        server.data_received(client.data_to_send())
        conn.data_received(answer)
        if closes:
            conn.connection_lost(None)
        worker.pool.forget(conn)
        log = [re.sub(rb"\[[^]]*\]", b"[]", line) for line in worker.access.pending]
        worker.access.pending.clear()
        seen.append((b"".join(up.out), b"".join(client_t.out), log))
        client_t.out.clear()
    return seen


@pytest.mark.parametrize("tokens", ["server_tokens,latency_tokens", "off"])
def test_compiled_codec_gives_the_python_codecs_bytes(tmp_path: Path, tokens: str) -> None:
    compiled, python = _worker(tmp_path, "compiled", tokens), _worker(tmp_path, "python", tokens)
    try:
        for answer, closes in ANSWERS:
            got, want = _run(compiled, answer, closes), _run(python, answer, closes)
            assert [g[0] for g in got] == [w[0] for w in want], answer  # what the upstream got
            assert got == want, answer  # and what the client and the access log got
            assert any(b"HTTP/1.1\r\n" in g[0] for g in got)
    finally:
        _core.select("auto")
        for w in (compiled, python):
            w.loop.close()
