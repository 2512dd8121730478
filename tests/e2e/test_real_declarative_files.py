"""Real declarative files, unchanged, on real nodes: `meshway config parse`, a DB-less start,
`POST /config`, and requests proxied as the files say.

Supabase's kong.yml (tests/data/declarative/supabase-kong.yml) is the stock gateway file of
Supabase's self-hosting: `_comment` keys, `url` beside `protocol: ws`, key-auth + acl per
service, basic-auth on the dashboard, request-termination, a WebSocket service. Its container
fills the `$VARIABLES` from the environment before Kong reads it; so does `_render`. The
services' hosts (auth, rest, realtime...) are sent to one local origin by the node's
`origins` setting, which answers each request with what it received (a WebSocket: echo).
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from pathlib import Path

import httpx
import websockets
from websockets.datastructures import Headers
from websockets.http11 import Response

from tests.helpers.node import run_cli_for_test

DATA = Path(__file__).resolve().parents[1] / "data" / "declarative"
SUPABASE_ENV = {"SUPABASE_ANON_KEY": "anon-key-for-test", "SUPABASE_SERVICE_KEY": "service-key-for-test",
                "DASHBOARD_USERNAME": "supabase", "DASHBOARD_PASSWORD": "dashboard-password-for-test"}
SUPABASE_HOSTS = ("auth:9999", "rest:3000", "realtime-dev.supabase-realtime:4000", "storage:5000",
                  "functions:9000", "analytics:4000", "meta:8080", "studio:3000")


class EchoOrigin:
    """HTTP answers `{"path", "headers"}` as JSON; a WebSocket upgrade echoes each message."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        assert started.wait(10), "the origin did not start"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(self._serve())
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()
        self.loop.close()  # after stop(): the loop's own descriptors go too

    async def _serve(self):
        return await websockets.serve(self._echo, "127.0.0.1", 0, process_request=self._http)

    async def _echo(self, ws) -> None:
        async for message in ws:
            await ws.send(f"{ws.request.path} {message}")

    def _http(self, connection, request):
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # a WebSocket handshake: let websockets take it
        body = json.dumps({"path": request.path, "headers": {k.lower(): v for k, v in request.headers.raw_items()}})
        return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                            ("Content-Length", str(len(body)))]), body.encode())

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _render(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$([A-Z_]+)", lambda m: env.get(m.group(1), m.group(0)), text)


def _origins(port: int) -> str:
    return ", ".join(f"http://{h}=http://127.0.0.1:{port}" for h in SUPABASE_HOSTS)


def _supabase_file(tmp_path: Path) -> Path:
    path = tmp_path / "kong.yml"
    path.write_text(_render((DATA / "supabase-kong.yml").read_text(), SUPABASE_ENV))
    return path


def _check_supabase_answers(proxy: str) -> None:
    anon, service = {"apikey": SUPABASE_ENV["SUPABASE_ANON_KEY"]}, {"apikey": SUPABASE_ENV["SUPABASE_SERVICE_KEY"]}
    r = httpx.get(proxy + "/rest/v1/todos?select=*")
    assert (r.status_code, r.json()) == (401, {"message": "No API key found in request"})
    r = httpx.get(proxy + "/rest/v1/todos?select=*", headers=anon)
    assert r.status_code == 200 and r.json()["path"] == "/todos?select=*"
    assert "apikey" not in r.json()["headers"]  # hide_credentials: true
    r = httpx.get(proxy + "/graphql/v1", headers=anon)  # (the origin, a WebSocket server, answers GETs)
    assert r.json()["path"] == "/rpc/graphql" and r.json()["headers"]["content-profile"] == "graphql_public"
    r = httpx.get(proxy + "/pg/tables", headers=anon)  # acl: admin only
    assert (r.status_code, r.json()) == (403, {"message": "You cannot consume this service"})
    assert httpx.get(proxy + "/pg/tables", headers=service).json()["path"] == "/tables"
    r = httpx.get(proxy + "/api/mcp")
    assert (r.status_code, r.json()) == (403, {"message": "Access is forbidden."})
    assert httpx.get(proxy + "/project/default").status_code == 401  # the dashboard: basic-auth
    login = base64.b64encode(f"{SUPABASE_ENV['DASHBOARD_USERNAME']}:{SUPABASE_ENV['DASHBOARD_PASSWORD']}".encode())
    r = httpx.get(proxy + "/project/default", headers={"Authorization": "Basic " + login.decode()})
    assert r.status_code == 200 and r.json()["path"] == "/project/default"
    assert asyncio.run(_websocket(proxy.replace("http://", "ws://") + "/realtime/v1/websocket?apikey=x",
                                  anon)) == "/socket/websocket?apikey=x hello"


async def _websocket(url: str, headers: dict) -> str:
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send("hello")
        return await asyncio.wait_for(ws.recv(), 5)


def test_config_parse_accepts_the_real_files(tmp_path):
    for path in (_supabase_file(tmp_path), DATA / "deck-dump-3.10-rate-limiting.yaml", DATA / "kong-config-init.yml"):
        run = run_cli_for_test("config", "parse", str(path))
        assert run.returncode == 0, run.stdout + run.stderr


def test_supabase_file_dbless_start_and_post_config(node_factory, tmp_path):
    origin = EchoOrigin()
    try:
        path = _supabase_file(tmp_path)
        node = node_factory("file", database="off", declarative_config=str(path), origins=_origins(origin.port))
        node.start()
        _check_supabase_answers(node.proxy)

        posted = node_factory("posted", database="off", origins=_origins(origin.port))
        posted.start()
        r = httpx.post(posted.admin + "/config", json={"config": path.read_text()})
        assert r.status_code == 201, r.text
        _check_supabase_answers(posted.proxy)
        services = httpx.get(posted.admin + "/services/realtime-v1-ws").json()
        assert services["protocol"] == "http"  # `url` won over `protocol: ws`, as in Kong
    finally:
        origin.stop()


def test_ws_service_and_route_proxy_websocket(node_factory):
    """Kong Enterprise's `ws`/`wss` protocols: a WebSocket service and route, proxied as today."""
    origin = EchoOrigin()
    try:
        node = node_factory()
        node.start()
        svc = httpx.post(node.admin + "/services", json={"name": "live", "url": f"ws://127.0.0.1:{origin.port}/socket"})
        assert svc.status_code == 201 and svc.json()["protocol"] == "ws", svc.text
        route = httpx.post(node.admin + "/services/live/routes", json={"protocols": ["ws", "wss"], "paths": ["/live"]})
        assert route.status_code == 201 and route.json()["protocols"] == ["ws", "wss"], route.text
        assert asyncio.run(_websocket(f"ws://127.0.0.1:{node.proxy_port}/live/feed", {})) == "/socket/feed hello"
    finally:
        origin.stop()
