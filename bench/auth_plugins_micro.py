"""The Python cost per request of the authentication plugins (issue 11), with plugins_micro's
fake-transport loop: one route, one request that the plugin accepts, per variant.

    .venv/bin/python bench/auth_plugins_micro.py [--only none,key-auth,hmac-auth,oauth2,oauth2-db,session]
    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next \
        --callgrind-out-file=/tmp/cg.out .venv/bin/python bench/auth_plugins_micro.py --only hmac-auth --counted 2000

Variants: `none` (no plugin), `key-auth` (the baseline auth plugin), `hmac-auth` (hmac-sha256 over
`date request-line`), `oauth2` (a bearer token from the config, as on a DB-less node),
`oauth2-db` (a token in the node's database, as a traditional node's: found in the worker's cache
after the first request; the database here is an in-memory SQLite), `session` (an AES-GCM cookie opened, no renewal).
ldap-auth is not here: a request it accepts is a cache hit (a dict lookup and a sha256 of the
credentials), its first one a bind to a directory this loop has no way to reach.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import itertools
import sys
import time
from email.utils import formatdate
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE), str(HERE.parent / "src")]

import hotpath_micro  # noqa: E402

SERVICE_ID = "00000000-0000-4000-8000-0000000000a1"
CONSUMER_ID = "00000000-0000-4000-8000-0000000000c1"
APP_ID = "00000000-0000-4000-8000-0000000000d1"
SECRET = "bench-hmac-secret"
SESSION = {"secret": "bench-session-secret", "cookie_secure": False}
PLUGINS = {"key-auth": {}, "hmac-auth": {}, "oauth2": {"enable_client_credentials": True},
           "oauth2-db": {"enable_client_credentials": True}, "session": SESSION}


def snapshot_for(variant: str) -> dict:
    from meshbench.meshway import BENCH_KEY, declarative, service
    from meshway.model import parse_declarative

    name = "oauth2" if variant == "oauth2-db" else variant
    on_service = [{"name": name, "config": PLUGINS[variant]}] if variant != "none" else []
    svc = {**service("guarded", 9, [{"name": "guarded-root", "paths": ["/"]}], on_service), "id": SERVICE_ID}
    consumer = {"id": CONSUMER_ID, "username": "bench", "keyauth_credentials": [{"key": BENCH_KEY}],
                "hmacauth_credentials": [{"username": "bench", "secret": SECRET}],
                "oauth2_credentials": [{"id": APP_ID, "name": "app", "client_id": "bench", "client_secret": "s"}]}
    doc = declarative([svc], [consumer])
    token = {"credential": APP_ID, "service": SERVICE_ID, "expires_in": 0, "access_token": "bench-token"}
    if variant == "oauth2-db":
        _store_token(token)
    else:
        doc["oauth2_tokens"] = [token]
    return parse_declarative(doc)


def _store_token(token: dict) -> None:
    from meshway.plugins.bundled._oauth2_store import issued_tokens

    row = {**token, "id": "00000000-0000-4000-8000-0000000000e1", "credential": {"id": APP_ID},
           "service": {"id": SERVICE_ID}, "created_at": int(time.time())}
    asyncio.run(issued_tokens().add_token(row, None))


def request_for(variant: str) -> bytes:
    from meshbench.meshway import BENCH_KEY

    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    if variant == "key-auth":
        return head + b"apikey: %s\r\n\r\n" % BENCH_KEY.encode()
    if variant == "hmac-auth":
        date = formatdate(usegmt=True)
        text = f"date: {date}\nGET / HTTP/1.1".encode()
        sig = base64.b64encode(hmac.new(SECRET.encode(), text, hashlib.sha256).digest()).decode()
        auth = f'hmac username="bench", algorithm="hmac-sha256", headers="date request-line", signature="{sig}"'
        return head + f"Date: {date}\r\nAuthorization: {auth}\r\n\r\n".encode()
    if variant in ("oauth2", "oauth2-db"):
        return head + b"Authorization: Bearer bench-token\r\n\r\n"
    if variant == "session":
        from meshway.plugins import validate_plugin_config
        from meshway.plugins.bundled.session import PLUGIN as Session

        class Index:
            def entities(self, collection):
                return []

        plugin = Session(Session.Config(**validate_plugin_config("session", SESSION)), Index(), {})
        now = int(time.time())
        cookie = plugin.seal({"s": "id", "c": CONSUMER_ID, "k": "cred", "g": None, "t": now, "i": now, "u": "bench"})
        return head + b"Cookie: %s\r\n\r\n" % cookie.split(";")[0].encode()
    return head + b"\r\n"


def measure(variant: str, requests: int, counted: int) -> float | None:
    hotpath_micro._snapshot = lambda _kind, _origin: snapshot_for(variant)
    loop, worker, server, client_t, conn, up_t, _ = hotpath_micro.setup("plugins")
    request = request_for(variant)
    conn.requests = -10**9
    worker.pool.put(conn)
    args = (server, client_t, conn, up_t, request)
    for _ in range(2000):
        hotpath_micro.one(*args)
    loop.run_until_complete(asyncio.sleep(0))
    if counted:
        collections.deque(itertools.starmap(hotpath_micro.one, itertools.repeat(args, counted)), maxlen=0)
        return None
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(requests // 5):
            hotpath_micro.one(*args)
        best = min(best, (time.process_time() - t0) / (requests // 5))
        loop.run_until_complete(asyncio.sleep(0))
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="none,key-auth,hmac-auth,oauth2,oauth2-db,session")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--counted", type=int, default=0, help="run N requests of the one variant in starmap (callgrind)")
    args = ap.parse_args()
    for variant in args.only.split(","):
        us = measure(variant, args.requests, args.counted)
        if us is not None:
            print(f"{variant:10s}: {us:.2f} us of Python per request (best of 5)")


if __name__ == "__main__":
    main()
