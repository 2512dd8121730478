"""client_body_timeout on HTTP/2: a stream whose request body stops for longer than the timeout
gets 408 (then RST_STREAM NO_ERROR), while other streams on the same connection go on; a slow
body that keeps sending is not cut (idle timeout, as nginx and the HTTP/1.1 side)."""
from __future__ import annotations

import json
import socket
import threading
import time

import h2.errors
import h2.events
import pytest

from tests.integration.http2.h2_for_test import H2Worker, RawH2ForTest
from tests.integration.proxy.proxy_for_test import Origin, pass_through_snapshot_for_test

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def worker(origin, tmp_path_factory):
    w = H2Worker(pass_through_snapshot_for_test(port=origin.port), tmp_path_factory.mktemp("h2body"),
                 env={"MESHWAY_CLIENT_BODY_TIMEOUT": str(TIMEOUT)})
    yield w
    w.stop()


def _upload_head(sid_path: str, length: int) -> list:
    return [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", sid_path.encode()),
            (b"content-length", str(length).encode())]


def test_stalled_body_gets_408_while_other_streams_work(worker):
    client = RawH2ForTest(worker.plain)
    try:
        stalled = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stalled, _upload_head("/upload", 100))
        client.h2.send_data(stalled, b"x" * 10)  # 90 bytes never come
        client.send()
        started = time.monotonic()
        served = 0
        while time.monotonic() - started < 3 * TIMEOUT:
            if any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stalled for e in client.events):
                break
            sid = client.request(f"/other/{served}")  # same connection, meanwhile
            headers, body = client.response(sid)
            assert headers[":status"] == "200" and json.loads(body)["url"] == f"/other/{served}"
            served += 1
            time.sleep(0.2)
        headers, body = client.response(stalled)
        waited = time.monotonic() - started
        assert headers[":status"] == "408", (headers, body)
        assert json.loads(body) == {"message": "Request timeout"}
        assert TIMEOUT * 0.9 <= waited <= TIMEOUT * 3, waited
        assert served >= 2  # the connection kept serving while that body stalled
        client.read(timeout=1)
        resets = [e for e in client.events if isinstance(e, h2.events.StreamReset) and e.stream_id == stalled]
        assert resets and resets[0].error_code == h2.errors.ErrorCodes.NO_ERROR  # the rest of the upload: unwanted
        sid = client.request("/after")
        headers, body = client.response(sid)
        assert headers[":status"] == "200" and json.loads(body)["url"] == "/after"
    finally:
        client.close()
    deadline = time.monotonic() + 5
    while "client_body_timeout" not in worker.error_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client_body_timeout" in worker.error_log()


def test_slow_body_that_keeps_sending_is_not_cut(worker):
    client = RawH2ForTest(worker.plain)
    try:
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(sid, _upload_head("/slow-upload", 50))
        client.send()
        for i in range(5):  # 5 x 0.5 s: longer than the timeout in total, never idle that long
            time.sleep(TIMEOUT / 2)
            client.h2.send_data(sid, b"y" * 10, end_stream=i == 4)
            client.send()
            if i < 4:
                client.read(timeout=0.01)
                ended = [e for e in client.events if getattr(e, "stream_id", 0) == sid]
                assert not ended, ended  # no answer, no reset: the body is still coming
        headers, body = client.response(sid)
        assert headers[":status"] == "200", (headers, body)
        assert json.loads(body)["body_len"] == 50
    finally:
        client.close()


class EarlyOriginForTest:
    """An origin that answers (chunked, one chunk) as soon as it has the request head, then
    keeps reading the body: the response has started when the client's upload stalls."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nearly\r\n")
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def test_stalled_body_after_the_response_started_is_reset(tmp_path):
    origin = EarlyOriginForTest()
    worker = H2Worker(pass_through_snapshot_for_test(port=origin.port), tmp_path,
                      env={"MESHWAY_CLIENT_BODY_TIMEOUT": str(TIMEOUT)})
    client = RawH2ForTest(worker.plain)
    try:
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(sid, _upload_head("/early", 100))
        client.h2.send_data(sid, b"x" * 10)
        client.send()
        started = time.monotonic()
        headers, body = client.response(sid, deadline=4 * TIMEOUT)
        waited = time.monotonic() - started
        assert headers[":status"] == "200" and body == b"early"  # what went out before the stall
        resets = [e for e in client.events if isinstance(e, h2.events.StreamReset) and e.stream_id == sid]
        assert resets and resets[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR, client.events  # as nginx
        assert TIMEOUT * 0.9 <= waited <= TIMEOUT * 3, waited
        other = client.request("/still-open")  # the connection goes on (this origin's answers never end)
        headers, body = client.response(other, deadline=1.0)
        assert headers[":status"] == "200" and body == b"early"
    finally:
        client.close()
        worker.stop()
        origin.close()
