"""bot-detection end to end through a real node (2 workers): known bots and `deny` matches get
Kong's 403, `allow` wins over the built-in rules, browsers and requests without a User-Agent pass,
two User-Agent headers are a 400, routes without the plugin let bots through."""
from __future__ import annotations

import socket

import httpx

from tests.e2e.test_socket_log_plugins import OriginForTest

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def _raw_get(node, path: str, headers: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", node.proxy_port), timeout=10) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_bots_and_denied_agents_are_refused(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    origin = OriginForTest()
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("guarded", "open"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    bad = admin.post("/plugins", json={"name": "bot-detection", "config": {"deny": ["(unclosed"]}})
    assert bad.status_code == 400 and "deny" in bad.json()["fields"]["config"], bad.text
    r = admin.post("/routes/guarded/plugins", json={"name": "bot-detection",
                                                    "config": {"deny": ["evil-client"], "allow": ["^Scrapy"]}})
    assert r.status_code == 201, r.text
    assert r.json()["config"] == {"allow": ["^Scrapy"], "deny": ["evil-client"]}
    assert "bot-detection" in admin.get("/").json()["plugins"]["available_on_server"]
    url = f"{node.proxy}/guarded"
    with httpx.Client() as client:
        assert client.get(url, headers={"user-agent": CHROME}).status_code == 200
        refused = client.get(url, headers={"user-agent": GOOGLEBOT})
        assert refused.status_code == 403 and refused.json() == {"message": "Forbidden"}
        assert client.get(url, headers={"user-agent": "bingbot/2.0"}).status_code == 403
        assert client.get(url, headers={"user-agent": "evil-client/1.0"}).status_code == 403  # deny
        assert client.get(url, headers={"user-agent": "Scrapy/2.11 (+https://scrapy.org)"}).status_code == 200  # allow
        assert client.get(f"{node.proxy}/open", headers={"user-agent": GOOGLEBOT}).status_code == 200
    assert _raw_get(node, "/guarded", b"").startswith(b"HTTP/1.1 200")  # no User-Agent at all
    twice = _raw_get(node, "/guarded", f"User-Agent: {CHROME}\r\nUser-Agent: {CHROME}\r\n".encode())
    assert twice.startswith(b"HTTP/1.1 400") and b"Only one User-Agent header allowed" in twice
