"""Running plugin phases over a chain; codec-independent.

Rules:
- Phase signatures: `rewrite(ctx)`, `access(ctx)`, `response(ctx)`, `log(ctx)`,
  `body(ctx, chunk)` or `body(ctx, chunk, eof)` returning the replacement chunk (None keeps it).
  (`certificate(tls)` runs in the TLS handshake, not here: see `_tls.run_certificate`.)
- `rewrite` runs the config's global rewrite chain before the router, on a Context without a
  route yet; the codec then routes on what it left (`_pipeline.rewritten`) and keeps the same
  Context for access, response and log.
- A phase method may be a coroutine; the runner stays synchronous until it meets one, so a
  chain of plain functions never creates a task.
- After `ctx.exit()` in rewrite/access the chain stops. An exception answers 500 with the
  request id, is logged with the plugin's name, and never leaves this module. `log` phases are
  isolated from each other and from the client.
"""
from __future__ import annotations

import inspect
import logging
import types
from typing import Any, Awaitable

from ._context import Context
from ._plugins import Chain, PluginSet

__all__ = ["replaced_head", "run_phase", "run_body", "run_log", "run_rewrite", "start_log"]

log = logging.getLogger("meshway.proxy")
_STOPPING = frozenset({"rewrite", "access"})


def _fail(ctx: Context, name: str, phase: str, exc: BaseException) -> None:
    log.error("plugin %s failed in %s phase (request %s): %r", name, phase, ctx.request_id, exc,
              exc_info=(type(exc), exc, exc.__traceback__))
    if ctx.exited is None or phase in _STOPPING:
        ctx.exit(500, {"message": "An unexpected error occurred", "request_id": ctx.request_id})


def _instances(chain: Chain, phase: str, ctx: Context, start: int):
    links = chain.links
    for i in range(start, len(links)):
        inst = links[i].instance(ctx.consumer_id)
        if inst is not None and phase in inst.phases and ctx.scheme in inst.protocols:
            yield i, inst


def run_phase(chain: Chain, phase: str, ctx: Context, start: int = 0) -> Awaitable[None] | None:
    """Run `phase` over the chain; returns an awaitable only if a plugin actually suspends.

    An async phase method is stepped right here: most (a local rate-limit counter, a cache hit)
    finish without waiting for anything, and then the chain goes on synchronously, without a
    Task and a loop round trip per request (~10 us saved per async plugin). Only a method that
    really awaits I/O hands the rest of the chain to the returned awaitable."""
    stops = phase in _STOPPING
    if chain.fixed:  # no consumer-scoped instance: the steps are resolved once per (phase, scheme)
        steps = chain.steps.get((phase, ctx.scheme)) or chain.resolve(phase, ctx.scheme)
    else:
        steps = _consumer_steps(chain, phase, ctx)
    for i, fn, is_async, name in steps:
        if i < start:  # resuming after plugin start-1 suspended
            continue
        try:
            if is_async:
                coro = fn(ctx)
                try:
                    waiting = coro.send(None)
                except StopIteration:
                    pass
                else:
                    return _resume(coro, waiting, chain, phase, ctx, i)
            else:
                fn(ctx)
        except Exception as e:
            _fail(ctx, name, phase, e)
            return None
        if stops and ctx.exited is not None:
            return None
    return None


def _consumer_steps(chain: Chain, phase: str, ctx: Context):
    """`Chain.resolve` for a chain with consumer-scoped instances: each link's instance is
    chosen when its turn comes (lazily), so a consumer an earlier plugin authenticated selects
    the instances of the plugins after it."""
    links = chain.links
    for i in chain.positions.get(phase, ()):
        link = links[i]
        inst = link.instance(ctx.consumer_id) if link.by_consumer else link.default
        if inst is not None and phase in inst.phases and ctx.scheme in inst.protocols:
            yield (i, *inst.phases[phase], inst.name)


async def _resume(coro: Any, waiting: Any, chain: Chain, phase: str, ctx: Context, i: int) -> None:
    """The rest of a phase after plugin `i` suspended on `waiting`: finish it, then the chain."""
    try:
        await _relay(coro, waiting)
    except Exception as e:
        _fail(ctx, chain.links[i].instance(ctx.consumer_id).name, phase, e)
        return
    if phase in _STOPPING and ctx.exited is not None:
        return
    pending = run_phase(chain, phase, ctx, i + 1)
    if pending is not None:
        await pending


@types.coroutine
def _relay(coro: Any, waiting: Any):
    """Continue a coroutine that was stepped outside a Task and yielded `waiting`: pass what it
    yields to the Task driving us, and what the Task sends or throws back to it."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as e:  # noqa: B036 - CancelledError included: the coroutine must see it
            try:
                waiting = coro.throw(e)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as stop:
                return stop.value


_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"content-encoding", b"transfer-encoding", b"etag",
                           b"last-modified", b"content-range"})


def replaced_head(ctx: Context) -> list[tuple[bytes, bytes]]:
    """The headers of an answer a `response` phase gave with `ctx.exit()` (Kong's exit in
    header_filter): the response's headers as the plugins left them, without those that
    describe the upstream's body (it is not sent), then the exit's own."""
    kept = [(k, v) for k, v in ctx.response_headers if k.lower() not in _BODY_HEADERS]
    return [*kept, *ctx.exited.headers]


def run_rewrite(plugins: PluginSet, ctx: Context) -> Awaitable[None] | None:
    """The global plugins' `rewrite` phase, before the router (codecs call it only when
    `runtime.rewrite` is non-empty); an awaitable only if a plugin really suspends."""
    return run_phase(plugins.rewrite_chain, "rewrite", ctx)


def run_body(chain: Chain, ctx: Context, chunk: bytes, eof: bool) -> bytes:
    """Pass a response chunk through every `body` phase (synchronous only)."""
    for _, inst in _instances(chain, "body", ctx, 0):
        fn, _ = inst.phases["body"]
        try:
            out = fn(ctx, chunk, eof) if _wants_eof(fn) else fn(ctx, chunk)
        except Exception as e:
            log.error("plugin %s failed in body phase (request %s): %r", inst.name, ctx.request_id, e)
            continue
        if out is not None:
            chunk = out
    return chunk


_EOF_CACHE: dict[Any, bool] = {}


def _wants_eof(fn: Any) -> bool:
    key = getattr(fn, "__func__", fn)
    got = _EOF_CACHE.get(key)
    if got is None:
        try:
            got = _EOF_CACHE[key] = len(inspect.signature(fn).parameters) >= 3
        except (TypeError, ValueError):
            got = False
    return got


async def run_log(chain: Chain, ctx: Context) -> None:
    """Every `log` phase; failures are logged, never raised."""
    for link in chain.links:  # `_instances`, inlined: no generator per request
        inst = link.instance(ctx.consumer_id) if link.by_consumer else link.default
        if inst is None or "log" not in inst.phases or ctx.scheme not in inst.protocols:
            continue
        fn, _ = inst.phases["log"]
        try:
            result = fn(ctx)
            if result is not None and inspect.isawaitable(result):  # None: skip a Python-level call
                await result
        except Exception as e:
            log.error("plugin %s failed in log phase (request %s): %r", inst.name, ctx.request_id, e)


def start_log(chain: Chain, ctx: Context) -> Awaitable[None] | None:
    """`run_log`, run synchronously as far as it goes: an awaitable (for a Task) only when a log
    phase really awaits; plain `log` methods (prometheus, file-log) then cost no Task at all."""
    coro = run_log(chain, ctx)
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return _finish(coro, waiting)


async def _finish(coro: Any, waiting: Any) -> None:
    await _relay(coro, waiting)
