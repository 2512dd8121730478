"""Loaded into every Python process of a node started by `bench/p99_probe.py` (PYTHONPATH): in the
proxy worker, it records what runs besides requests, with CLOCK_MONOTONIC stamps the client can
line up with its own: each garbage collection (generation, ns, objects collected) through
`gc.callbacks`, and the worker's periodic callbacks (access-log flush and tick, memory keeper,
upstream pool sweep). One line per event, written when it ends (O_APPEND, crash-proof)."""
import os
import sys
import time

_DIR = os.environ.get("P99_PROBE_DIR")


def _install() -> None:
    import gc

    fd = os.open(os.path.join(_DIR, f"events-{os.getpid()}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    now = time.perf_counter_ns  # CLOCK_MONOTONIC on Linux, as the client's
    started = [0]

    def on_gc(phase, info):
        if phase == "start":
            started[0] = now()
        else:
            t = now()
            os.write(fd, b"gc %d %d %d %d\n" % (info["generation"], started[0], t, info["collected"]))

    gc.callbacks.append(on_gc)

    def wrap(cls, name, tag):
        orig = getattr(cls, name)

        def timed(self, *a, **k):
            t0 = now()
            try:
                return orig(self, *a, **k)
            finally:
                os.write(fd, b"cb %s %d %d 0\n" % (tag, t0, now()))

        setattr(cls, name, timed)

    from meshway.proxy import _accesslog, _memory, _upstream

    wrap(_accesslog.AccessLog, "flush", b"accesslog.flush")
    wrap(_accesslog.AccessLog, "_tick", b"accesslog.tick")
    wrap(_memory.MemoryKeeper, "_tick", b"memory.tick")
    wrap(_upstream.Pool, "_sweep", b"pool.sweep")


if _DIR and "meshway.node.worker" in " ".join(getattr(sys, "orig_argv", [])):
    _install()
