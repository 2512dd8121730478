"""Which HTTP/1.1 parser the proxy runs: the compiled one or httptools (the pure-Python path).

`http1_impl` (setting): `compiled` = `_h1parse` (Cython over llhttp, built by `pip install`),
`python` = httptools with the protocol's per-event callbacks (the reference implementation, and
the fallback where no compiler was available), `auto` (default) = compiled when it imports.
Both drive the same protocol classes (`_http1.H1Server`, `_upstream.UpstreamConn`); the suite
runs against both (scripts/test.sh).
"""
from __future__ import annotations

from typing import Any

import httptools

__all__ = ["available", "compiled", "resolve", "select", "request_parser", "response_parser", "access_formatter",
           "h1_access_formatter"]

try:
    from . import _fmt, _h1parse
except ImportError:  # not built (no compiler at install time): the pure path
    _h1parse = _fmt = None  # type: ignore[assignment]


def available() -> bool:
    return _h1parse is not None


def resolve(impl: str) -> Any:
    """The compiled parser module for `http1_impl`, or None for the pure path."""
    if impl == "python":
        return None
    if _h1parse is None and impl == "compiled":
        raise RuntimeError("http1_impl = compiled, but meshway.proxy._core._h1parse is not built "
                           "(reinstall with a C compiler and the Python headers, or set http1_impl = auto)")
    return _h1parse


_ACTIVE: list[Any] = [_h1parse]  # this process's choice (a worker has one settings object)
# The same, read per request by the exchange for the compiled header encoders
# (`_core.compiled.encode_request_headers`...): the `_h1parse` module, or None on the pure path.
compiled: Any = _h1parse


def select(impl: str) -> None:
    """Set the process's `http1_impl` (called once per worker process, before any connection)."""
    global compiled
    _ACTIVE[0] = compiled = resolve(impl)


def request_parser(proto: Any, reject: Any, limit: int) -> Any:
    """A request parser driving `proto` (an `_http1.H1Server`)."""
    core = _ACTIVE[0]
    if core is None:
        return httptools.HttpRequestParser(proto)
    return core.RequestParser(proto, reject, limit)


def response_parser(proto: Any) -> Any:
    """A response parser driving `proto` (an `_upstream.UpstreamConn`)."""
    core = _ACTIVE[0]
    if core is None:
        return httptools.HttpResponseParser(proto)
    return core.ResponseParser(proto)


def access_formatter() -> Any:
    """`_fmt.access_line` for the access log (None on the pure path: its Python format)."""
    return None if _ACTIVE[0] is None else _fmt.access_line


def h1_access_formatter() -> Any:
    """`_fmt.access_line_h1` for HTTP/1.1 exchanges (None on the pure path)."""
    return None if _ACTIVE[0] is None else _fmt.access_line_h1
