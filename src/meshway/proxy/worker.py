"""A proxy worker process: `python -m meshway.proxy.worker`.

Rules:
- Spawned by the node master with `--control-fd` (a socketpair end) and inherited listening
  sockets; the first control frame is `boot` (which fd is which listener), then the messages of
  docs/snapshot.md: `config`, `call`, `stop`. The worker exits when the control socket closes.
- A config is decoded and compiled in a thread so the event loop keeps serving, then the
  runtime is swapped whole; in-flight exchanges keep the runtime they started with. A config
  that fails to compile is `rejected` and the previous runtime keeps serving.
- Under a master, before any config, the worker attaches the plugins' shared counters in
  `<prefix>/shm` (its region = `--worker-id`, of `workers`); a standalone worker keeps them in-process.
- `--standalone --listen ADDR [--listen ...] --snapshot FILE` binds its own sockets and loads a
  snapshot file (dev and benchmarks; no master).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import struct
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from meshway import ipc
from meshway.plugins import attach_shared_memory
from meshway.plugins.bundled._cluster_counters import set_node_database
from meshway.settings import ListenSpec, Settings, load_settings, parse_listen

from ._jsonsplit import loads_split
from ._state import Worker, set_h2_handoff

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("meshway.proxy")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "crit": logging.CRITICAL}
_LEN = struct.Struct(">I")


def setup_logging(settings: Settings, worker_id: int) -> None:
    root = logging.getLogger("meshway")
    root.setLevel(_LEVELS.get(settings.log_level, logging.INFO))
    fmt = logging.Formatter(f"%(asctime)s [%(levelname)s] worker {worker_id} pid {os.getpid()}: %(message)s")
    path = settings.path(settings.proxy_error_log)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.handlers[:] = [handler]
    root.propagate = False


class Control(asyncio.Protocol):
    """The master's control channel: frames in, a queue of messages handled in order."""

    def __init__(self, worker: Worker, queue: asyncio.Queue):
        self.worker = worker
        self.queue = queue
        self.buf = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4:
            (size,) = _LEN.unpack_from(self.buf)
            if size > ipc.MAX_FRAME:
                log.error("control frame of %d bytes is too large", size)
                self.transport.close()
                return
            if len(self.buf) < 4 + size:
                return
            body = bytes(self.buf[4:4 + size])
            del self.buf[:4 + size]
            self.queue.put_nowait(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ipc.encode(message))


async def _decode(loop: asyncio.AbstractEventLoop, body: bytes) -> Any:
    # Config frames can be megabytes of JSON: decode them off the loop.
    if len(body) > 65536:
        return await loop.run_in_executor(None, loads_split, body)
    return json.loads(body)


async def control_loop(worker: Worker, sock: socket.socket, boot_done: asyncio.Future | None) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    _, control = await loop.create_unix_connection(lambda: Control(worker, queue), sock=sock)
    worker.control = control
    while True:
        body = await queue.get()
        if body is None:
            log.warning("control channel closed: the master is gone; exiting")
            return
        try:
            msg = await _decode(loop, body)
        except ValueError as e:
            log.error("invalid control frame: %s", e)
            continue
        if not isinstance(msg, dict):
            continue
        if await handle_message(worker, control, msg):
            return


async def handle_message(worker: Worker, control: Control, msg: dict[str, Any]) -> bool:
    """Handle one control message; True when the worker should stop."""
    op = msg.get("op")
    if op == "boot":
        await worker.start_listeners(msg.get("listeners") or [])
    elif op == "config":
        control.send(await worker.apply_config(msg.get("snapshot") or {}, msg.get("hash")))
    elif op == "call":
        control.send(await worker.call(msg.get("id"), msg.get("method"), msg.get("args") or {}))
    elif op == "stop":
        return True
    else:
        log.warning("unknown control message %r", op)
    return False


def parse_args(argv: list[str]) -> argparse.Namespace | SimpleNamespace:
    """The arguments; the master's own form without argparse (see `_master_form`)."""
    return _master_form(argv) or _parser().parse_args(argv)


def _master_form(argv: list[str]) -> SimpleNamespace | None:
    """`--control-fd N --worker-id N [--conf PATH]`, exactly as the master spawns a worker
    (node/_workers.py), read without argparse: argparse, and the gettext, shutil, bz2 and lzma it
    loads, are ~0.7 MiB of an idle worker's memory (bench/README.md, "Idle worker memory").
    Anything else (another order, `--opt=value`, a bad number) goes to argparse: same result."""
    if len(argv) not in (4, 6) or argv[0] != "--control-fd" or argv[2] != "--worker-id":
        return None
    if len(argv) == 6 and (argv[4] != "--conf" or argv[5].startswith("-")):
        return None
    try:
        fd, worker_id = int(argv[1]), int(argv[3])
    except ValueError:
        return None
    return SimpleNamespace(control_fd=fd, worker_id=worker_id, conf=argv[5] if len(argv) == 6 else None,
                           standalone=False, listen=[], snapshot=None)


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog="meshway.proxy.worker")
    p.add_argument("--control-fd", type=int)
    p.add_argument("--worker-id", type=int, default=0)
    p.add_argument("--conf")
    p.add_argument("--standalone", action="store_true")
    p.add_argument("--listen", action="append", default=[], help="listen spec, e.g. '127.0.0.1:8000' or '127.0.0.1:8443 ssl'")
    p.add_argument("--snapshot", help="snapshot JSON (standalone)")
    return p


async def _standalone(worker: Worker, args: argparse.Namespace) -> None:
    from .netutil import prepare_listener_socket

    specs: list[ListenSpec] = [s for item in args.listen for s in parse_listen("--listen", item)]
    socks = [(prepare_listener_socket(spec), spec, "proxy") for spec in specs]
    # The snapshot first, then accepting (as the master does with its workers): a client that
    # connects as soon as the port listens waits in the backlog, not answered 404 by the empty config.
    if any(spec.ssl for spec in specs):
        worker.prepare_tls()
    if args.snapshot:
        with open(args.snapshot, "rb") as f:
            snapshot = json.load(f)
        reply = await worker.apply_config(snapshot, snapshot.get("_hash") or "standalone")
        if reply["op"] != "applied":
            log.error("snapshot rejected: %s", reply.get("error"))
            print(f"snapshot rejected: {reply.get('error')}", file=sys.stderr, flush=True)
            raise SystemExit(2)
    await worker.serve_sockets(socks)
    print("ready " + " ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s, _, _ in socks), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _h2_handoff(h1: Any, transport: Any, data: bytes = b"") -> None:
    """The HTTP/2 connection handler, imported with the first HTTP/2 connection: `h2` and the
    HTTP/2 package are ~0.035 s of the ~0.13 s of CPU a worker spends importing, which a worker
    that only sees HTTP/1.1 (or not yet HTTP/2) does not need to serve its first request."""
    from .http2 import handoff

    handoff(h1, transport, data)


async def amain(args: argparse.Namespace) -> None:
    settings = load_settings(args.conf)
    setup_logging(settings, args.worker_id)
    set_node_database(settings)  # plugins' `policy: cluster` counts in the node's PostgreSQL
    if not args.standalone:  # under a master: plugins' shared counters are node-wide, in the prefix
        attach_shared_memory(settings.prefix_path / "shm", args.worker_id, settings.workers)
    set_h2_handoff(_h2_handoff)  # HTTP/2 and gRPC: read by Worker when it is created
    worker = Worker(asyncio.get_running_loop(), settings, args.worker_id)
    try:
        if args.standalone:
            await _standalone(worker, args)
        else:
            sock = socket.socket(fileno=args.control_fd)
            await control_loop(worker, sock, None)
    finally:
        await worker.shutdown()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.standalone and args.control_fd is None:
        raise SystemExit("meshway.proxy.worker: --control-fd or --standalone is required")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(amain(args))
    else:
        uvloop.run(amain(args))


if __name__ == "__main__":
    main()
