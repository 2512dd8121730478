"""`h2`'s connection with its per-request hot paths made cheap; same state, same errors.

Rules:
- `h2` stays the protocol authority: every frame still goes through its connection and stream
  state machines, flow-control windows and limits; only the costs around them go.
- Outbound HEADERS (an existing stream, no priority, not 1xx), DATA (no padding) and
  END_STREAM are framed here (9-byte header + payload) instead of through hyperframe objects,
  after the same state transitions and window accounting `h2` does; anything else (a new
  stream, a limit `h2` would refuse with an exception) takes `h2`'s own path, which raises.
- Inbound frames skip `h2`'s eager `repr(frame)` trace (it formatted every frame). A read that
  is only whole HEADERS frames each opening a new client stream in one frame (END_HEADERS, no
  padding or priority; what a client sends for GETs) is parsed here, without hyperframe objects,
  and given to h2's stream state machine exactly as `_receive_headers_frame` does; any other
  read (or leftover bytes, a pending preamble or CONTINUATION) goes to h2's frame buffer whole.
- With `codec` set (`_codec.resolve`: the compiled `_core._h2codec`), the new-stream scan, the
  HEADERS block (HPACK + framing) and DATA frame heads are made in C, byte for byte the Python
  functions here and in `_hpack` (tests/unit/http2/test_h2codec.py); None: the Python ones.
- Flood limits (Envoy's `http2_protocol_options`, nginx's flood detection), counted per frame on
  h2's path only (a read of new-stream HEADERS never reaches it): more than `max_control_frames`
  PING, SETTINGS and PRIORITY frames within a second; more WINDOW_UPDATEs than that plus
  `window_updates_per_data_frame` per DATA frame sent; more than `max_empty_frames` DATA frames in
  a row with neither payload nor END_STREAM -> `FloodError` (ENHANCE_YOUR_CALM), which h2 turns
  into a GOAWAY like any protocol error. The clock is read only when a count reaches its limit.
- A decoded block with more than `max_fields` regular fields raises `FloodError` too (checked on
  a cache miss only: a cached block passed the check).
- Header blocks are decoded once per (block, decoder state): a block that left the HPACK
  dynamic table unchanged decodes to the same fields next time under the same table, so
  repeated requests (`h2load`, browsers, gRPC clients: all-indexed blocks) cost a dict lookup.
  The table state is the identity of its newest entry, its length, its size limits and the
  header-list limit; any table change or limit change misses the cache.
"""
from __future__ import annotations

import collections
import struct
from typing import Any

import h2.connection
import h2.settings
from h2.connection import AllowedStreamIDs, ConnectionInputs, _decode_headers
from h2.errors import ErrorCodes
from h2.exceptions import (
    DenialOfServiceError, ProtocolError, StreamClosedError, StreamIDTooLowError, TooManyStreamsError,
)
from h2.events import RequestReceived, StreamEnded
from h2.stream import STREAM_OPEN, H2Stream, H2StreamStateMachine, StreamClosedBy, StreamInputs, StreamState
from h2.windows import LARGEST_FLOW_CONTROL_WINDOW as _LARGEST_WINDOW, WindowManager
from hpack import Decoder
from hyperframe.frame import DataFrame, PingFrame, PriorityFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from ._hpack import FastEncoder

__all__ = ["FastH2Connection", "FloodError"]


class FloodError(DenialOfServiceError):
    """A client went over one of the flood limits; `limit` names its setting (GOAWAY ENHANCE_YOUR_CALM)."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit}: {detail}")
        self.limit = limit


_CONTROL, _WINDOW, _DATA = 1, 2, 3
_GUARDED = {PingFrame: _CONTROL, SettingsFrame: _CONTROL, PriorityFrame: _CONTROL, WindowUpdateFrame: _WINDOW,
            DataFrame: _DATA}

_CACHE_MAX = 64  # blocks per connection (the cache is cleared when full)
_CACHED_BLOCK_MAX = 1024  # bytes: a peer's big blocks are decoded each time, not kept
_SEND_HEADERS = ConnectionInputs.SEND_HEADERS
_RECV_HEADERS = ConnectionInputs.RECV_HEADERS
_SEND_DATA = ConnectionInputs.SEND_DATA
_S_SEND_HEADERS = StreamInputs.SEND_HEADERS
_S_SEND_DATA = StreamInputs.SEND_DATA
_S_SEND_END = StreamInputs.SEND_END_STREAM
_SERVER_OPEN = h2.connection.ConnectionState.SERVER_OPEN  # RECV/SEND_HEADERS and SEND_DATA keep it, no event
_OPEN, _HALF_REMOTE, _CLOSED = StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE, StreamState.CLOSED
_BY_SEND_END = StreamClosedBy.SEND_END_STREAM
_MAX_STREAMS_CODE = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
_WINDOW_CODE = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE
_NO_MAX_STREAMS = 2**32 + 1  # h2's max_concurrent_streams when the setting is absent
_odict_set = collections.OrderedDict.__setitem__
_new = object.__new__


class CachingDecoder(Decoder):
    """`hpack.Decoder` remembering blocks that did not change its dynamic table."""

    def __init__(self, max_header_list_size: int, max_fields: int = 1 << 30) -> None:
        super().__init__(max_header_list_size)
        # block -> [table state, fields, what a new stream finds in them (`_request_meta`) or None]
        self._seen: dict[bytes, list] = {}
        self.max_fields = max_fields  # regular fields, pseudo-headers aside (max_request_headers)

    def _state(self) -> tuple:
        table = self.header_table
        entries = table.dynamic_entries
        return (entries[0] if entries else None, len(entries), table.maxsize, self.max_allowed_table_size,
                self.max_header_list_size)

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if not raw:
            return super().decode(data, raw)
        before = self._state()
        hit = self._seen.get(data)
        if hit is not None and _same(hit[0], before):
            return list(hit[1])
        fields = super().decode(data, raw=True)
        if len(fields) > self.max_fields + 4 and sum(1 for n, _ in fields if n[:1] != b":") > self.max_fields:
            raise FloodError("max_request_headers", f"more than {self.max_fields} header fields in a block")
        if len(data) <= _CACHED_BLOCK_MAX and _same(self._state(), before):
            if len(self._seen) >= _CACHE_MAX:
                self._seen.clear()
            self._seen[bytes(data)] = [before, fields, None]
            return list(fields)
        return fields


class _Probe:
    """Stands for a new server-side stream in `_request_meta` (no request method yet)."""

    request_method = None
    _expected_content_length = None


_BAD_LENGTH = object()  # a content-length h2 refuses: its check runs on the stream, and raises


def _request_meta(headers: list) -> tuple[bool, Any]:
    """What a new stream's `_receive_new_stream` needs from its request fields, as h2 finds it:
    (`_informational`, the `_expected_content_length` h2's `_initialize_content_length` sets,
    or `_BAD_LENGTH` where it raises)."""
    probe = _Probe()
    try:
        H2Stream._initialize_content_length(probe, headers)
    except ProtocolError:
        return _informational(headers), _BAD_LENGTH
    return _informational(headers), probe._expected_content_length


def _same(a: tuple, b: tuple) -> bool:
    return a[0] is b[0] and a[1:] == b[1:]


_HEAD = struct.Struct(">HBBBL")


def _frame_head(length: int, kind: int, flags: int, sid: int) -> bytes:
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, sid)


class FastH2Connection(h2.connection.H2Connection):
    """`H2Connection` with cheaper HEADERS/DATA framing and header decoding (see the rules)."""

    def __init__(self, config: Any, clock: Any = None, max_control_frames: int = 1000, max_empty_frames: int = 1,
                 window_updates_per_data_frame: int = 10, max_fields: int = 1 << 30) -> None:
        super().__init__(config)
        self.decoder = CachingDecoder(self.decoder.max_header_list_size, max_fields)
        self._peer_ids = AllowedStreamIDs(not config.client_side)  # the ids the peer opens (an Enum call each time in h2)
        self.clock = clock
        self.max_control_frames = max_control_frames
        self.max_empty_frames = max_empty_frames
        self.window_updates_per_data_frame = window_updates_per_data_frame
        self.control_frames = 0  # since control_since
        self.control_since = clock() if clock is not None else 0.0
        self.window_updates = 0
        self.empty_frames = 0  # in a row
        self.data_frames_sent = 0
        self.codec: Any = None  # `_core._h2codec` on the compiled path (`_codec.resolve`), None: Python
        # A server whose inbound blocks h2 neither normalises, validates nor decodes (the proxy's
        # configuration, read once: h2 reads these option descriptors per block).
        self._inbound_odd = 0 if config.client_side else 1  # the parity of the ids the peer opens
        self._plain_inbound = not (config.client_side or config.normalize_inbound_headers
                                   or config.validate_inbound_headers or config.header_encoding)

    def send_headers(self, stream_id: int, headers: Any, end_stream: bool = False,
                     priority_weight: Any = None, priority_depends_on: Any = None,
                     priority_exclusive: Any = None) -> None:
        stream = self.streams.get(stream_id)
        if (stream is None or priority_weight is not None or priority_depends_on is not None
                or priority_exclusive is not None or not isinstance(headers, list)
                or (not stream.state_machine.client and _informational(headers))):
            return super().send_headers(stream_id, headers, end_stream, priority_weight, priority_depends_on,
                                        priority_exclusive)
        if self.state_machine.state is not _SERVER_OPEN:
            self.state_machine.process_input(_SEND_HEADERS)
        sm = stream.state_machine
        if sm.client is False and not sm.headers_sent and (sm.state is _HALF_REMOTE or sm.state is _OPEN):
            sm.headers_sent = True  # h2's response_sent, the state unchanged (its event is not used)
        else:
            sm.process_input(_S_SEND_HEADERS)
        encoder, codec, frames = self.encoder, self.codec, None
        if codec is not None and encoder.__class__ is FastEncoder:  # the same bytes, encoded and framed in C
            frames = codec.header_frames(headers, stream_id, end_stream, self.max_outbound_frame_size,
                                         encoder._announce)
            if frames is not None:
                encoder._announce = False
        block = encoder.encode(headers) if frames is None else None
        if end_stream:
            _send_end(sm)
        if sm.trailers_sent and not end_stream:
            raise ProtocolError("Trailers must have END_STREAM set.")
        if sm.client and stream._authority is None:
            stream._authority = next((v for k, v in headers if k == b":authority"), None)
        method = None  # h2's next(genexpr), as a plain loop
        for k, v in headers:
            if k == b":method":
                method = v
                break
        stream.request_method = method
        if frames is None:
            frames = _header_frames(block, stream_id, end_stream, self.max_outbound_frame_size)
        self._data_to_send += frames

    def sendable(self, stream_id: int) -> int:
        """How many bytes one DATA frame on the stream may carry now (windows, frame size)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return min(self.local_flow_control_window(stream_id), self.max_outbound_frame_size)  # h2 raises
        return min(self.outbound_flow_control_window, stream.outbound_flow_control_window,
                   self.max_outbound_frame_size)

    def send_data(self, stream_id: int, data: Any, end_stream: bool = False, pad_length: Any = None) -> None:
        stream = self.streams.get(stream_id)
        size = len(data)
        if (stream is None or pad_length is not None or size > self.max_outbound_frame_size
                or size > min(self.outbound_flow_control_window, stream.outbound_flow_control_window)):
            return super().send_data(stream_id, data, end_stream, pad_length)  # raises what h2 raises
        if self.state_machine.state is not _SERVER_OPEN:
            self.state_machine.process_input(_SEND_DATA)
        sm = stream.state_machine
        if sm.state is not _HALF_REMOTE and sm.state is not _OPEN:  # those two keep their state, no event
            sm.process_input(_S_SEND_DATA)
        if end_stream:
            _send_end(sm)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        self.data_frames_sent += 1
        buf = self._data_to_send
        if self.codec is not None:
            self.codec.data_frame(buf, size, end_stream, stream_id)
        else:
            buf += _frame_head(size, 0x0, 0x1 if end_stream else 0x0, stream_id)
        buf += data

    def send_last(self, stream_id: int, data: bytes) -> bool:
        """`send_data(stream_id, data, end_stream=True)` when the windows and the frame size take
        all of `data` (`sendable`); False, with nothing sent, when they do not."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return False
        size = len(data)
        if (size > self.max_outbound_frame_size or size > self.outbound_flow_control_window
                or size > stream.outbound_flow_control_window):
            return False
        if self.state_machine.state is not _SERVER_OPEN:
            self.state_machine.process_input(_SEND_DATA)
        sm = stream.state_machine
        if sm.state is _HALF_REMOTE:  # `_send_end` from the state a request's stream is in
            sm.state = _CLOSED
            sm.stream_closed_by = _BY_SEND_END
        else:
            if sm.state is not _OPEN:  # (see send_data)
                sm.process_input(_S_SEND_DATA)
            _send_end(sm)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        self.data_frames_sent += 1
        buf = self._data_to_send
        if self.codec is not None:
            self.codec.data_frame(buf, size, True, stream_id)
        else:
            buf += _frame_head(size, 0x0, 0x1, stream_id)
        buf += data
        return True

    def end_stream(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return super().end_stream(stream_id)
        if self.state_machine.state is not _SERVER_OPEN:
            self.state_machine.process_input(_SEND_DATA)
        _send_end(stream.state_machine)
        self._data_to_send += _frame_head(0, 0x0, 0x1, stream_id)

    def receive_data(self, data: bytes) -> list:
        buf = self.incoming_buffer
        frames = None
        if not (buf._preamble_len or buf._headers_buffer or buf._data):
            codec = self.codec
            if codec is not None and data.__class__ is bytes:
                frames = codec.new_stream_frames(data, self.highest_inbound_stream_id, self.max_inbound_frame_size,
                                                 self.streams)
            else:
                frames = self._new_stream_frames(data)
        if frames is None:
            return super().receive_data(data)
        events: list = []
        try:
            for sid, end_stream, start, end in frames:
                events += self._receive_new_stream(sid, end_stream, data[start:end])
        except ProtocolError as e:
            self._terminate_connection(e.error_code)
            raise
        return events

    def _receive_headers_frame(self, frame: Any) -> tuple[list, list]:
        """h2's, noting the header block's size (CONTINUATIONs included, padding and priority not:
        nginx's $request_length of an HTTP/2 request before its body) on the request's event."""
        frames, events = super()._receive_headers_frame(frame)
        for event in events:
            if event.__class__ is RequestReceived:
                event.block_size = len(frame.data)
        return frames, events

    def _new_stream_frames(self, data: bytes) -> list | None:
        """(stream id, END_STREAM, payload start, payload end) of each frame when `data` is whole
        HEADERS frames, each opening a new client stream in one frame (END_HEADERS, no padding or
        priority): what `_receive_new_stream` handles as h2 does; None for anything else."""
        size, last = len(data), self.highest_inbound_stream_id
        limit, streams = self.max_inbound_frame_size, self.streams
        out = []
        at = 0
        while at < size:
            if size - at < 9:
                return None
            length = int.from_bytes(data[at:at + 3], "big")
            flags = data[at + 4]
            sid = int.from_bytes(data[at + 5:at + 9], "big")
            if (data[at + 3] != 0x1 or flags & 0xFA or not flags & 0x4 or length > limit
                    or size - at - 9 < length or not sid & 1 or sid <= last or sid in streams):
                return None  # (sid > last also rules out the reserved bit's being set)
            out.append((sid, bool(flags & 0x1), at + 9, at + 9 + length))
            last = sid
            at += 9 + length
        return out or None

    def _receive_new_stream(self, sid: int, end_stream: bool, block: bytes) -> list:
        # h2's `_receive_headers_frame` for a frame `_new_stream_frames` accepted, with the stream
        # state machine's transitions for a request (IDLE -> OPEN [-> HALF_CLOSED_REMOTE]) made
        # here: the same state, attributes and events as h2's process_input calls leave. The
        # settings are read from h2's `Settings` store as its properties read them.
        local = self.local_settings._settings
        entry = local.get(_MAX_STREAMS_CODE)  # (`Settings.get`: absent or None -> h2's default)
        max_open = entry[0] if entry is not None and entry[0] is not None else _NO_MAX_STREAMS
        value = self._open_inbound()
        if value + 1 > max_open:
            raise TooManyStreamsError(f"Max inbound streams is {max_open}, {value} open")
        decoder = self.decoder
        hit = decoder._seen.get(block)  # `CachingDecoder.decode`'s hit, `_state` and `_same` inlined
        if hit is not None:
            table = decoder.header_table
            entries = table.dynamic_entries
            state = hit[0]
            if not (state[0] is (entries[0] if entries else None) and state[1] == len(entries)
                    and state[2] == table.maxsize and state[3] == decoder.max_allowed_table_size
                    and state[4] == decoder.max_header_list_size):
                hit = None
        if hit is not None:
            headers = list(hit[1])
            meta = hit[2]
            if meta is None:  # what h2 finds in these fields, found once per cached block
                meta = hit[2] = _request_meta(headers)
        else:
            headers = _decode_headers(decoder, block)
            meta = _request_meta(headers)
        if self.state_machine.state is not _SERVER_OPEN:
            self.state_machine.process_input(_RECV_HEADERS)  # no event in any state it can be in here
        config = self.config
        if meta[0] or not self._plain_inbound:
            stream = self._get_or_create_stream(sid, self._peer_ids)
            events = stream.receive_headers(headers, end_stream, config.header_encoding)[1]
            for event in events:
                if event.__class__ is RequestReceived:
                    event.block_size = len(block)
            return events
        window = local[_WINDOW_CODE][0]  # (`Settings.__getitem__`: KeyError when absent or None)
        out_window = self.remote_settings._settings[_WINDOW_CODE][0]
        if window is None or out_window is None or window > _LARGEST_WINDOW:
            stream = H2Stream(sid, config, self.local_settings.initial_window_size,
                              self.remote_settings.initial_window_size)  # raises as h2 does
        # `H2Stream(sid, config, window, out_window)` with its state machine and window manager,
        # their attributes stored in their __init__'s order without three Python calls
        sm = _new(H2StreamStateMachine)
        sm.state = _HALF_REMOTE if end_stream else _OPEN  # request_received [, stream_half_closed]
        sm.stream_id = sid
        sm.client = False
        sm.headers_sent = sm.trailers_sent = None
        sm.headers_received = True
        sm.trailers_received = sm.stream_closed_by = None
        manager = _new(WindowManager)
        manager.max_window_size = manager.current_window_size = window
        manager._bytes_processed = 0
        stream = _new(H2Stream)
        stream.state_machine = sm
        stream.stream_id = sid
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        stream.request_method = None
        stream.outbound_flow_control_window = out_window
        stream._inbound_window_manager = manager
        stream._expected_content_length = None
        stream._actual_content_length = 0
        stream._authority = None
        stream.config = config
        self.streams[sid] = stream
        self.highest_inbound_stream_id = sid
        event = _new(RequestReceived)  # the dataclass's fields, stored as its __init__ does
        event.stream_id = sid
        event.headers = headers  # (a list of its own: h2's list(headers) copy is not needed)
        event.stream_ended = None
        event.priority_updated = None
        events = [event]
        if end_stream:
            ended = _new(StreamEnded)
            ended.stream_id = sid
            event.stream_ended = ended
            events.append(ended)
        if meta[1] is _BAD_LENGTH:
            stream._initialize_content_length(headers)  # raises h2's ProtocolError
        stream._expected_content_length = meta[1]  # (what h2's _initialize_content_length sets)
        event.block_size = len(block)  # the log serializer's request.size (nginx's $request_length)
        return events

    def _open_inbound(self) -> int:
        """h2's `open_inbound_streams` (`_open_streams(1)`: closed streams are moved out as it counts)."""
        count, dead, streams, odd = 0, None, self.streams, self._inbound_odd
        for sid, stream in streams.items():
            state = stream.state_machine.state
            if STREAM_OPEN[state] and (sid & 1) == odd:
                count += 1
            elif state is _CLOSED:
                dead = [sid] if dead is None else dead + [sid]
        if dead is not None:
            closed = self._closed_streams
            limit = closed._size_limit
            for sid in dead:  # SizeLimitDict's __setitem__, its size check inlined
                _odict_set(closed, sid, streams.pop(sid).state_machine.stream_closed_by)  # (its closed_by)
                if limit is not None:
                    while len(closed) > limit:
                        closed.popitem(last=False)
        return count

    def _guard(self, kind: int, frame: Any) -> None:
        """The flood limits (see the rules); raises `FloodError`."""
        if kind == _DATA:
            if frame.data or "END_STREAM" in frame.flags:
                self.empty_frames = 0
                return
            self.empty_frames += 1
            if self.empty_frames > self.max_empty_frames:
                raise FloodError("http2_max_empty_frames", f"more than {self.max_empty_frames} empty DATA frames in a row")
        elif kind == _CONTROL:
            self.control_frames += 1
            if self.control_frames > self.max_control_frames and self.clock is not None:
                now = self.clock()
                if now - self.control_since < 1.0:
                    raise FloodError("http2_max_control_frames",
                                     f"more than {self.max_control_frames} PING, SETTINGS and PRIORITY frames in a second")
                self.control_since = now
                self.control_frames = 1
        else:
            self.window_updates += 1
            if self.window_updates > self.max_control_frames + self.window_updates_per_data_frame * self.data_frames_sent:
                raise FloodError("http2_max_window_updates_per_data_frame",
                                 f"{self.window_updates} WINDOW_UPDATE frames for {self.data_frames_sent} DATA frames sent")

    def _receive_frame(self, frame: Any) -> list:
        # h2's own, less its `trace("Received frame: %s", repr(frame))`, which formats every frame.
        kind = _GUARDED.get(frame.__class__)
        if kind is not None:
            self._guard(kind, frame)
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            if frames:
                self._prepare_for_sending(frames)
        return events


def _send_end(sm: Any) -> None:
    """The stream state machine's SEND_END_STREAM: made here from HALF_CLOSED_REMOTE (h2's
    send_end_stream: CLOSED, closed by SEND_END_STREAM, no event), h2's call otherwise."""
    if sm.state is _HALF_REMOTE:
        sm.state = _CLOSED
        sm.stream_closed_by = _BY_SEND_END
    else:
        sm.process_input(_S_SEND_END)


def _informational(headers: list) -> bool:
    """h2's `is_informational_response`: a `:status` 1xx among the leading pseudo-headers."""
    for name, value in headers:
        if name[:1] != b":":
            return False
        if name == b":status":
            return value[:1] == b"1"
    return False


def _header_frames(block: bytes, sid: int, end: bool, max_size: int) -> bytes:
    """HEADERS (+ CONTINUATION) frames carrying `block`."""
    end_flag = 0x1 if end else 0x0
    if len(block) <= max_size:
        return _frame_head(len(block), 0x1, 0x4 | end_flag, sid) + block
    chunks = [block[i:i + max_size] for i in range(0, len(block), max_size)]
    out = [_frame_head(len(chunks[0]), 0x1, end_flag, sid), chunks[0]]
    for i, chunk in enumerate(chunks[1:], 2):
        out += (_frame_head(len(chunk), 0x9, 0x4 if i == len(chunks) else 0x0, sid), chunk)
    return b"".join(out)
