"""Through a real node: HTTP/2 over TLS (ALPN) on the default `ssl http2` listener, and WebSocket."""
import asyncio

import httpx
import websockets

from tests.e2e.test_node_lifecycle import _declarative, _origin_for_test


def test_http2_over_tls_via_node(node_factory, tmp_path):
    origin = _origin_for_test()
    decl = tmp_path / "m.yml"
    decl.write_text(_declarative(origin.port, "/h2"))
    node = node_factory(database="off", declarative_config=str(decl))
    node.start()
    try:
        with httpx.Client(http2=True, verify=False) as client:
            r = client.get(node.proxy_ssl + "/h2/x")
        assert r.http_version == "HTTP/2" and r.text == "origin saw /x"
        assert r.headers["via"].endswith("meshway/0.1.0")
    finally:
        origin.stop()


def test_websocket_via_node(node_factory, tmp_path):
    async def echo(ws):
        async for message in ws:
            await ws.send(f"echo {message}")

    async def scenario():
        async with websockets.serve(echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            decl = tmp_path / "ws.yml"
            decl.write_text(_declarative(port, "/ws"))
            node = node_factory(database="off", declarative_config=str(decl))
            await asyncio.to_thread(node.start)
            async with websockets.connect(f"ws://127.0.0.1:{node.proxy_port}/ws") as ws:
                await ws.send("hello")
                assert await ws.recv() == "echo hello"

    asyncio.run(scenario())
