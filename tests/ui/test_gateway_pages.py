"""The dashboard's gateway pages in a real browser, against a real node."""
from __future__ import annotations

import httpx

PAGES = ["/", "/services", "/routes", "/consumers", "/plugins", "/upstreams", "/certificates", "/ca_certificates",
         "/snis", "/data-planes", "/meshes", "/meshes/default", "/traffic", "/services/new", "/routes/new", "/plugins/new",
         "/plugins/new?name=rate-limiting", "/upstreams/new", "/consumers/new"]


def test_start_prints_the_dashboard_url_and_it_lists_services_and_routes(gui_node, page):
    node = gui_node()
    result = node.start()
    assert f"dashboard: {node.gui}/" in result.stdout
    httpx.post(node.admin + "/services", data={"name": "billing", "url": "http://127.0.0.1:9/v1"}).raise_for_status()
    httpx.post(node.admin + "/services/billing/routes", data={"name": "billing-route", "paths[]": "/billing"}).raise_for_status()

    page.goto(node.gui + "/services")
    row = page.locator("table.entities tbody tr", has_text="billing")
    assert row.count() == 1
    assert "127.0.0.1" in row.inner_text()
    page.goto(node.gui + "/routes")
    assert page.locator("table.entities tbody tr", has_text="billing-route").count() == 1
    page.get_by_role("link", name="billing-route").click()
    page.wait_for_load_state()
    assert page.locator("td[data-field=paths]").inner_text() == "/billing"
    assert page.console_errors == []


def test_every_page_loads_with_no_console_error(gui_node, page):
    node = gui_node()
    node.start()
    httpx.post(node.admin + "/upstreams", data={"name": "up"}).raise_for_status()
    httpx.post(node.admin + "/upstreams/up/targets", data={"target": "127.0.0.1:9"}).raise_for_status()
    httpx.post(node.admin + "/consumers", data={"username": "alice"}).raise_for_status()
    for path in [*PAGES, "/upstreams/up", "/consumers/alice"]:
        response = page.goto(node.gui + path)
        assert response.status == 200, path
        assert page.locator("h1").count() == 1, path
    page.goto(node.gui + "/upstreams/up")
    assert page.locator("table[data-related=targets] tbody tr", has_text="127.0.0.1:9").count() == 1
    assert page.console_errors == []


def test_a_service_and_route_created_in_the_dashboard_proxy_traffic(gui_node, page, upstream):
    node = gui_node()
    node.start()
    page.goto(node.gui + "/services")
    page.get_by_role("link", name="New gateway service").click()
    page.wait_for_load_state()
    page.fill("#field-name", "hello")
    page.fill("#field-url", upstream + "/base")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Gateway service hello"
    page.get_by_role("link", name="Add route").click()
    page.wait_for_load_state()
    page.fill("#field-name", "hello-route")
    page.fill("#field-paths", "/hello")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Route hello-route"

    answer = httpx.get(node.proxy + "/hello/world")
    assert answer.status_code == 200
    assert answer.text == "hello from the upstream, path /base/world"
    assert page.console_errors == []


def test_an_edit_in_the_dashboard_changes_what_is_proxied(gui_node, page, upstream):
    node = gui_node()
    node.start()
    httpx.post(node.admin + "/services", data={"name": "s", "url": upstream + "/one"}).raise_for_status()
    httpx.post(node.admin + "/services/s/routes", data={"name": "r", "paths[]": "/r"}).raise_for_status()
    assert httpx.get(node.proxy + "/r").text.endswith("path /one")
    page.goto(node.gui + "/services/s")
    page.get_by_role("link", name="Edit").click()
    page.wait_for_load_state()
    page.fill("#field-path", "/two")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert page.locator("td[data-field=path]").inner_text() == "/two"
    assert httpx.get(node.proxy + "/r").text.endswith("path /two")


def test_a_bad_input_shows_the_admin_api_error_on_its_field_and_changes_nothing(gui_node, page):
    node = gui_node()
    node.start()
    page.goto(node.gui + "/services/new")
    page.fill("#field-name", "broken")
    page.fill("#field-url", "htp://127.0.0.1:9")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    error = page.locator("#error-url")
    assert "invalid url scheme 'htp'" in error.inner_text()
    assert page.locator("#field-url").get_attribute("aria-invalid") == "true"
    assert page.input_value("#field-name") == "broken"  # what was typed stays
    assert httpx.get(node.admin + "/services").json()["data"] == []

    httpx.post(node.admin + "/services", data={"name": "kept", "url": "http://127.0.0.1:9"}).raise_for_status()
    page.goto(node.gui + "/services/kept/edit")
    page.fill("#field-port", "99999")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert page.locator("#error-port").inner_text() == "value should be between 0 and 65535"
    assert httpx.get(node.admin + "/services/kept").json()["port"] == 9
    assert page.console_errors == []


def test_plugin_form_is_generated_from_the_plugin_schema(gui_node, page, upstream):
    node = gui_node()
    node.start()
    httpx.post(node.admin + "/services", data={"name": "s", "url": upstream}).raise_for_status()
    httpx.post(node.admin + "/services/s/routes", data={"name": "r", "paths[]": "/r"}).raise_for_status()
    page.goto(node.gui + "/services/s")
    page.get_by_role("link", name="Add plugin").click()
    page.wait_for_load_state()
    page.get_by_role("link", name="request-termination", exact=True).click()
    page.wait_for_load_state()
    assert page.locator("#field-config\\.status_code").count() == 1
    page.fill("#field-config\\.status_code", "99")  # below 100: the plugin's schema refuses it
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("[id='error-config.status_code']").count() == 1
    assert httpx.get(node.admin + "/plugins").json()["data"] == []
    page.fill("#field-config\\.status_code", "418")
    page.fill("#field-config\\.message", "teapot")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith("Plugin request-termination")
    answer = httpx.get(node.proxy + "/r")
    assert answer.status_code == 418 and "teapot" in answer.text


def test_a_credential_added_on_the_consumer_page_authenticates_and_a_duplicate_is_refused(gui_node, page, upstream):
    node = gui_node()
    node.start()
    httpx.post(node.admin + "/services", data={"name": "s", "url": upstream}).raise_for_status()
    httpx.post(node.admin + "/services/s/routes", data={"name": "r", "paths[]": "/r"}).raise_for_status()
    httpx.post(node.admin + "/services/s/plugins", data={"name": "key-auth"}).raise_for_status()
    httpx.post(node.admin + "/consumers", data={"username": "alice"}).raise_for_status()
    assert httpx.get(node.proxy + "/r", headers={"apikey": "k-123"}).status_code == 401

    page.goto(node.gui + "/consumers")
    page.get_by_role("link", name="alice").click()
    page.wait_for_load_state()
    page.locator("h2", has_text="Key auth credentials").get_by_role("link", name="Add").click()
    page.wait_for_load_state()
    page.fill("#field-key", "k-123")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Consumer alice"
    assert page.locator("table[data-related=key-auth] tbody tr").count() == 1
    assert httpx.get(node.proxy + "/r", headers={"apikey": "k-123"}).status_code == 200

    page.locator("h2", has_text="Key auth credentials").get_by_role("link", name="Add").click()
    page.wait_for_load_state()
    page.fill("#field-key", "k-123")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("#error-key").inner_text().startswith("already in use: UNIQUE violation")
    assert len(httpx.get(node.admin + "/consumers/alice/key-auth").json()["data"]) == 1
    assert page.console_errors == []


def test_delete_search_and_tags_on_a_list(gui_node, page):
    node = gui_node()
    node.start()
    for i in range(60):  # more than a page of 50
        httpx.post(node.admin + "/services", json={"name": f"svc-{i:02d}", "url": "http://127.0.0.1:9",
                                                   "tags": ["even" if i % 2 == 0 else "odd"]}).raise_for_status()
    page.goto(node.gui + "/services")
    assert page.locator("table.entities tbody tr").count() == 50
    page.get_by_role("link", name="Next page").click()
    page.wait_for_load_state()
    assert page.locator("table.entities tbody tr").count() == 10
    page.goto(node.gui + "/services")
    page.fill("input[name=q]", "svc-4")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    assert sorted(page.locator("table.entities tbody tr td:first-child").all_inner_texts()) == [f"svc-4{i}" for i in range(10)]
    page.goto(node.gui + "/services?tags=odd")
    assert page.locator("table.entities tbody tr").count() == 30

    page.goto(node.gui + "/services/svc-07")
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete gateway service svc-07?"
    page.get_by_role("button", name="Delete").click()
    page.wait_for_load_state()
    page.wait_for_url(node.gui + "/services")
    assert httpx.get(node.admin + "/services/svc-07").status_code == 404
    assert page.console_errors == []


def test_a_certificate_pasted_in_the_dashboard_is_served_for_its_sni(gui_node, page, upstream):
    import subprocess

    from tests.fixtures.certs import cert_pair_for_test

    node = gui_node()
    node.start()
    cert, key = cert_pair_for_test("shop.example")
    httpx.post(node.admin + "/services", data={"name": "s", "url": upstream}).raise_for_status()
    httpx.post(node.admin + "/services/s/routes", data={"name": "r", "paths[]": "/r"}).raise_for_status()
    page.goto(node.gui + "/certificates/new")
    page.fill("#field-cert", cert)
    page.fill("#field-key", "not a key")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("#error-key").inner_text() != ""  # the Admin API's reason, on the key field
    assert httpx.get(node.admin + "/certificates").json()["data"] == []
    page.fill("#field-key", key)
    page.fill("#field-snis", "shop.example")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith("Certificate ")

    ca = node.prefix.parent / "shop.pem"
    ca.write_text(cert)
    served = subprocess.run(["curl", "-sS", "--cacert", str(ca), "--resolve",
                             f"shop.example:{node.proxy_ssl_port}:127.0.0.1", f"https://shop.example:{node.proxy_ssl_port}/r"],
                            capture_output=True, text=True, timeout=30)
    assert served.returncode == 0 and served.stdout.startswith("hello from the upstream"), served.stderr
    page.goto(node.gui + "/snis")
    assert page.locator("table.entities tbody tr", has_text="shop.example").count() == 1
    assert page.console_errors == []
