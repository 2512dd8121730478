"""Proxy worker processes, as the master sees them.

Theory of operation: the master binds every proxy/stream socket, then spawns `workers`
processes (`python -m meshway.node.worker`: the proxy worker with the mesh plugged in) that inherit those sockets and a control
socketpair. Over the control socket the master sends `boot`, then `config` whenever the
snapshot changes; each worker compiles and swaps on its own and answers `applied` or
`rejected`. A worker that dies is respawned with the current config. The master never waits
on a worker inside a request of its own Admin API for longer than `APPLY_TIMEOUT`.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from meshway import ipc
from meshway.settings import without_settings_env

log = logging.getLogger("meshway.node")
APPLY_TIMEOUT = 60.0
RESPAWN_DELAY = 0.5
# Where a worker's exit cannot be waited for (no pidfd: not Linux >= 5.3), how often the master
# looks. With a pidfd the master sleeps until a worker exits: on an idle node it does not wake
# (it shares the workers' cores, and each wake-up there delays a request; the 0.2 s look it
# replaced woke it 5 times a second, ~140 us each on a loaded proxy core: bench/p99_probe.py).
POLL_INTERVAL = 0.2


@dataclass
class BoundListener:
    """A socket the master bound for the workers: kind is `proxy` or `stream`.

    `worker` is None for a socket every worker accepts on; with `reuseport` each worker has a
    socket of its own (`worker` = its id) on the same address, so the kernel spreads new
    connections over the workers by their addresses' hash, as nginx's `reuseport`. The master
    keeps each one open, so connections queued on a dead worker's socket wait for its respawn.
    """

    kind: str
    index: int
    sock: socket.socket
    worker: int | None = None

    def serves(self, worker_id: int) -> bool:
        return self.worker is None or self.worker == worker_id


@dataclass
class _Worker:
    worker_id: int
    proc: subprocess.Popen
    writer: asyncio.StreamWriter
    reader_task: asyncio.Task | None = None
    pending: dict[int, asyncio.Future] = field(default_factory=dict)
    applied: dict[str, asyncio.Future] = field(default_factory=dict)
    config_hash: str | None = None
    pidfd: int | None = None  # readable once the process has exited (Linux)


class WorkerPool:
    """Spawns, feeds and supervises the proxy workers of one node."""

    def __init__(self, count: int, listeners: list[BoundListener], conf_path: str | None, env: dict[str, str]):
        self._count = count
        self._listeners = listeners
        self._conf_path = conf_path
        self._env = env
        self._workers: dict[int, _Worker] = {}
        self._snapshot: tuple[dict, str] | None = None
        self._ids = itertools.count(1)
        self._stopping = False
        self._supervisor: asyncio.Task | None = None
        self._exited = asyncio.Event()  # a worker's pidfd turned readable
        self._poll = not hasattr(os, "pidfd_open")  # no way to wait for an exit: look periodically

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers.values()]

    async def launch(self) -> None:
        """Start the worker processes without a config yet: the master calls this as soon as
        its sockets are bound, so a worker's interpreter start and imports (most of its way to
        serving) run while the master makes its certificate and loads the config. A worker
        accepts nothing before `start` has sent it the config and then its listeners."""
        for i in range(self._count):
            if i not in self._workers:
                await self._launch(i)

    async def start(self, snapshot: dict, config_hash: str) -> None:
        self._snapshot = (snapshot, config_hash)
        await self.launch()
        results = await asyncio.gather(*(self._configure(w) for w in list(self._workers.values())),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop(timeout=2.0)
            raise errors[0]
        self._supervisor = asyncio.create_task(self._supervise())

    async def _spawn(self, worker_id: int) -> None:
        await self._configure(await self._launch(worker_id))

    async def _launch(self, worker_id: int) -> _Worker:
        parent, child = socket.socketpair()
        own = [lst for lst in self._listeners if lst.serves(worker_id)]
        fds = [child.fileno()] + [lst.sock.fileno() for lst in own]
        cmd = [sys.executable, "-m", "meshway.node.worker", "--control-fd", str(child.fileno()),
               "--worker-id", str(worker_id)]
        if self._conf_path:
            cmd += ["--conf", self._conf_path]
        proc = subprocess.Popen(cmd, pass_fds=fds, env=self._env, stdin=subprocess.DEVNULL)
        child.close()
        reader, writer = await asyncio.open_connection(sock=parent, limit=2**20)
        worker = _Worker(worker_id, proc, writer)
        self._workers[worker_id] = worker
        self._watch_exit(worker)
        worker.reader_task = asyncio.create_task(self._read(worker, reader))
        return worker

    async def _configure(self, worker: _Worker) -> None:
        own = [lst for lst in self._listeners if lst.serves(worker.worker_id)]
        # The config first, then the listeners: a respawned worker must not accept (and answer 404
        # from an empty config) before it runs the node's config.
        if self._snapshot:
            reply = await self._send_config(worker, *self._snapshot)
            if reply.get("op") == "rejected":
                raise ValueError(f"worker {worker.worker_id} rejected the configuration: {reply.get('error')}")
        boot = [{"fd": lst.sock.fileno(), "kind": lst.kind, "index": lst.index} for lst in own]
        worker.writer.write(ipc.encode({"op": "boot", "listeners": boot}))

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        frames = ipc.FrameReader()
        try:
            while data := await reader.read(65536):
                for msg in frames.feed(data):
                    self._on_message(worker, msg)
        except (ConnectionError, ipc.FrameError) as e:
            log.error("control channel of worker %d broken: %s", worker.worker_id, e)
        for fut in [*worker.pending.values(), *worker.applied.values()]:
            if not fut.done():
                fut.set_exception(ConnectionError(f"worker {worker.worker_id} exited"))

    def _on_message(self, worker: _Worker, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op in ("applied", "rejected"):
            fut = worker.applied.pop(msg.get("hash"), None)
            if op == "applied":
                worker.config_hash = msg.get("hash")
            if fut and not fut.done():
                fut.set_result(msg)
        elif op == "reply":
            fut = worker.pending.pop(msg.get("id"), None)
            if fut and not fut.done():
                fut.set_result(msg)
        else:
            log.warning("worker %d sent an unknown message %r", worker.worker_id, op)

    async def _send_config(self, worker: _Worker, snapshot: dict, config_hash: str, frame: bytes | None = None) -> dict:
        fut = asyncio.get_running_loop().create_future()
        worker.applied[config_hash] = fut
        worker.writer.write(frame or _config_frame(snapshot, config_hash))
        return await asyncio.wait_for(fut, APPLY_TIMEOUT)

    async def apply(self, snapshot: dict, config_hash: str) -> float:
        """Send a config to every worker; return the slowest apply time (ms) or raise with the reason."""
        self._snapshot = (snapshot, config_hash)
        # one encoding for every worker, off the loop: 10,000 routes are ~5 MB of JSON (~0.2 s)
        frame = await asyncio.to_thread(_config_frame, snapshot, config_hash)
        replies = await asyncio.gather(
            *(self._send_config(w, snapshot, config_hash, frame) for w in list(self._workers.values())),
            return_exceptions=True,
        )
        errors = [str(r) if isinstance(r, BaseException) else r.get("error") for r in replies
                  if isinstance(r, BaseException) or r.get("op") == "rejected"]
        if errors:
            raise ValueError(errors[0] or "worker rejected the configuration")
        return max((r.get("ms", 0.0) for r in replies), default=0.0)

    async def call(self, method: str, args: dict | None = None, timeout: float = 10.0) -> list[Any]:
        """Ask every worker; results in worker order (errors as exceptions in the list)."""
        return await asyncio.gather(
            *(self._call_one(w, method, args or {}, timeout) for w in list(self._workers.values())),
            return_exceptions=True,
        )

    async def _call_one(self, worker: _Worker, method: str, args: dict, timeout: float) -> Any:
        call_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        worker.pending[call_id] = fut
        worker.writer.write(ipc.encode({"op": "call", "id": call_id, "method": method, "args": args}))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply.get("result")

    def _watch_exit(self, worker: _Worker) -> None:
        """Wake the supervisor when `worker` exits (a pidfd in the loop), or fall back to polling."""
        if self._poll:
            return
        try:
            worker.pidfd = os.pidfd_open(worker.proc.pid)
        except OSError:  # an older kernel: look every POLL_INTERVAL instead
            self._poll = True
            self._exited.set()
            return
        asyncio.get_running_loop().add_reader(worker.pidfd, self._on_exit, worker)

    def _on_exit(self, worker: _Worker) -> None:
        self._unwatch(worker)
        self._exited.set()

    @staticmethod
    def _unwatch(worker: _Worker) -> None:
        if worker.pidfd is not None:
            asyncio.get_running_loop().remove_reader(worker.pidfd)
            os.close(worker.pidfd)
            worker.pidfd = None

    async def _next_exit(self) -> None:
        """Until a worker may have exited: its pidfd said so, or (polling) POLL_INTERVAL passed."""
        if self._poll:
            await asyncio.sleep(POLL_INTERVAL)
        else:
            await self._exited.wait()
            self._exited.clear()

    async def _supervise(self) -> None:
        while not self._stopping:
            await self._next_exit()
            for worker in list(self._workers.values()):
                code = worker.proc.poll()
                if code is None or self._stopping:
                    continue
                log.error("worker %d (pid %d) exited with status %s; respawning", worker.worker_id, worker.proc.pid, code)
                self._unwatch(worker)
                del self._workers[worker.worker_id]
                worker.writer.close()
                await asyncio.sleep(RESPAWN_DELAY)
                try:
                    await self._spawn(worker.worker_id)
                except Exception as e:  # keep supervising the others
                    log.error("cannot respawn worker %d: %s", worker.worker_id, e)

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self._supervisor:
            self._supervisor.cancel()
        for worker in self._workers.values():
            try:
                worker.writer.write(ipc.encode({"op": "stop"}))
            except Exception:
                pass
        deadline = asyncio.get_running_loop().time() + timeout
        for worker in self._workers.values():
            while worker.proc.poll() is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()
            self._unwatch(worker)
        self._workers.clear()


def _config_frame(snapshot: dict, config_hash: str) -> bytes:
    return ipc.encode({"op": "config", "hash": config_hash, "snapshot": snapshot})


def child_env(settings_prefix: str) -> dict[str, str]:
    """The workers' environment: their settings come from the master's conf file (the recorded
    settings), never from MESHWAY_* variables that could differ from the master's."""
    env = without_settings_env(os.environ)
    env["MESHWAY_PREFIX"] = settings_prefix
    return env
