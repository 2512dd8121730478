"""A stream proxy in one small process, for tests and for trying routes by hand.

    python -m meshway.proxy.stream.devserver --listen "127.0.0.3:9000 transparent" \\
        --snapshot snapshot.json [--proxy-bind 127.0.0.3] [--preread-timeout 0.3]

The snapshot file is a normalized snapshot (JSON; YAML if PyYAML reads it). Prints
`ready <host:port> ...` on stdout once every listener accepts; logs one line per connection on
stderr; exits cleanly on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from meshway.settings import load_settings, parse_listen

from .. import netutil
from ._compile import compile_stream_runtime
from ._listener import start_stream_listener


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m meshway.proxy.stream.devserver", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="stream_listen syntax, e.g. '127.0.0.1:9000 transparent'")
    parser.add_argument("--snapshot", required=True, help="normalized snapshot file (JSON or YAML)")
    parser.add_argument("--proxy-bind", default="", help="source IP of upstream connections")
    parser.add_argument("--preread-timeout", default="0.3", help="seconds to wait for a ClientHello")
    parser.add_argument("--origins", default="", help="origins setting, scheme://h:p=scheme://h:p,...")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _read_snapshot(path: str) -> dict:
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import yaml

        return yaml.safe_load(text)


async def _serve(args: argparse.Namespace) -> None:
    settings = load_settings(env={}, overrides={
        "stream_listen": args.listen, "proxy_bind": args.proxy_bind,
        "stream_preread_timeout": args.preread_timeout, "origins": args.origins,
    })
    runtime = compile_stream_runtime(_read_snapshot(args.snapshot), settings)
    servers = []
    for spec in parse_listen("stream_listen", args.listen):
        sock = netutil.prepare_listener_socket(spec)
        servers.append(await start_stream_listener(sock, spec, lambda: runtime, settings))
    addresses = [f"{s.sockets[0].getsockname()[0]}:{s.sockets[0].getsockname()[1]}" for s in servers]
    print("ready", *addresses, flush=True)
    await _wait_for_signal()
    for server in servers:
        server.close()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("meshway.access").propagate = False  # the same line is on meshway.stream
    try:
        import uvloop

        uvloop.run(_serve(args))
    except (ValueError, OSError) as e:
        print(f"devserver: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
