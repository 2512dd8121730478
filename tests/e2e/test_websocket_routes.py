"""Kong Enterprise's `ws`/`wss` route protocols through a real node, with a real WebSocket client.

A ws/wss route carries WebSocket handshakes only (anything else: 400 `Cannot complete WebSocket
handshake: ...`), and plugins run by the request's protocol: `ws` on a plain listener, `wss` on TLS.
A plugin naming ws/wss runs there and not on http routes; one naming neither (every stored default)
runs on WebSocket routes as for http/https. Each scenario runs on the compiled and the pure-Python
HTTP paths (`http1_impl`, `http2_impl`)."""
from __future__ import annotations

import asyncio
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import websockets
import yaml

SEEN = ("x-ws-plugin", "x-wss-plugin", "x-http-plugin", "x-consumer-username")


class _HeadersOrigin(BaseHTTPRequestHandler):
    """A plain HTTP service answering with the request headers the tests look for."""

    def do_GET(self):  # noqa: N802
        body = json.dumps({h: self.headers.get(h) for h in SEEN}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


async def _tell_headers(ws):
    """The WebSocket service: first message is the handshake's headers the tests look for, then echo."""
    await ws.send(json.dumps({h: ws.request.headers.get(h) for h in SEEN}))
    async for message in ws:
        await ws.send(f"echo {message}")


def _transformer(header: str, protocols: list[str]) -> dict:
    return {"name": "request-transformer", "protocols": protocols, "config": {"add": {"headers": [f"{header}:ran"]}}}


def _correlation(header: str, protocols: list[str]) -> dict:
    """Another plugin name (a route's instance of a name hides the global one): a header with an id."""
    return {"name": "correlation-id", "protocols": protocols, "config": {"header_name": header}}


def _config(ws_port: int, http_port: int) -> dict:
    return {
        "_format_version": "3.0",
        "services": [
            {"name": "echo", "url": f"ws://127.0.0.1:{ws_port}", "routes": [
                {"name": "ws", "paths": ["/ws"], "protocols": ["ws", "wss"],
                 "plugins": [_correlation("x-wss-plugin", ["wss"])]},
                {"name": "wss-only", "paths": ["/secure"], "protocols": ["wss"]},
                {"name": "keyed", "paths": ["/keyed"], "protocols": ["ws", "wss"],
                 "plugins": [{"name": "key-auth"}]},  # stored with the HTTP defaults
                {"name": "keyed-tls", "paths": ["/keyed-tls"], "protocols": ["ws", "wss"],
                 "plugins": [{"name": "key-auth", "protocols": ["wss"]}]},
            ]},
            {"name": "plain", "url": f"http://127.0.0.1:{http_port}", "routes": [
                {"name": "http", "paths": ["/http"], "protocols": ["http", "https"],
                 "plugins": [_correlation("x-http-plugin", ["http", "https"])]},
            ]},
        ],
        "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]}],
        "plugins": [
            _transformer("x-ws-plugin", ["ws"]),  # global: WebSocket over plain connections only
        ],
    }


@pytest.fixture
def http_origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HeadersOrigin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE


async def _first(url: str, **kw) -> dict:
    """Connect through the node; the service's first message: the headers its handshake carried."""
    async with websockets.connect(url, ssl=_INSECURE if url.startswith("wss:") else None, **kw) as ws:
        seen = json.loads(await ws.recv())
        await ws.send("hi")
        assert await ws.recv() == "echo hi"
        return seen


async def _refused(url: str, **kw) -> int:
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with websockets.connect(url, ssl=_INSECURE if url.startswith("wss:") else None, **kw):
            pass
    return caught.value.response.status_code


@pytest.mark.parametrize("impl", ["compiled", "python"])
def test_ws_and_wss_routes_run_plugins_by_the_requests_protocol(node_factory, http_origin, tmp_path, impl):
    async def scenario():
        async with websockets.serve(_tell_headers, "127.0.0.1", 0) as server:
            ws_port = server.sockets[0].getsockname()[1]
            path = tmp_path / "kong.yml"
            path.write_text(yaml.safe_dump(_config(ws_port, http_origin)))
            node = node_factory(database="off", declarative_config=str(path), http1_impl=impl, http2_impl=impl)
            await asyncio.to_thread(node.start)
            ws, wss = f"ws://127.0.0.1:{node.proxy_port}", f"wss://127.0.0.1:{node.proxy_ssl_port}"

            plain = await _first(ws + "/ws")  # protocol ws: the [ws] plugin, not the [wss] one
            assert plain["x-ws-plugin"] == "ran" and plain["x-wss-plugin"] is None
            assert plain["x-http-plugin"] is None
            secure = await _first(wss + "/ws")  # protocol wss
            assert secure["x-wss-plugin"] and secure["x-ws-plugin"] is None
            assert (await _first(wss + "/secure"))["x-ws-plugin"] is None
            # a wss-only route refuses plain connections as an https-only route does (426)
            assert await _refused(ws + "/secure") == 426

            # key-auth with the HTTP defaults guards ws and wss; one on [wss] guards wss only
            assert await _refused(ws + "/keyed") == 401
            assert await _refused(wss + "/keyed") == 401
            for url in (ws + "/keyed", wss + "/keyed", wss + "/keyed-tls"):
                seen = await _first(url, additional_headers={"apikey": "alice-key"})
                assert seen["x-consumer-username"] == "alice", url
            assert (await _first(ws + "/keyed-tls"))["x-consumer-username"] is None
            assert await _refused(wss + "/keyed-tls") == 401

            async with httpx.AsyncClient(verify=False) as client:
                # an http route: the [ws] plugin does not run there, the http one does
                seen = (await client.get(node.proxy + "/http")).json()
                assert seen["x-http-plugin"] and seen["x-ws-plugin"] is None and seen["x-wss-plugin"] is None
                # a ws route takes WebSocket handshakes only (Kong Enterprise's answer)
                r = await client.get(node.proxy + "/ws")
                assert r.status_code == 400, r.text
                assert r.json() == {"message": "Cannot complete WebSocket handshake: invalid/missing 'Connection' header"}
                r = await client.post(node.proxy + "/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
                assert r.json() == {"message": "Cannot complete WebSocket handshake: invalid request method"}
                r = await client.get(node.proxy + "/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                                  "Sec-WebSocket-Version": "8"})
                assert r.json() == {"message": "Cannot complete WebSocket handshake: invalid/missing "
                                               "'Sec-WebSocket-Version' header"}
            async with httpx.AsyncClient(verify=False, http2=True) as h2:
                r = await h2.get(node.proxy_ssl + "/ws")  # HTTP/2 carries no WebSocket handshake
                assert r.http_version == "HTTP/2" and r.status_code == 400
            # the node still serves WebSockets after refusing those
            assert (await _first(ws + "/ws"))["x-ws-plugin"] == "ran"

            # a config without any plugin: the ws route still takes handshakes only
            bare = _config(ws_port, http_origin)
            bare["plugins"] = []
            for service in bare["services"]:
                for route in service["routes"]:
                    route.pop("plugins", None)
            async with httpx.AsyncClient() as client:
                r = await client.post(node.admin + "/config", json=bare)
                assert r.status_code == 201, r.text
                assert (await _first(ws + "/ws"))["x-ws-plugin"] is None
                r = await client.get(node.proxy + "/ws")
                assert r.status_code == 400 and "WebSocket handshake" in r.json()["message"]
                assert (await client.get(node.proxy + "/http")).status_code == 200

    asyncio.run(scenario())
