"""http-log against a real HTTP receiver: entries, batches, retries, a full queue drops."""
from __future__ import annotations

import asyncio
import base64
import time

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test
from receiver_for_test import ReceiverForTest

from meshway.plugins.bundled import http_log
from meshway.plugins.bundled.http_log import PLUGIN as HttpLog


@pytest.fixture
def receiver():
    http_log._QUEUES.clear()
    r = ReceiverForTest()
    yield r
    r.close()
    http_log._QUEUES.clear()


def entry_ctx(n):
    ctx = CtxForTest(path=f"/req/{n}")
    ctx.fields = {"request": {"uri": f"/req/{n}"}, "response": {"status": 200}}
    return ctx


async def log_requests(plugin, n, settle=0.0):
    for i in range(n):
        plugin.log(entry_ctx(i))
    # let the background sender finish before the loop closes
    deadline = time.monotonic() + 5
    while plugin.queue.entries or (plugin.queue.task and not plugin.queue.task.done()):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(settle)


def test_single_entries_are_json_objects_with_headers_and_basic_auth(receiver):
    url = f"http://user:pw@127.0.0.1:{receiver.port}/logs"
    p = make_plugin_for_test(HttpLog, {"http_endpoint": url, "headers": {"X-Src": "gw"}})
    asyncio.run(log_requests(p, 2))
    got = receiver.wait_for(2)
    assert [g["body"]["request"]["uri"] for g in got] == ["/req/0", "/req/1"]
    assert got[0]["path"] == "/logs" and got[0]["method"] == "POST"
    assert got[0]["headers"]["Content-Type"] == "application/json" and got[0]["headers"]["X-Src"] == "gw"
    assert got[0]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()


def test_batches_are_json_arrays(receiver):
    p = make_plugin_for_test(HttpLog, {"http_endpoint": receiver.url, "method": "PUT",
                                       "queue": {"max_batch_size": 3, "max_coalescing_delay": 0.05}})
    asyncio.run(log_requests(p, 7))
    got = receiver.wait_for(3)
    assert [len(g["body"]) for g in got] == [3, 3, 1]
    assert got[0]["method"] == "PUT"


def test_failed_batch_is_retried(receiver):
    receiver.fail_next = 2
    p = make_plugin_for_test(HttpLog, {"http_endpoint": receiver.url, "queue": {"initial_retry_delay": 0.01}})
    asyncio.run(log_requests(p, 1))
    assert [g["body"]["request"]["uri"] for g in receiver.wait_for(1)] == ["/req/0"]


def test_full_queue_drops_without_blocking(receiver, caplog):
    p = make_plugin_for_test(HttpLog, {"http_endpoint": receiver.url,
                                       "queue": {"max_entries": 2, "max_batch_size": 10, "max_coalescing_delay": 0.05}})

    async def scenario():
        started = time.monotonic()
        for i in range(5):
            p.log(entry_ctx(i))
        elapsed = time.monotonic() - started
        await log_requests(p, 0)
        return elapsed

    assert asyncio.run(scenario()) < 0.05
    got = receiver.wait_for(1)
    assert [e["request"]["uri"] for e in got[0]["body"]] == ["/req/0", "/req/1"]
    assert p.queue.dropped == 3 and "queue full" in caplog.text


def test_unreachable_receiver_gives_up_after_max_retry_time(caplog):
    http_log._QUEUES.clear()
    p = make_plugin_for_test(HttpLog, {"http_endpoint": "http://127.0.0.1:1/x",
                                       "queue": {"max_retry_time": 0.2, "initial_retry_delay": 0.05}})
    asyncio.run(log_requests(p, 1))
    assert "dropping them" in caplog.text
    http_log._QUEUES.clear()
