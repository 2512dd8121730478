"""The Python cost per request of grpc-web and grpc-gateway: plugins_micro's fake-transport loop
over one route with the plugin and a request it translates.

    .venv/bin/python bench/grpc_plugins_micro.py [--only none,web,webtext,webjson,gateway] [--requests 20000]
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next \
        .venv/bin/python bench/grpc_plugins_micro.py --only gateway --counted 2000

The loop's upstream is the harness's fake HTTP/1.1 origin (its fixed answer), so what is counted
is the plugin's own work on the request (decode, transcode, rewrite) and on the response head and
body, not the HTTP/2 leg every call to a gRPC service takes with or without the plugin.
Variants: `none` (GET /, no plugin), `web` (grpc-web, application/grpc-web+proto, one 12-byte
message), `webtext` (the same, -text: base64), `webjson` (+json, transcoded with the proto),
`gateway` (grpc-gateway, GET /?name=bench&times=3 to a message of the proto).
"""
from __future__ import annotations

import argparse
import base64
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(HERE.parent / "src")]

import hotpath_micro  # noqa: E402
import plugins_micro  # noqa: E402

PROTO = str(HERE / "data" / "bench_greeter.proto")
_HELLO = b"\n\x05bench\x10\x03"  # bench.HelloRequest(name="bench", times=3)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


def _post(ctype: bytes, body: bytes) -> bytes:
    return b"POST /bench.Greeter/SayHello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: %s\r\n" \
           b"Content-Length: %d\r\n\r\n%s" % (ctype, len(body), body)


REQUESTS = {
    "none": b"GET /?name=bench&times=3 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    "web": _post(b"application/grpc-web+proto", _frame(_HELLO)),
    "webtext": _post(b"application/grpc-web-text", base64.b64encode(_frame(_HELLO))),
    "webjson": _post(b"application/grpc-web+json", _frame(b'{"name":"bench","times":3}')),
    "gateway": b"GET /?name=bench&times=3 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
}


def snapshot_for(variant: str) -> dict:
    from meshbench.meshway import declarative, service
    from meshway.model import parse_declarative

    plugins = []
    if variant.startswith("web"):
        plugins = [{"name": "grpc-web", "config": {"proto": PROTO}}]
    elif variant == "gateway":
        plugins = [{"name": "grpc-gateway", "config": {"proto": PROTO}}]
    return parse_declarative(declarative([service("greeter", 9, [{"name": "root", "paths": ["/"]}], plugins)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(REQUESTS))
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--counted", type=int, default=0, help="run N requests of the one variant in starmap (callgrind)")
    args = ap.parse_args()
    for variant in args.only.split(","):
        plugins_micro.snapshot_for = lambda _v, variant=variant: snapshot_for(variant)
        setup = hotpath_micro.setup
        hotpath_micro.setup = lambda kind, *a, variant=variant: (*setup(kind, *a)[:-1], REQUESTS[variant])
        try:
            us = plugins_micro.measure(variant, args.requests, args.counted)
        finally:
            hotpath_micro.setup = setup
        if us is not None:
            print(f"{variant:8s}: {us:.2f} us of Python per request (best of 5)")


if __name__ == "__main__":
    main()
