"""The live traffic page in a real browser: requests sent to a real node show up, updated live."""
from __future__ import annotations

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
