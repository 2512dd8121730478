"""The dashboard with admin_auth = token, and its own door (Host, Origin), against a real node."""
from __future__ import annotations

import httpx


def test_token_login_shows_pages_and_a_revoked_token_logs_out(gui_node, page):
    node = gui_node(admin_auth="token")
    node.cli("migrations", "bootstrap")
    token = node.cli("admin", "token", "create", "ops").stdout.strip()
    node.start()
    httpx.post(node.admin + "/services", data={"name": "secret-svc", "url": "http://127.0.0.1:9"},
               headers={"Kong-Admin-Token": token}).raise_for_status()

    page.goto(node.gui + "/services")
    assert page.url.startswith(node.gui + "/login")  # the Admin API said 401
    assert page.locator("text=secret-svc").count() == 0
    page.fill("#field-token", "wrong")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    assert "Invalid credentials" in page.locator(".field-error").inner_text()
    page.fill("#field-token", token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()  # the URL changes when the navigation commits, before the table is in
    assert page.url == node.gui + "/services"
    page.locator("table.entities tbody tr", has_text="secret-svc").wait_for(timeout=15_000)
    assert page.locator("table.entities tbody tr", has_text="secret-svc").count() == 1
    cookie = next(c for c in page.context.cookies() if c["name"] == "meshway_admin_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    assert node.cli("admin", "token", "revoke", "ops").returncode == 0
    page.goto(node.gui + "/services")
    assert page.url.startswith(node.gui + "/login")
    assert page.console_errors == []


def test_the_dashboard_checks_host_and_refuses_foreign_posts(gui_node):
    node = gui_node()
    node.start()
    assert httpx.get(node.gui + "/services", headers={"Host": "rebound.example:8002"}).status_code == 421
    foreign = httpx.post(node.gui + "/services/new", data={"name": "x", "url": "http://127.0.0.1:9"},
                         headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    same = httpx.post(node.gui + "/services/new", data={"name": "x", "url": "http://127.0.0.1:9"},
                      headers={"Origin": node.gui})
    assert same.status_code == 303
    assert [s["name"] for s in httpx.get(node.admin + "/services").json()["data"]] == ["x"]
    # readable without JavaScript: the list is a plain HTML table
    assert '<a href="/services/' in httpx.get(node.gui + "/services").text


def test_gui_path_mounts_the_pages_under_it(gui_node, page):
    node = gui_node(admin_gui_path="/manager")
    result = node.start()
    assert f"dashboard: {node.gui}/" in result.stdout
    page.goto(node.gui)
    assert page.url == node.gui + "/"
    page.get_by_role("link", name="Routes").first.click()
    page.wait_for_load_state()
    assert page.url == node.gui + "/routes"
    assert page.console_errors == []
