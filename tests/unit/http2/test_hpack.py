"""The fast HPACK encoder: what hpack's own decoder reads back, and the size update it leads with."""
from __future__ import annotations

import hpack

from meshway.proxy.http2._hpack import FastEncoder, encode_int


def test_blocks_decode_to_the_same_fields_with_an_empty_dynamic_table():
    enc, dec = FastEncoder(), hpack.Decoder()
    fields = [(b":status", b"200"), (b"content-type", b"application/json"), (b"x-custom", b"v" * 300),
              (b"via", b"1.1 meshway/0.1.0"), (b"grpc-status", b"0"), (b":status", b"404")]
    for _ in range(3):
        assert dec.decode(enc.encode(fields), raw=True) == fields
    assert len(dec.header_table.dynamic_entries) == 0


def test_first_block_and_a_table_size_change_start_with_a_size_update_to_zero():
    enc = FastEncoder()
    assert enc.encode([(b":status", b"200")]) == b"\x20\x88"
    assert enc.encode([(b":status", b"200")]) == b"\x88"
    enc.header_table_size = 0
    assert enc.encode([(b":status", b"200")]) == b"\x20\x88"


def test_integer_prefixes_as_rfc7541_c1():
    assert encode_int(10, 5, 0) == b"\x0a"
    assert encode_int(1337, 5, 0) == b"\x1f\x9a\x0a"
    assert encode_int(42, 8, 0) == b"\x2a"
