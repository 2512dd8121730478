"""The plugin engine in a real worker: phases, priorities, scoping, exits, failures, log fields.

Test plugins are a module written to a temp dir and registered through an entry-point
dist-info on the worker's PYTHONPATH (the same path a pip-installed plugin takes).
"""
from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, install_plugins_for_test, plugin_for_test, route_for_test, service_for_test,
    snapshot_for_test,
)

PLUGINS = '''
import asyncio, json
from meshway.plugins import Plugin, PluginConfig

class TagConfig(PluginConfig):
    value: str = "x"

class Tag(Plugin):
    name = "t-tag"; priority = 500; Config = TagConfig
    def access(self, ctx):
        ctx.set_header("X-Tag", self.config.value)

class Auth(Plugin):
    name = "t-auth"; priority = 1000
    def __init__(self, config, index, entity):
        super().__init__(config, index, entity)
        self.by_name = {c["username"]: c for c in index.entities("consumers")}
    def access(self, ctx):
        user = ctx.get_header("x-user")
        consumer = self.by_name.get(user)
        if consumer is None:
            ctx.exit(401, {"message": "Unauthorized"})
            return
        ctx.authenticate(consumer, {"id": "cred-1", "username": user})

class Boom(Plugin):
    name = "t-boom"; priority = 900
    def access(self, ctx):
        raise RuntimeError("kaboom")

class Later(Plugin):
    name = "t-async"; priority = 400
    async def access(self, ctx):
        await asyncio.sleep(0.01)
        ctx.set_header("X-Async", "done")
        ctx.set_response_header("X-Async-Resp", "yes")

class Upper(Plugin):
    name = "t-upper"; priority = 300
    def response(self, ctx):
        ctx.set_response_header("X-Status-Seen", str(ctx.response_status))
    def body(self, ctx, chunk):
        return chunk.upper()

class LogConfig(PluginConfig):
    path: str

class Log(Plugin):
    name = "t-log"; priority = 1; Config = LogConfig
    def log(self, ctx):
        with open(self.config.path, "a") as f:
            f.write(json.dumps(ctx.log_fields()) + "\\n")

class Capture(Plugin):
    name = "t-capture"; priority = 200
    def access(self, ctx):
        ctx.set_header("X-Captured", ctx.uri_captures.get("uid", "-"))
        ctx.set_path("/rewritten/" + ctx.uri_captures.get("uid", ""))
'''
NAMES = {"t-tag": "Tag", "t-auth": "Auth", "t-boom": "Boom", "t-async": "Later", "t-upper": "Upper", "t-log": "Log",
         "t-capture": "Capture"}


def install_for_test(tmp) -> list[str]:
    return install_plugins_for_test(tmp, "meshway_test_plugins", PLUGINS, NAMES)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugins")
    origin = Origin()
    svc = service_for_test(port=origin.port)
    consumer = {"id": str(uuid.uuid4()), "username": "alice", "custom_id": "c-1", "tags": None}
    r_auth = route_for_test(svc, paths=["/auth"])
    r_route = route_for_test(svc, paths=["/route"])
    r_boom = route_for_test(svc, paths=["/boom"])
    r_async = route_for_test(svc, paths=["/async"])
    r_upper = route_for_test(svc, paths=["/upper"])
    r_cap = route_for_test(svc, paths=["~/users/(?P<uid>\\d+)"])
    r_plain = route_for_test(svc, paths=["/plain"])
    log_path = tmp / "log.jsonl"
    plugins = [
        plugin_for_test("t-tag", {"value": "global"}),
        plugin_for_test("t-tag", {"value": "route"}, route=r_route),
        plugin_for_test("t-tag", {"value": "consumer"}, consumer=consumer),
        plugin_for_test("t-auth", route=r_auth),
        plugin_for_test("t-boom", route=r_boom),
        plugin_for_test("t-async", route=r_async),
        plugin_for_test("t-upper", route=r_upper),
        plugin_for_test("t-capture", route=r_cap),
        plugin_for_test("t-log", {"path": str(log_path)}, route=r_plain),
    ]
    snap = snapshot_for_test(services=[svc], routes=[r_auth, r_route, r_boom, r_async, r_upper, r_cap, r_plain],
                             consumers=[consumer], plugins=plugins)
    worker = WorkerProcess(snap, tmp / "w", extra_path=install_for_test(tmp))
    yield worker, origin, log_path
    worker.stop()
    origin.close()


def _upstream_headers(r: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in r.json()["headers"]}


def test_global_plugin_applies_and_route_instance_wins(setup):
    worker, _, _ = setup
    assert _upstream_headers(httpx.get(worker.url + "/plain"))["x-tag"] == "global"
    assert _upstream_headers(httpx.get(worker.url + "/route"))["x-tag"] == "route"


def test_consumer_instance_selected_after_authentication(setup):
    worker, _, _ = setup
    r = httpx.get(worker.url + "/auth", headers={"X-User": "alice", "X-Consumer-ID": "forged"})
    h = _upstream_headers(r)
    assert h["x-tag"] == "consumer"
    assert h["x-consumer-username"] == "alice"
    assert h["x-consumer-custom-id"] == "c-1"
    assert h["x-credential-identifier"] == "cred-1"  # the credential id unless the plugin names one
    assert r.json()["headers"].count(["X-Consumer-ID", "forged"]) == 0


def test_exit_stops_the_chain(setup):
    worker, origin, _ = setup
    before = len(origin.requests)
    r = httpx.get(worker.url + "/auth")
    assert r.status_code == 401 and r.json() == {"message": "Unauthorized"}
    assert len(origin.requests) == before


def test_plugin_error_is_500_with_request_id_and_worker_lives(setup):
    worker, _, _ = setup
    r = httpx.get(worker.url + "/boom")
    assert r.status_code == 500
    body = r.json()
    assert body["message"] == "An unexpected error occurred" and len(body["request_id"]) == 32
    assert httpx.get(worker.url + "/plain").status_code == 200
    deadline = time.monotonic() + 2
    while "t-boom" not in worker.error_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "plugin t-boom failed in access phase" in worker.error_log()


def test_async_access_phase(setup):
    worker, _, _ = setup
    r = httpx.get(worker.url + "/async")
    assert _upstream_headers(r)["x-async"] == "done"
    assert r.headers["x-async-resp"] == "yes"


def test_response_and_body_phases(setup):
    worker, _, _ = setup
    r = httpx.get(worker.url + "/upper")
    assert r.headers["x-status-seen"] == "200"
    assert '"METHOD": "GET"' in r.text


def test_uri_captures_and_set_path(setup):
    worker, _, _ = setup
    r = httpx.get(worker.url + "/users/42")
    assert _upstream_headers(r)["x-captured"] == "42"
    assert r.json()["url"] == "/rewritten/42"


def test_log_phase_gets_kong_shaped_fields(setup):
    worker, _, log_path = setup
    httpx.get(worker.url + "/plain?a=1")
    deadline = time.monotonic() + 3
    while not (log_path.exists() and "a=1" in log_path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    entry = next(json.loads(line) for line in log_path.read_text().splitlines() if "a=1" in line)
    assert entry["request"]["method"] == "GET" and entry["request"]["querystring"] == {"a": "1"}
    assert entry["response"]["status"] == 200
    assert entry["route"]["paths"] == ["/plain"]
    assert set(entry["latencies"]) == {"kong", "proxy", "request"}
    assert entry["upstream_uri"] == "/?a=1"
