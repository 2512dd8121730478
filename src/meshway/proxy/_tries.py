"""Kong's `ctx.balancer_data.tries`: what the balancer tried for a request that has a plugin Context.

Rules:
- Only requests with a Context record tries (the codecs call these functions where `ctx` exists):
  a route without plugins pays nothing. A try is recorded raw (a list: two clock readings and the
  peer); Kong's tables are built only when a plugin or the log serializer reads `ctx.tries`.
- Kong's try, as its log serializer writes it: `balancer_start` (epoch ms), `balancer_start_ns`,
  `balancer_latency` (ms spent picking the peer) and `balancer_latency_ns`, `ip` and `port` of
  the peer picked, and, once it failed, `state` and `code`. meshway retries only connection
  errors and timeouts, which nginx's `get_last_failure` names `"failed"` with 502 or 504; an
  upstream that fails after the connection (a read timeout, garbage, a close before the
  response) marks its try the same way.
- `connect`: seconds from the dial to the connection (or to its failure), nginx's
  `$upstream_connect_time` that Kong's tracing plugins read; None for a try that reused a pooled
  connection.
"""
from __future__ import annotations

import time
from typing import Any

__all__ = ["CONNECT", "PEER", "connected", "failed", "kong_tries", "pick", "upstream_status"]

FAILED = "failed"
_time_ns = time.time_ns


# A try, raw: a list (the cheapest record to make per try) with these fields.
START, LATENCY, PEER, CODE, CONNECT = range(5)  # epoch ns, ns picking took, Peer, failure code, seconds


def pick(ctx: Any, service: Any, tried: Any) -> Any:
    """The balancer's next peer for this request (None: none left), recorded as a new try."""
    start = _time_ns()
    if service.fixed and not tried:  # a service without an upstream: its one peer (`_Fixed.select`, inlined)
        peer = service.balancer.peer
    else:
        peer = service.balancer.select(ctx if service.hash_request else None, exclude=tried)
    if peer is None:
        return None
    tries = ctx.balancer_tries
    if not tries:  # the first try: the hash-on-cookie balancer's new cookie, once per request
        if service.hash_request:  # (only a balancer that hashes on the request makes one)
            cookie = ctx.shared.get("balancer_set_cookie")
            if cookie:
                ctx.response_headers.append((b"Set-Cookie", cookie.encode("latin-1")))
        tries = ctx.balancer_tries = []
    tries.append([start, _time_ns() - start, peer, None, None])
    return peer


def connected(ctx: Any) -> None:
    """The current try's new connection is up: its connect time."""
    if ctx.balancer_tries:
        last = ctx.balancer_tries[-1]
        last[CONNECT] = _since_dial(last)


def failed(ctx: Any, code: int, connecting: bool = False) -> None:
    """The current try failed with `code` (502, 504); `connecting`: before it had a connection."""
    if ctx.balancer_tries:
        last = ctx.balancer_tries[-1]
        last[CODE] = code
        if connecting:
            last[CONNECT] = _since_dial(last)


def kong_tries(tries: Any) -> list[dict[str, Any]]:
    """Kong's `balancer_data.tries` tables for these raw tries."""
    out = []
    for start, latency, peer, code, _ in tries:
        entry = {"balancer_start": start // 1_000_000, "balancer_start_ns": start,
                 "balancer_latency": latency // 1_000_000, "balancer_latency_ns": latency,
                 "ip": peer.host, "port": peer.port}
        if code is not None:
            entry["state"], entry["code"] = FAILED, code
        out.append(entry)
    return out


def upstream_status(tries: Any, answered: int | None) -> str:
    """nginx's `$upstream_status` (Kong's log serializer `upstream_status`): each try's status,
    the failed ones' codes then the upstream's answer (`"502, 200"`); "" without a try."""
    codes = [str(t[CODE]) for t in tries if t[CODE] is not None]
    if answered is not None and tries and tries[-1][CODE] is None:
        codes.append(str(answered))
    return ", ".join(codes)


def _since_dial(t: list) -> float:
    return max(_time_ns() - t[START] - t[LATENCY], 0) / 1e9
