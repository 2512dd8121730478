"""`FastH2Connection` against `h2`'s own connection: same events, same bytes, same errors."""
from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import random
from typing import Any

import pytest

from meshway.proxy.http2 import _codec
from meshway.proxy.http2._h2conn import FastH2Connection
from meshway.proxy.http2._hpack import FastEncoder

REQ = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"example.test"),
       (b"user-agent", b"test/1")]


def _server_pair_for_test(max_streams: int = 100, codec: Any = None) -> list[h2.connection.H2Connection]:
    conns = []
    for cls in (h2.connection.H2Connection, FastH2Connection):
        config = h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False,
                                           normalize_inbound_headers=False, validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        conn = cls(config)
        conn.encoder = FastEncoder()
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
        conn.initiate_connection()
        conn.data_to_send()
        conns.append(conn)
    conns[1].codec = codec
    return conns


def _client_for_test() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    return client


def _described(events: list) -> list:
    out = []
    for ev in events:
        # block_size: FastH2Connection's own note on a request (the log serializer's request.size)
        fields = {k: v for k, v in vars(ev).items() if k not in ("stream_ended", "block_size")}
        fields["ended"] = getattr(ev, "stream_ended", None) is not None
        if "headers" in fields:
            fields["headers"] = [tuple(h) for h in fields["headers"]]
        out.append((type(ev).__name__, sorted((k, repr(v)) for k, v in fields.items())))
    return out


def _both(conns: list, data: bytes) -> list:
    results = []
    for conn in conns:
        try:
            results.append(("events", _described(conn.receive_data(data)), conn.data_to_send()))
        except h2.exceptions.ProtocolError as e:
            results.append(("error", type(e).__name__, conn.data_to_send()))
    assert results[0] == results[1]
    return results[0]


def test_requests_responses_and_bodies_match_h2():
    conns = _server_pair_for_test()
    client = _client_for_test()
    _both(conns, client.data_to_send())
    for sid in (1, 3, 5):  # three GETs in one read: the fast path
        client.send_headers(sid, REQ, end_stream=True)
    client.send_headers(7, REQ + [(b"content-length", b"4")])  # a POST with a body: h2's path
    client.send_data(7, b"body", end_stream=True)
    kind, events, _ = _both(conns, client.data_to_send())
    assert kind == "events" and [e[0] for e in events].count("RequestReceived") == 4
    for conn in conns:
        conn.send_headers(1, [(b":status", b"200"), (b"content-length", b"5")])
        conn.send_data(1, b"hello", end_stream=True)
        conn.send_headers(3, [(b":status", b"204")], end_stream=True)
        conn.send_headers(5, [(b":status", b"200"), (b"grpc", b"x")])
        conn.send_data(5, b"abc")
        conn.send_headers(5, [(b"grpc-status", b"0")], end_stream=True)
        conn.send_headers(7, [(b":status", b"100")])
        conn.send_headers(7, [(b":status", b"200")])
        conn.end_stream(7)
    out = [conn.data_to_send() for conn in conns]
    assert out[0] == out[1]
    assert [conn.open_inbound_streams for conn in conns] == [0, 0]


def test_limits_raise_as_h2_does():
    conns = _server_pair_for_test(max_streams=2)
    client = _client_for_test()
    _both(conns, client.data_to_send())
    for sid in (1, 3, 5):
        client.send_headers(sid, REQ, end_stream=True)
    kind, name, goaway = _both(conns, client.data_to_send())
    assert (kind, name) == ("error", "TooManyStreamsError") and goaway
    conns = _server_pair_for_test()
    _both(conns, _client_for_test().data_to_send())
    for conn in conns:
        with pytest.raises(h2.exceptions.NoSuchStreamError):
            conn.send_data(1, b"x")  # no such stream yet: h2's own path and error
    assert conns[0].data_to_send() == conns[1].data_to_send()


def test_old_stream_ids_and_trailers_take_h2s_path():
    conns = _server_pair_for_test()
    client = _client_for_test()
    _both(conns, client.data_to_send())
    client.send_headers(3, REQ)
    client.send_headers(3, [(b"x-trailer", b"1")], end_stream=True)  # trailers: not a new stream
    _both(conns, client.data_to_send())
    # a HEADERS frame for stream 1 after 3 (too low): a connection error in both
    kind, name, _ = _both(conns, b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x82")
    assert kind == "error"


def test_header_blocks_that_change_the_table_are_decoded_each_time():
    conns = _server_pair_for_test()
    client = _client_for_test()
    _both(conns, client.data_to_send())
    sid = 1
    for i in range(40):  # new literal-indexed values evict older ones: cached blocks must miss
        client.send_headers(sid, REQ + [(b"x-n", b"%d" % (i % 7) * 300)], end_stream=True)
        kind, events, _ = _both(conns, client.data_to_send())
        assert kind == "events"
        sid += 2
        for conn in conns:
            conn.send_headers(sid - 2, [(b":status", b"200")], end_stream=True)
            conn.data_to_send()


def test_cached_encodings_and_validations_give_the_same_answers():
    from hpack import Decoder

    from meshway.proxy.http2._headers import Malformed, decode_request, encode_response

    block = [(b":status", b"200"), (b"server", b"x"), (b"x-long", b"v" * 300), (b"content-length", b"5")]
    first, again = FastEncoder().encode(block), FastEncoder().encode(block)
    assert first == again and Decoder().decode(first, raw=True) == block
    req = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"x-a", b"1")]
    assert decode_request(req).headers == decode_request(req).headers == [(b"x-a", b"1")]
    for bad in ([*req, (b"x-a", b"1 ")], [*req, (b"X-A", b"1")], [*req, (b"connection", b"x")]):
        with pytest.raises(Malformed):
            decode_request(bad)
    upstream = [(b"Server", b"o"), (b"Connection", b"x-drop"), (b"X-Drop", b"1"), (b"X-Keep", b"2")]
    assert encode_response(200, upstream) == [(b":status", b"200"), (b"server", b"o"), (b"x-keep", b"2")]
    assert encode_response(200, upstream[:1] + upstream[2:]) == [(b":status", b"200"), (b"server", b"o"),
                                                                 (b"x-drop", b"1"), (b"x-keep", b"2")]


def _state(conn: h2.connection.H2Connection) -> tuple:
    """What h2 keeps per connection and stream (everything its later decisions read)."""
    streams = {sid: (s.state_machine.state, s.state_machine.client, s.state_machine.headers_sent,
                     s.state_machine.trailers_sent, s.state_machine.headers_received,
                     s.state_machine.trailers_received, s.state_machine.stream_closed_by,
                     s.outbound_flow_control_window, s.inbound_flow_control_window, s._expected_content_length,
                     s._actual_content_length, s.request_method, s.max_outbound_frame_size)
               for sid, s in conn.streams.items()}
    return (conn.state_machine.state, conn.highest_inbound_stream_id, dict(conn._closed_streams), streams,
            conn.outbound_flow_control_window, conn.inbound_flow_control_window)


@pytest.mark.parametrize("impl", ["python", "compiled"])
def test_random_request_lifecycles_leave_h2s_state(impl):
    """Random client traffic (GETs several to a read, uploads, resets, trailers, window updates,
    bad content-lengths) and server answers: the same events, bytes, errors and state as h2."""
    rnd = random.Random(9)
    for _ in range(150):
        conns = _server_pair_for_test(max_streams=rnd.choice([3, 100]), codec=_codec.resolve(impl))
        client = _client_for_test()
        _both(conns, client.data_to_send())
        sid, open_ = 1, []
        for _ in range(12):
            act = rnd.random()
            try:
                if act < 0.4:
                    for _ in range(rnd.randrange(1, 4)):
                        extra = [(b"content-length", rnd.choice([b"0", b"x1", b"3"]))] if rnd.random() < 0.2 else []
                        client.send_headers(sid, REQ + extra, end_stream=rnd.random() < 0.8)
                        open_.append(sid)
                        sid += 2
                elif act < 0.5 and open_:
                    client.send_data(rnd.choice(open_), b"abc", end_stream=True)
                elif act < 0.6 and open_:
                    client.reset_stream(rnd.choice(open_))
                elif act < 0.65 and open_:
                    client.send_headers(rnd.choice(open_), [(b"x-t", b"1")], end_stream=True)
                elif act < 0.7:
                    client.increment_flow_control_window(100)
            except h2.exceptions.ProtocolError:
                continue  # the client's own state refuses it: nothing sent
            result = _both(conns, client.data_to_send())
            if result[0] == "error":
                break
            for s in list(open_):
                if rnd.random() < 0.5:
                    end_head, data, end_data, end_after = (rnd.random() < 0.3, rnd.random() < 0.7, rnd.random() < 0.5,
                                                           rnd.random() < 0.3)
                    outcomes = []
                    for conn in conns:
                        try:
                            conn.send_headers(s, [(b":status", b"200"), (b"server", b"t")], end_stream=end_head)
                            if data:
                                conn.send_data(s, b"hello", end_stream=end_data)
                            if end_after:
                                conn.end_stream(s)
                            outcomes.append("ok")
                        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as e:
                            outcomes.append(type(e).__name__)
                    assert outcomes[0] == outcomes[1]
            assert _state(conns[0]) == _state(conns[1])
            out = [conn.data_to_send() for conn in conns]
            assert out[0] == out[1]
            try:
                client.receive_data(out[0])
            except h2.exceptions.ProtocolError:
                break
