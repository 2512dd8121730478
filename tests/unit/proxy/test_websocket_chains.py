"""Kong Enterprise's ws/wss routes: the handshake check, and which plugin instances a WebSocket
route's chain runs for each protocol (resolved when the chain is built)."""
from __future__ import annotations

import pytest

from meshway.plugins import Plugin, PluginConfig
from meshway.proxy import compile_plugins
from meshway.proxy._plugins import HANDSHAKE
from meshway.proxy._websocket import handshake_error


class P(Plugin):
    name = "p"
    priority = 10
    Config = PluginConfig

    def access(self, ctx):
        pass


def _plugins(protocols):
    plugin = {"id": "1", "name": "p", "config": {}, "enabled": True, "protocols": protocols,
              "route": None, "service": None, "consumer": None}
    return compile_plugins({"plugins": [plugin]}, {"p": P})


def _chain(protocols, websocket):
    return _plugins(protocols).chain_for("R", "S", websocket)


@pytest.mark.parametrize("protocols, on_ws_route, on_http_route", [
    (["ws"], {"http"}, set()),  # the codec's scheme on a ws route is http for ws, https for wss
    (["wss"], {"https"}, set()),
    (["ws", "wss"], {"http", "https"}, set()),
    (["http", "https", "wss"], {"https"}, {"http", "https"}),  # naming ws/wss: literal
    (["grpc", "grpcs", "http", "https"], {"http", "https"}, {"http", "https"}),  # HTTP defaults: as http
    (["https"], {"https"}, {"https"}),
    (["grpc"], set(), set()),
])
def test_websocket_routes_see_plugins_by_their_ws_protocols(protocols, on_ws_route, on_http_route):
    for websocket, expected in ((True, on_ws_route), (False, on_http_route)):
        chain = _chain(protocols, websocket)
        runs = {scheme for scheme in ("http", "https") if chain.resolve("access", scheme)}
        assert runs == expected, (protocols, websocket)


def test_a_websocket_chain_has_the_handshake_phase_and_shares_the_plugin():
    pset = _plugins(None)
    ws, http = pset.chain_for("R", "S", True), pset.chain_for("R", "S", False)
    assert HANDSHAKE in ws.phases and HANDSHAKE not in http.phases
    assert ws.links[0].default.plugin is http.links[0].default.plugin  # one plugin object (its state)


HANDSHAKE_HEADERS = {"connection": "keep-alive, Upgrade", "upgrade": "websocket",
                     "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13"}


@pytest.mark.parametrize("method, drop, change, why", [
    ("GET", None, {}, None),
    ("POST", None, {}, "invalid request method"),
    ("GET", "connection", {}, "invalid/missing 'Connection' header"),
    ("GET", None, {"upgrade": "h2c"}, "invalid/missing 'Upgrade' header"),
    ("GET", "sec-websocket-key", {}, "invalid/missing 'Sec-WebSocket-Key' header"),
    ("GET", None, {"sec-websocket-version": "8"}, "invalid/missing 'Sec-WebSocket-Version' header"),
])
def test_handshake_check_in_kong_enterprises_order(method, drop, change, why):
    headers = {k: v for k, v in {**HANDSHAKE_HEADERS, **change}.items() if k != drop}
    assert handshake_error(method, headers.get) == why
