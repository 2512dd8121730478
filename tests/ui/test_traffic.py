"""The live traffic page in a real browser: requests sent to a real node show up, updated live."""
from __future__ import annotations

import time

import httpx


def test_requests_show_up_live_with_rate_status_classes_and_latency(gui_node, page, upstream):
    node = gui_node()
    node.start()
    page.goto(node.gui + "/traffic")
    assert page.locator("#no-counters").count() == 1  # the hint: counters come from the prometheus plugin
    httpx.post(node.admin + "/plugins", data={"name": "prometheus", "config.status_code_metrics": "true",
                                              "config.latency_metrics": "true"}).raise_for_status()
    httpx.post(node.admin + "/services", data={"name": "shop", "url": upstream}).raise_for_status()
    httpx.post(node.admin + "/services/shop/routes", data={"name": "cart", "paths[]": "/cart"}).raise_for_status()
    page.reload()
    page.evaluate("window.notReloaded = true")

    with httpx.Client() as client:  # bounded load: 40 requests, 10 of them answered 503 by the upstream
        for i in range(40):
            client.get(node.proxy + ("/cart/fail" if i % 4 == 0 else "/cart/item"))
    row = page.locator("table.traffic tbody tr[data-route=cart]")
    row.wait_for(timeout=15_000)
    page.wait_for_function("document.querySelector('tr[data-route=cart] td.total').textContent === '40'",
                           timeout=15_000)
    assert row.locator("td.c2xx").inner_text() == "30" and row.locator("td.c5xx").inner_text() == "10"
    assert row.locator("td.errors").inner_text() == "25.0"
    assert float(row.locator("td.rate").inner_text()) > 0
    assert float(row.locator("td.p50").inner_text()) > 0
    assert page.evaluate("window.notReloaded") is True
    assert page.console_errors == []


def test_a_control_plane_shows_the_traffic_its_hybrid_data_plane_counted(gui_node, node_factory, tmp_path, page,
                                                                         upstream):
    from prometheus_client.parser import text_string_to_metric_families

    from tests.ui.test_data_planes import _hybrid_pair, _wait_listed

    cp, dp = _hybrid_pair(gui_node, node_factory, tmp_path)
    httpx.post(cp.admin + "/plugins", data={"name": "prometheus", "config.status_code_metrics": "true",
                                            "config.latency_metrics": "true"}).raise_for_status()
    httpx.post(cp.admin + "/services", data={"name": "shop", "url": upstream}).raise_for_status()
    httpx.post(cp.admin + "/services/shop/routes", data={"name": "cart", "paths[]": "/cart"}).raise_for_status()
    # a second route, written last: once the data plane serves it (on fresh connections, so on each
    # of its workers), it has the configuration with `cart` too; its own requests do not count as cart's
    httpx.post(cp.admin + "/services/shop/routes", data={"name": "probe", "paths[]": "/probe"}).raise_for_status()
    listed = _wait_listed(cp)
    for _ in range(150):
        if all(httpx.get(dp.proxy + "/probe/x").status_code == 200 for _ in range(6)):
            break
        time.sleep(0.2)
    page.goto(cp.gui + "/traffic")
    page.evaluate("window.notReloaded = true")

    with httpx.Client() as client:  # bounded: 20 requests to the data plane (the control plane proxies nothing)
        answers = [client.get(dp.proxy + ("/cart/fail" if i % 4 == 0 else "/cart/item")).status_code
                   for i in range(20)]
    assert answers.count(200) == 15 and answers.count(503) == 5  # it had the control plane's config
    # the data plane reports its counters with its pings (every 5 s when they changed); the page re-reads every 2 s
    page.wait_for_function("(document.querySelector('tr[data-route=cart] td.total') || {}).textContent === '20'",
                           timeout=30_000)
    row = page.locator("table.traffic tbody tr[data-route=cart]")
    assert row.locator("td.c2xx").inner_text() == "15" and row.locator("td.c5xx").inner_text() == "5"
    assert row.locator("td.errors").inner_text() == "25.0"
    assert float(row.locator("td.p50").inner_text()) > 0
    assert page.evaluate("window.notReloaded") is True
    page.reload()
    assert "(1 data plane reporting;" in page.locator("#control-plane").inner_text()
    assert page.console_errors == []

    # the same counters for any reader: the Admin API's GET /clustering/metrics, per data plane
    text = httpx.get(cp.admin + "/clustering/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "kong_http_requests_total" and s.labels.get("route") == "cart"]
    assert {s.labels["node_id"] for s in samples} == {listed["id"]}
    assert sum(s.value for s in samples) == 20
