"""Which HTTP/2 codec a client connection runs: the compiled one or the Python reference.

`http2_impl` (setting): `compiled` = `meshway.proxy._core._h2codec` (Cython, built by `pip
install`): frame scanning and framing, HPACK encoding, the request head's checks and the
response fields in C; `python` = the same steps in `_h2conn`, `_hpack` and `_headers` (the
reference implementation, and the fallback where no compiler was available); `auto` (default):
compiled when it imports. `h2` keeps the connection and stream state machines, flow control
and everything the compiled steps leave to it, for both. The suite runs against both
(scripts/test.sh).
"""
from __future__ import annotations

from typing import Any

from ._headers import Malformed

__all__ = ["available", "resolve"]

try:
    from .._core import _h2codec
except ImportError:  # not built (no compiler at install time): the pure path
    _h2codec = None  # type: ignore[assignment]
else:
    _h2codec.bind(Malformed)


def available() -> bool:
    return _h2codec is not None


def resolve(impl: str) -> Any:
    """The compiled codec module for `http2_impl`, or None for the Python path."""
    if impl == "python":
        return None
    if _h2codec is None and impl == "compiled":
        raise RuntimeError("http2_impl = compiled, but meshway.proxy._core._h2codec is not built "
                           "(reinstall with a C compiler and the Python headers, or set http2_impl = auto)")
    return _h2codec
