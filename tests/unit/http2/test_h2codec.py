"""The compiled HTTP/2 codec (`_core._h2codec`) against its Python reference: the same frames,
the same HPACK bytes, the same request heads and the same errors, on random inputs."""
from __future__ import annotations

import random

import hpack
import pytest

from meshway.proxy.http2 import _codec
from meshway.proxy.http2._h2conn import _frame_head, _header_frames
from meshway.proxy.http2._headers import Malformed, decode_request, encode_response
from meshway.proxy.http2._hpack import FastEncoder

codec = _codec.resolve("compiled")

NAMES = [b":status", b":method", b":path", b":scheme", b":authority", b":protocol", b"content-type", b"Content-Type",
         b"content-length", b"cookie", b"host", b"te", b"user-agent", b"referer", b"accept", b"X-Custom", b"x-a",
         b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection", b"via", b"server",
         b"bad name", b"", b"UPPER", b"x_under", b"date", b"grpc-status", b"a" * 140]
VALUES = [b"200", b"GET", b"POST", b"CONNECT", b"TRACE", b"G ET", b"/", b"/a?b=c", b"", b"a b", b"/x\x7f", b"https",
          b"http", b"h tp", b"example.test", b"trailers", b"gzip", b"text/plain", b"12", b"12x", b"013", b" lead",
          b"trail\t", b"nul\x00", b"cr\r", b"lf\n", b"v" * 300, b"\xff\xfe", b"0", b"application/grpc"]


def _random_fields(rnd: random.Random, n: int) -> list[tuple[bytes, bytes]]:
    return [(rnd.choice(NAMES), rnd.choice(VALUES)) for _ in range(n)]


def _request_block(rnd: random.Random) -> list[tuple[bytes, bytes]]:
    """Mostly well-formed requests, with one or two random faults."""
    good = rnd.random() < 0.5
    block = [(b":method", rnd.choice([b"GET", b"POST", b"HEAD", b"BREW"] + ([] if good else [b"CONNECT", b"TRACE", b"G T"]))),
             (b":scheme", rnd.choice([b"https", b"http", b"ftp"] + ([] if good else [b"h p"]))),
             (b":path", rnd.choice([b"/", b"/a?b"] + ([] if good else [b"", b"/\x01", b"/a b"]))),
             (b":authority", rnd.choice([b"example.test", b"h:8443"] + ([] if good else [b"ex ample"])))]
    rnd.shuffle(block)
    if rnd.random() < 0.7:
        block.sort(key=lambda f: f[0] not in (b":method", b":scheme", b":path", b":authority"))
    if not good and rnd.random() < 0.3:
        del block[rnd.randrange(len(block))]
    block += [(b"user-agent", b"h2load"), (b"cookie", b"a=1"), (b"cookie", b"b=2")] if rnd.random() < 0.5 else []
    block += [(n, v) for n, v in [(b"content-length", b"12"), (b"content-type", b"text/plain"), (b"te", b"trailers"),
                                  (b"referer", b"/r"), (b"host", b"h.test"), (b"accept", b"*/*"),
                                  (b"content-length", b"13")] if rnd.random() < 0.3]
    if not good:
        block += _random_fields(rnd, rnd.randrange(0, 3))
    if not good and rnd.random() < 0.5:
        block.insert(rnd.randrange(len(block) + 1), (rnd.choice(NAMES), rnd.choice(VALUES)))
    return block


def _outcome(fn, block):
    try:
        head = fn(block)
    except (Malformed, ValueError) as e:
        return type(e).__name__, str(e)
    return {k: getattr(head, k) for k in ("method", "scheme", "authority", "url", "headers", "content_length",
                                          "content_type", "te_trailers", "referer", "ua", "version")}


def test_request_heads_and_their_errors_match_the_python_decoder():
    rnd = random.Random(17)
    kinds = []
    for _ in range(5000):
        block = _request_block(rnd)
        want = _outcome(decode_request, block)
        assert _outcome(codec.decode_request, block) == want, block
        kinds.append(want[1] if isinstance(want, tuple) else "ok")
    assert kinds.count("ok") > 1000 and len(set(kinds)) >= 20  # valid heads and every kind of refusal were compared


def test_request_heads_from_hpack_header_tuples():
    enc, dec = hpack.Encoder(), hpack.Decoder()
    block = dec.decode(enc.encode([(b":method", b"GET"), (b":path", b"/p"), (b":scheme", b"https"),
                                   (b":authority", b"a.test"), (b"cookie", b"x=1"), (b"cookie", b"y=2")]), raw=True)
    head = codec.decode_request(block)
    assert (head.method, head.url, head.authority, head.headers) == ("GET", b"/p", "a.test", [(b"cookie", b"x=1; y=2")])


def test_header_frames_match_the_python_encoder_and_framing():
    rnd = random.Random(5)
    for _ in range(3000):
        fields = [(n, v) for n, v in _random_fields(rnd, rnd.randrange(0, 12))]
        announce, end, sid = rnd.random() < 0.3, rnd.random() < 0.5, rnd.randrange(1, 1 << 31, 2)
        max_size = rnd.choice([16384, 100, 7, 1])
        enc = FastEncoder()
        enc._announce = announce
        want = _header_frames(enc.encode(fields), sid, end, max_size)
        assert codec.header_frames(fields, sid, end, max_size, announce) == want


def test_header_frames_leave_what_is_not_a_byte_pair_to_python():
    assert codec.header_frames([(b"a", "str")], 1, True, 16384, False) is None
    assert codec.header_frames([(b"a", b"b", b"c")], 1, True, 16384, False) is None


def test_response_fields_match_encode_response():
    rnd = random.Random(11)
    compiled = 0
    for _ in range(5000):
        headers = _random_fields(rnd, rnd.randrange(0, 8))
        if rnd.random() < 0.2:
            headers = [list(f) for f in headers]
        extra = [(b"Via", b"1.1 meshway"), (b"X-Meshway-Upstream-Latency", b"3")][:rnd.randrange(3)]
        length = rnd.choice([None, b"5", b"0"])
        status = rnd.choice([200, 204, 404, 502])
        got = codec.response_fields(status, headers, extra, length)
        if got is not None:
            compiled += 1
            assert got == encode_response(status, headers, extra, length)
        else:
            assert any(n.lower()[:1] == b":" or n.lower() in (b"connection", b"keep-alive", b"proxy-connection",
                                                              b"transfer-encoding", b"upgrade", b"te", b"host",
                                                              b"content-length") for n, _ in headers)
    assert compiled > 1000


def test_new_stream_frames_match_the_python_scan():
    from meshway.proxy.http2._h2conn import FastH2Connection

    class Conn:
        highest_inbound_stream_id = 0
        max_inbound_frame_size = 16384
        streams: dict = {}

    rnd = random.Random(3)
    for _ in range(3000):
        conn = Conn()
        conn.highest_inbound_stream_id = rnd.choice([0, 1, 5])
        conn.streams = {7: None} if rnd.random() < 0.2 else {}
        data = b""
        for _ in range(rnd.randrange(1, 4)):
            payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 20)))
            kind = rnd.choice([1, 1, 1, 0, 9])
            flags = rnd.choice([0x5, 0x4, 0x1, 0x25, 0x0d, 0x4])
            sid = rnd.choice([1, 3, 7, 9, 2, 0x80000003])
            data += _frame_head(len(payload), kind, flags, sid) + payload
        if rnd.random() < 0.2:
            data = data[:rnd.randrange(len(data) + 1)]
        want = FastH2Connection._new_stream_frames(conn, data)
        assert codec.new_stream_frames(data, conn.highest_inbound_stream_id, 16384, conn.streams) == want


@pytest.mark.parametrize("end", [True, False])
def test_data_frame_head(end):
    buf = bytearray(b"x")
    codec.data_frame(buf, 70000, end, 0x7FFFFFFF)
    assert bytes(buf) == b"x" + _frame_head(70000, 0, 1 if end else 0, 0x7FFFFFFF)


def test_http2_impl_selects_the_codec():
    assert _codec.available(), "the compiled codec is not built: run scripts/install.sh (it needs gcc and the Python headers)"
    assert _codec.resolve("python") is None
    assert _codec.resolve("auto") is codec and _codec.resolve("compiled") is codec


def test_first_value_matches_the_python_scan():
    rnd = random.Random(23)
    for _ in range(3000):
        headers = _random_fields(rnd, rnd.randrange(0, 6))
        for low in (b"content-length", b"content-type", b"te"):
            assert codec.first_value(headers, low) == next((v for k, v in headers if k.lower() == low), None)
