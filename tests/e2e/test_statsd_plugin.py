"""statsd end to end: a real node (2 workers) sends Kong's metric names to a UDP socket this test
reads and parses (plain names with a consumer, dogstatsd tags in packed datagrams, status
ranges); bad configs are 400s naming the field; a route without the plugin sends nothing."""
from __future__ import annotations

import re
import socket
import threading
import time

import httpx

from tests.e2e.test_socket_log_plugins import OriginForTest

LINE = re.compile(r"^(?P<name>[^:|]+?)(?P<tags>[,#\[].*?)?:(?P<value>[^|]+)\|(?P<kind>c|ms|s|g|h|m)(\|@[\d.]+)?(\|#.*)?$")


class StatsdReceiverForTest:
    """A UDP socket; every datagram split into StatsD lines, each checked against the format."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.datagrams: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            self.datagrams.append(self.sock.recv(65536).decode())

    def lines(self) -> list[str]:
        return [line for d in self.datagrams for line in d.split("\n")]

    def wait_for(self, count: int, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything else that was going to arrive
        lines = self.lines()
        for line in lines:
            assert LINE.match(line), line
        return lines


def _setup(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    origin = OriginForTest()
    assert admin.post("/services", json={"name": "api.v1", "url": origin.url}).status_code == 201
    routes = {}
    for name in ("users", "tagged", "quiet"):
        r = admin.post("/services/api.v1/routes", json={"name": name, "paths": [f"/{name}"]})
        assert r.status_code == 201
        routes[name] = r.json()["id"]
    assert admin.post("/consumers", json={"username": "alice", "custom_id": "c-1"}).status_code == 201
    assert admin.post("/consumers/alice/key-auth", json={"key": "k1"}).status_code == 201
    assert admin.post("/routes/users/plugins", json={"name": "key-auth"}).status_code == 201
    return node, admin, routes


def test_kongs_metric_names_for_a_consumer(node_factory):
    node, admin, routes = _setup(node_factory)
    receiver = StatsdReceiverForTest()
    r = admin.post("/routes/users/plugins", json={"name": "statsd", "config": {"host": "127.0.0.1", "port": receiver.port}})
    assert r.status_code == 201, r.text
    assert "statsd" in admin.get("/").json()["plugins"]["available_on_server"]
    time.sleep(1.5)
    assert httpx.get(f"{node.proxy}/quiet").status_code == 200
    sent = httpx.get(f"{node.proxy}/users", headers={"apikey": "k1"})
    assert sent.status_code == 200
    lines = receiver.wait_for(12)
    parsed = {LINE.match(line)["name"]: (LINE.match(line)["value"], LINE.match(line)["kind"]) for line in lines}
    scope = "kong.service.api_v1"  # service name with dots as underscores
    assert set(parsed) == {f"{scope}.request.count", f"{scope}.latency", f"{scope}.request.size",
                           f"{scope}.status.200", f"{scope}.response.size", f"{scope}.user.uniques",
                           f"{scope}.user.c-1.request.count", f"{scope}.upstream_latency", f"{scope}.kong_latency",
                           f"{scope}.user.c-1.status.200", f"{scope}.workspace.default.status.200",
                           f"kong.route.{routes['users']}.user.c-1.status.200"}, lines
    assert len(lines) == 12  # nothing from /quiet
    assert parsed[f"{scope}.request.count"] == ("1", "c") and parsed[f"{scope}.user.uniques"] == ("c-1", "s")
    assert parsed[f"{scope}.latency"][1] == "ms" and int(parsed[f"{scope}.latency"][0]) >= 0
    # the sizes are Kong's log serializer's: the bytes on the wire, heads included (nginx's
    # $request_length and $bytes_sent), as httpx wrote and read them
    request_bytes = len(b"GET /users HTTP/1.1\r\n") + sum(len(k) + len(v) + 4 for k, v in sent.request.headers.raw) + 2
    response_bytes = (len(b"HTTP/1.1 200 %s\r\n" % sent.reason_phrase.encode())
                      + sum(len(k) + len(v) + 4 for k, v in sent.headers.raw) + 2 + len(sent.content))
    assert int(parsed[f"{scope}.request.size"][0]) == request_bytes
    assert int(parsed[f"{scope}.response.size"][0]) == response_bytes


def test_dogstatsd_tags_packed_datagrams_and_status_ranges(node_factory):
    node, admin, routes = _setup(node_factory)
    receiver = StatsdReceiverForTest()
    config = {"host": "127.0.0.1", "port": receiver.port, "prefix": "edge", "tag_style": "dogstatsd",
              "udp_packet_size": 1000, "allow_status_codes": ["200-299"],
              "metrics": [{"name": "request_count", "stat_type": "counter", "sample_rate": 1},
                          {"name": "latency", "stat_type": "timer"},
                          {"name": "status_count", "stat_type": "counter", "sample_rate": 1}]}
    r = admin.post("/routes/tagged/plugins", json={"name": "statsd", "config": config})
    assert r.status_code == 201, r.text
    time.sleep(1.5)
    with httpx.Client() as client:
        assert client.get(f"{node.proxy}/tagged/missing").status_code == 404  # outside 200-299: no metrics
        assert client.get(f"{node.proxy}/tagged").status_code == 200
    lines = receiver.wait_for(2)
    assert len(receiver.datagrams) == 1 and len(lines) == 2, receiver.datagrams  # packed into one datagram
    latency, count = sorted(lines)
    name, tags = count.split("|#")
    assert name == "edge.request.count:1|c"  # status_count is skipped in tag mode, as in Kong
    tags = dict(t.split(":", 1) for t in tags.split(","))
    assert tags["service"] == "api.v1" and tags["route"] == "tagged" and tags["status"] == "200"
    assert tags["workspace"] == "default" and tags["node"]
    assert latency.startswith("edge.latency:") and "|ms|#" in latency


def test_bad_configs_are_400s_naming_the_field(node_factory):
    node, admin, _ = _setup(node_factory)
    for config, field in [({"port": 70000}, "port"), ({"allow_status_codes": ["2xx"]}, "allow_status_codes"),
                          ({"metrics": [{"name": "latency", "stat_type": "counter"}]}, "metrics"),
                          ({"metrics": [{"name": "nope", "stat_type": "timer"}]}, "metrics"),
                          ({"tag_style": "graphite"}, "tag_style")]:
        r = admin.post("/plugins", json={"name": "statsd", "config": config})
        assert r.status_code == 400, r.text
        assert field in r.json()["fields"]["config"], r.text
