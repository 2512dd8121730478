"""The data plane: compiled runtime, HTTP router, plugin engine, HTTP/1.1 proxy, worker process.

For the node: `compile_runtime(snapshot, settings, hash=...)` (pure; the worker calls it in a
thread), and `python -m meshway.proxy.worker` (see `meshway.proxy.worker`).
For other codecs (HTTP/2, gRPC): the protocol-independent pipeline `decide()`,
`upstream_target()`, `upstream_host()`, the header policy functions, `Context` and the phase
runners `run_phase` / `run_body` / `run_log` / `start_log`, error bodies `error_body()`; install an h2
connection handler with `set_h2_handoff()`.
"""
from ._context import Context, Exit
from ._engine import run_body, run_log, run_phase, start_log
from ._errors import MESSAGES, error_body, render_response
from ._headers import Forwarded, downstream_response_headers, upstream_request_headers
from ._paths import upstream_path
from ._pipeline import Decision, decide, upstream_host, upstream_target
from ._plugins import Chain, PluginSet, compile_plugins
from ._router import RouteMatch, Router, compile_router, normalize_path
from ._runtime import RouteTarget, Runtime, ServiceTarget, check_config, compile_runtime, empty_runtime
from ._state import Worker, set_h2_handoff

__all__ = [
    "Chain", "Context", "Decision", "Exit", "Forwarded", "MESSAGES", "PluginSet", "RouteMatch", "RouteTarget",
    "Router", "Runtime", "ServiceTarget", "Worker", "check_config", "compile_plugins", "compile_router", "compile_runtime",
    "decide", "downstream_response_headers", "empty_runtime", "error_body", "normalize_path", "render_response",
    "run_body", "run_log", "run_phase", "set_h2_handoff", "start_log", "upstream_host", "upstream_path",
    "upstream_request_headers", "upstream_target",
]
