"""The data plane: compiled runtime, HTTP router, plugin engine, HTTP/1.1 proxy, worker process.

For the node: `compile_runtime(snapshot, settings, hash=...)` (pure; the worker calls it in a
thread), and `python -m meshway.proxy.worker` (see `meshway.proxy.worker`).
For other codecs (HTTP/2, gRPC): the protocol-independent pipeline `decide()`,
`upstream_target()`, `upstream_host()`, the header policy functions, `Context` and the phase
runners `run_phase` / `run_body` / `run_log` / `start_log`, error bodies `error_body()`; install an h2
connection handler with `set_h2_handoff()`.
"""
from typing import TYPE_CHECKING

from meshway._lazy import lazy_attributes

if TYPE_CHECKING:
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


# Loaded on first use: the master binds its listeners with `meshway.proxy.netutil` before it
# spawns its workers, and importing the whole data plane there (~80M instructions) would delay
# the workers' start for nothing; a worker imports these modules itself.
__getattr__ = lazy_attributes(__name__, globals(), {
    "Context": "._context", "Exit": "._context", "run_body": "._engine", "run_log": "._engine",
    "run_phase": "._engine", "start_log": "._engine", "MESSAGES": "._errors", "error_body": "._errors",
    "render_response": "._errors", "Forwarded": "._headers", "downstream_response_headers": "._headers",
    "upstream_request_headers": "._headers", "upstream_path": "._paths", "Decision": "._pipeline",
    "decide": "._pipeline", "upstream_host": "._pipeline", "upstream_target": "._pipeline", "Chain": "._plugins",
    "PluginSet": "._plugins", "compile_plugins": "._plugins", "RouteMatch": "._router", "Router": "._router",
    "compile_router": "._router", "normalize_path": "._router", "RouteTarget": "._runtime", "Runtime": "._runtime",
    "ServiceTarget": "._runtime", "check_config": "._runtime", "compile_runtime": "._runtime",
    "empty_runtime": "._runtime", "Worker": "._state", "set_h2_handoff": "._state"
})
