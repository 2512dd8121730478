"""The client side of HTTP/2: one asyncio Protocol per connection, frames parsed by `h2`.

Rules:
- Entry: ALPN `h2` on TLS listeners, or the connection preface on plain `http2` listeners
  (prior knowledge); the HTTP/1.1 protocol hands its transport over (`handoff`).
- Frames -> pipeline: HEADERS opening a stream (`RequestReceived`) -> a `Stream` routes and runs
  the access plugins at once; DATA -> `Stream.client_data` (request body); END_STREAM ->
  `client_end`; trailing HEADERS -> `client_trailers`; RST_STREAM -> `Stream.cancel`;
  WINDOW_UPDATE and SETTINGS -> pending response data is pushed again; GOAWAY from the client
  -> no new streams, close when the last one ends.
- Whatever `h2` calls a protocol error (bad preface, bad frames, a header list over
  `max_header_list_size`, flow-control violations) -> GOAWAY with its error code, then close. A
  header block (or trailers) with more than `max_request_headers` fields -> GOAWAY
  ENHANCE_YOUR_CALM, as for one over the size limit (checked when a block is decoded, not per request).
  A malformed request block (`_headers.decode_request`) -> RST_STREAM PROTOCOL_ERROR. No exception from a stream leaves `data_received`: a failing stream is
  reset with INTERNAL_ERROR, the connection and the worker keep going.
- Floods (theory in `_h2conn`'s rules; limits in the README's "Limits"): control frames, window
  updates and empty DATA frames over their limits -> GOAWAY ENHANCE_YOUR_CALM and one log line
  naming the client and the setting. Once `_RESET_STREAMS` streams were opened (Envoy's
  premature-reset rule), the client resetting more than half of them (rapid reset,
  CVE-2023-44487) -> the same.
  A connection serves at most `http2_max_requests` streams (nginx's `keepalive_requests`): then
  GOAWAY NO_ERROR, the open streams finish, later ones are refused (REFUSED_STREAM: clients
  retry them on a new connection). Concurrent streams are capped by SETTINGS_MAX_CONCURRENT_STREAMS.
- A client that does not read is not read from: while the socket's write buffer is over its
  high-water mark, reading pauses, so PING/SETTINGS acknowledgements cannot pile up.
- Flow control: request DATA is acknowledged (WINDOW_UPDATE) only when the upstream leg took it;
  response DATA goes out within the client's windows, the rest waits in the stream, whose leg
  stops reading the upstream; when the socket's write buffer is full nothing is framed.
- Bytes framed while handling one read event go out in one write (`flush`); response data a leg
  delivers is framed at that flush, so a body and its END_STREAM share a DATA frame.
- Timeouts: nothing valid from the client within client_header_timeout -> close; no open
  stream for keepalive_timeout -> GOAWAY NO_ERROR and close. A stream whose request body gets no
  DATA for client_body_timeout (idle, as HTTP/1.1 and nginx) -> 408 and RST_STREAM NO_ERROR
  (RST_STREAM PROTOCOL_ERROR if its response had started, as nginx); the connection and its
  other streams go on. One re-armed timer per connection (`_body_sweep`), not one per frame:
  a DATA frame only stores the time. Time the client could not send does not count: while the
  stream's or the connection's window is used up by bytes we did not acknowledge yet, or while
  reading is paused because the client does not read.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from ._codec import resolve
from ._headers import Malformed, check_trailers, decode_request
from .._errors import error_body
from .._headers import forwarded_fixed
from ._h2conn import FastH2Connection, FloodError
from ._hpack import FastEncoder
from ._stream import Stream

__all__ = ["H2Server"]

log = logging.getLogger("meshway.proxy")

_MAX_STREAMS = 128
_STREAM_WINDOW = 1 << 20
_CONN_WINDOW = 16 << 20
_RESET_STREAMS = 500  # Envoy's premature_reset_total_stream_count: judged after this many streams
_LINGER = 2.0  # seconds a closed connection still reads and drops what its client sends (nginx: lingering_timeout)


class H2Server(asyncio.Protocol):
    """One HTTP/2 client connection: streams in, frames out."""

    mesh_peer = None  # (the access log's mesh fields: never on this side)

    def __init__(self, worker: Any, scheme: str, listen_port: int, client_ip: str, client_port: int,
                 sni: str | None, dst: tuple[str, int] | None):
        self.worker = worker
        self.loop = worker.loop
        self.scheme = scheme
        self.listen_port = listen_port
        self.client_ip = client_ip
        self.client_port = client_port
        self.sni = sni
        self.dst = dst
        self.route_port = dst[1] if dst else (443 if scheme == "https" else 80)  # the port routes match
        self.trusted = worker.trusted(client_ip)  # the forwarded headers it sends are kept
        self.ip_b = client_ip.encode()
        self.fwd_fixed = forwarded_fixed(client_ip, scheme, listen_port)  # its streams' X-Forwarded-Proto/Port, X-Real-IP
        self.transport: Any = None
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.goaway = False
        self.write_paused = False
        self.resets = 0
        self.completed = 0
        self.timer: Any = None
        self.body_timer: Any = None  # client_body_timeout sweep, armed while a request body is open
        self.idle_since = self.loop.time()
        self.seen_frames = False
        # Blocks are validated (inbound) and built clean (outbound) by `_headers`, not by h2.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_inbound_headers=False, normalize_inbound_headers=False,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        self.h2 = FastH2Connection(config, self.loop.time, worker.settings.http2_max_control_frames,
                                   worker.settings.http2_max_empty_frames,
                                   worker.settings.http2_max_window_updates_per_data_frame, worker.max_headers)
        self.max_requests = self.streams_left = worker.settings.http2_max_requests
        self.h2.encoder = FastEncoder()
        # The compiled codec (`_core._h2codec`) or None (the Python reference), per `http2_impl`.
        self.h2.codec = self.codec = codec = resolve(worker.settings.http2_impl)
        self.decode_request = decode_request if codec is None else codec.decode_request
        self.dirty: list[Stream] = []

    @property
    def active(self) -> Any:
        """For the worker's graceful stop: something while a stream is open."""
        return self.streams or None

    # -- asyncio
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.worker.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        c = self.h2
        c.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _MAX_STREAMS,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 4 * self.worker.header_limit,
        })
        c.initiate_connection()
        c.decoder.max_header_list_size = 4 * self.worker.header_limit  # enforced before the client ACKs it
        c.increment_flow_control_window(_CONN_WINDOW - 65535)
        self.flush()
        self._arm(self.worker.client_header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._protocol_error(e)
            return
        self.seen_frames = True
        ended = None
        for ev in events:
            if ev is ended:  # the END_STREAM of a request that came with it: on_end has nothing to do
                continue
            cls = ev.__class__
            handler = _HANDLERS.get(cls)
            if handler is not None:
                try:
                    handler(self, ev)
                except Exception as e:  # a bug in one stream must not take the connection down
                    self._failed(ev, e)
                if cls is _REQUEST:
                    ended = ev.stream_ended
            if self.closed:
                return
        self.flush()

    def _failed(self, ev: Any, e: Exception) -> None:
        """Reset the stream whose event handler raised `e` (INTERNAL_ERROR); the connection goes on."""
        sid = getattr(ev, "stream_id", 0)
        log.error("http2 stream %s from %s: %r", sid, self.client_ip, e, exc_info=e)
        stream = self.streams.pop(sid, None)
        if stream is not None:
            stream.cancel(internal=True)
        self.reset(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        for timer in (self.timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.body_timer = None
        for stream in list(self.streams.values()):
            stream.cancel()
        self.streams.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closed:
            self.transport.resume_reading()
        for stream in list(self.streams.values()):
            stream.pump()
        self.flush()

    # -- events
    def on_request(self, ev: h2.events.RequestReceived) -> None:
        # (data_received skips the StreamEnded of `ev.stream_ended`: the stream starts with
        # req_done set, or is refused or reset here, and on_end does nothing for either.)
        self.idle_since = 0.0
        if self.goaway:
            self.reset(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = Stream(self, ev.stream_id, ev.headers, ev.stream_ended is not None)
        stream.head_size = getattr(ev, "block_size", 0)  # FastH2Connection's note of the header block size
        self.streams[ev.stream_id] = stream
        self.streams_left -= 1
        if not self.streams_left:
            self._retire(ev.stream_id)
        if ev.stream_ended is None:
            stream.body_at = self.loop.time()
            if self.body_timer is None and self.worker.client_body_timeout > 0:
                self.body_timer = self.loop.call_later(self.worker.client_body_timeout, self._body_sweep)
        stream.start()

    def _retire(self, last_sid: int) -> None:
        """GOAWAY NO_ERROR after the connection's last allowed stream; the open ones finish."""
        self.goaway = True
        log.info("client %s:%s: http2_max_requests (%d streams) reached: GOAWAY", self.client_ip, self.client_port,
                 self.max_requests)
        # Framed here: h2's close_connection would close its state machine under the open streams.
        self.h2._data_to_send += GoAwayFrame(0, last_stream_id=last_sid, error_code=0).serialize()

    def on_data(self, ev: h2.events.DataReceived) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is None:
            self.ack(ev.stream_id, ev.flow_controlled_length)
            return
        padding = ev.flow_controlled_length - len(ev.data)
        if padding:
            self.ack(ev.stream_id, padding)
        stream.body_at = self.loop.time()
        stream.client_data(ev.data)

    def on_trailers(self, ev: h2.events.TrailersReceived) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is None:
            return
        try:
            trailers = check_trailers(ev.headers)
        except Malformed as e:
            self.malformed(stream, str(e))
            return
        stream.client_end(trailers)

    def malformed(self, stream: Stream, why: str) -> None:
        """RFC 9113 8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR."""
        log.info("client %s:%s stream %s: malformed request: %s", self.client_ip, self.client_port, stream.sid, why)
        self.worker.access.error_line(self.client_ip, 400)
        self.streams.pop(stream.sid, None)
        stream.cancel()
        self.reset(stream.sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        self._maybe_idle()

    def on_end(self, ev: h2.events.StreamEnded) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is not None and not stream.req_done:
            stream.client_end(None)

    def on_reset(self, ev: h2.events.StreamReset) -> None:
        self.resets += 1
        stream = self.streams.pop(ev.stream_id, None)
        if stream is not None:
            stream.cancel()
        opened = self.max_requests - self.streams_left
        if self.resets * 2 > opened >= min(_RESET_STREAMS, self.max_requests or _RESET_STREAMS):
            log.warning("client %s:%s: http2 flood, rapid reset: %d of %d streams reset by the client: "
                        "GOAWAY ENHANCE_YOUR_CALM", self.client_ip, self.client_port, self.resets, opened)
            self.close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        else:
            self._maybe_idle()

    def on_window(self, ev: h2.events.WindowUpdated) -> None:
        if ev.stream_id:
            stream = self.streams.get(ev.stream_id)
            if stream is not None:
                stream.pump()
        else:
            for stream in list(self.streams.values()):
                stream.pump()

    def on_settings(self, ev: h2.events.RemoteSettingsChanged) -> None:
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
            for stream in list(self.streams.values()):
                stream.pump()

    def on_goaway(self, ev: h2.events.ConnectionTerminated) -> None:
        self.goaway = True
        if not self.streams:
            self.close()

    # -- what streams call
    def send_headers(self, sid: int, headers: list, end: bool) -> int:
        """The bytes of the HEADERS (and CONTINUATION) frames queued; 0 when refused."""
        before = len(self.h2._data_to_send)
        try:
            self.h2.send_headers(sid, headers, end_stream=end)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as e:
            log.info("http2 stream %s to %s: headers not sent: %r", sid, self.client_ip, e)
            return 0
        return len(self.h2._data_to_send) - before

    def ack(self, sid: int, n: int) -> None:
        if n and not self.closed:
            try:
                self.h2.acknowledge_received_data(n, sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass  # the stream is gone; its bytes were counted on the connection already

    def reset(self, sid: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        if sid and not self.closed:
            try:
                self.h2.reset_stream(sid, code)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass

    def stream_done(self, stream: Stream, now: float | None = None) -> None:
        streams = self.streams
        if streams.get(stream.sid) is stream:
            del streams[stream.sid]
        self.worker.requests += 1
        self.completed += 1
        if not streams:  # `_maybe_idle`, inlined (`now`: the caller's loop.time())
            if self.goaway:
                self.close()
                return
            self.idle_since = self.loop.time() if now is None else now
            if self.timer is None:
                self._arm(self.worker.keepalive_timeout)

    def schedule(self, stream: Stream) -> None:
        """Frame `stream`'s pending response at the next flush (data and END_STREAM in one frame)."""
        self.dirty.append(stream)

    def flush(self) -> None:
        if self.dirty:
            dirty, self.dirty = self.dirty, []
            for stream in dirty:
                stream.pump()
        conn = self.h2
        if conn._data_to_send:  # h2's data_to_send(), inlined (of an empty buffer it is b"": not called)
            data = bytes(conn._data_to_send)
            conn._data_to_send = bytearray()
            if not self.closed:
                self.transport.write(data)

    def close(self, code: int = h2.errors.ErrorCodes.NO_ERROR) -> None:
        """GOAWAY and close (the worker's stop uses it too)."""
        if self.closed:
            return
        try:
            self.h2.close_connection(error_code=code)
        except h2.exceptions.ProtocolError:
            pass
        self.flush()
        self._hang_up()

    def _hang_up(self) -> None:
        """Close after a GOAWAY the way nginx's lingering close does: stop writing, read and drop
        what the client still sends for up to `_LINGER` seconds, then close. Closing a socket
        with unread bytes makes the kernel answer with a reset, and a reset can destroy the
        GOAWAY before the client reads it (a rapid-reset flooder never learned why it was cut)."""
        self.closed = True
        transport = self.transport
        if transport.is_closing():
            return
        if self.write_paused:
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()  # the client reads the GOAWAY, then EOF: eof_received closes
        self.loop.call_later(_LINGER, transport.close)

    def _protocol_error(self, e: h2.exceptions.ProtocolError) -> None:
        if isinstance(e, FloodError):
            log.warning("client %s:%s: http2 flood, %s: GOAWAY ENHANCE_YOUR_CALM", self.client_ip, self.client_port, e)
        else:
            log.info("http2 protocol error from %s:%s: %s", self.client_ip, self.client_port, e)
        self.worker.access.error_line(self.client_ip, 400)
        if self.h2.state_machine.state != h2.connection.ConnectionState.CLOSED:  # h2 sent no GOAWAY yet
            code = getattr(e, "error_code", None) or h2.errors.ErrorCodes.PROTOCOL_ERROR
            try:
                self.h2.close_connection(error_code=code)
            except h2.exceptions.ProtocolError:
                pass
        self.flush()
        self._hang_up()

    # -- timeouts: one lazy timer
    def _maybe_idle(self) -> None:
        if self.streams:
            return
        if self.goaway:
            self.close()
            return
        self.idle_since = self.loop.time()
        self._arm(self.worker.keepalive_timeout)

    def _body_sweep(self) -> None:
        """client_body_timeout: time out the streams whose body is idle, re-arm for the next one."""
        self.body_timer = None
        if self.closed:
            return
        timeout, now = self.worker.client_body_timeout, self.loop.time()
        # The client cannot send while its windows are used up by what we did not acknowledge,
        # nor while we do not read: that time is ours, so those clocks restart.
        open_bodies = [s for s in self.streams.values() if not s.req_done and not s.done]
        conn_blocked = self.write_paused or sum(s.unacked for s in self.streams.values()) >= _CONN_WINDOW
        earliest = None
        for stream in open_bodies:
            if conn_blocked or stream.unacked >= _STREAM_WINDOW:
                stream.body_at = now
            elif stream.body_at + timeout <= now:
                self._body_timed_out(stream, timeout)
                continue
            due = stream.body_at + timeout
            earliest = due if earliest is None or due < earliest else earliest
        if earliest is not None:
            self.body_timer = self.loop.call_later(max(earliest - now, 0.01), self._body_sweep)
        self.flush()

    def _body_timed_out(self, stream: Stream, timeout: float) -> None:
        log.info("client %s:%s stream %s: no request body data for client_body_timeout (%gs): 408",
                 self.client_ip, self.client_port, stream.sid, timeout)
        if stream.response_started:  # nginx: RST_STREAM PROTOCOL_ERROR on a timed-out stream
            self.reset(stream.sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            stream.status = 408
            stream.req_done = True
            stream.cancel()
            self.streams.pop(stream.sid, None)
            self._maybe_idle()
        else:
            stream.respond(408, error_body(408))  # then RST_STREAM NO_ERROR: the upload is not wanted

    def _arm(self, timeout: float) -> None:
        if timeout > 0 and self.timer is None:
            self.timer = self.loop.call_later(timeout, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed or self.streams:
            return
        if not self.seen_frames:
            self.close(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        left = self.idle_since + self.worker.keepalive_timeout - self.loop.time()
        if left > 0:
            self._arm(left)
        else:
            self.close()


_REQUEST = h2.events.RequestReceived
_HANDLERS = {
    h2.events.RequestReceived: H2Server.on_request,
    h2.events.DataReceived: H2Server.on_data,
    h2.events.TrailersReceived: H2Server.on_trailers,
    h2.events.StreamEnded: H2Server.on_end,
    h2.events.StreamReset: H2Server.on_reset,
    h2.events.WindowUpdated: H2Server.on_window,
    h2.events.RemoteSettingsChanged: H2Server.on_settings,
    h2.events.ConnectionTerminated: H2Server.on_goaway,
}
