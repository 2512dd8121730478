"""Node endpoints: `/`, `/status`, `/openapi.json`, and the headers every response carries."""
from __future__ import annotations


def test_root_describes_the_node(api):
    info = api.get("/").json()
    assert info["version"] and info["hostname"] and info["tagline"]
    assert info["node_id"] == "node-for-test"
    assert "limits-for-test" in info["plugins"]["available_on_server"]
    assert info["configuration"]["database"] == "sqlite"
    assert info["configuration"]["pg_password"] == ""  # empty: nothing to redact, but present


def test_root_lists_plugins_enabled_in_cluster(api):
    api.post("/plugins", json={"name": "limits-for-test", "instance_name": "info-limits"})
    assert "limits-for-test" in api.get("/").json()["plugins"]["enabled_in_cluster"]


def test_status(api):
    status = api.get("/status").json()
    assert status["database"] == {"reachable": True}
    assert {"connections_active", "connections_accepted", "total_requests"} <= set(status["server"])


def test_openapi_is_generated_from_the_declarations(api):
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["schemas"]["services"]["properties"]["retries"]["default"] == 5
    assert "/consumers/{parent_key}/key-auth" in doc["paths"] and "/routes/{key}" in doc["paths"]
    assert doc["components"]["schemas"]["routes"]["properties"]["https_redirect_status_code"]["enum"] == [426, 301, 302, 307, 308]


def test_openapi_links_reach_nested_collections_and_lists_every_status(api):
    doc = api.get("/openapi.json").json()
    created = doc["paths"]["/consumers"]["post"]["responses"]["201"]
    targets = {link["operationId"] for link in created["links"].values()}
    assert {"post_consumers_parent_key_key_auth", "get_consumers_key", "delete_consumers_key"} <= targets
    nested = doc["paths"]["/consumers/{parent_key}/key-auth"]["post"]
    assert set(nested["responses"]) == {"201", "400", "404", "405", "409", "415"}
    assert "consumer" not in doc["components"]["schemas"][nested["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
    # what the API returns may hold nulls at any depth (an upstream's healthchecks.active.headers)
    upstream = doc["components"]["schemas"]["upstreams"]["properties"]["healthchecks"]
    assert upstream["properties"]["active"]["properties"]["headers"]["nullable"] is True


def test_options_without_origin_lists_methods(api):
    # Cross-origin preflights are in test_admin_access.py: only admin_gui_origin gets CORS headers.
    r = api.options("/services")
    assert r.status_code == 204 and "PATCH" in r.headers["allow"]
    assert "access-control-allow-origin" not in r.headers


def test_error_responses_carry_the_headers_too(api):
    r = api.get("/services/none-such")
    assert r.status_code == 404 and r.headers["server"].startswith("meshway/")
    assert r.headers["content-type"] == "application/json; charset=utf-8"


def test_extra_routes_are_mounted_and_failures_are_json(tmp_path, plugin_for_test):
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from meshway.admin import create_admin_app
    from meshway.model import empty_snapshot
    from tests.integration.admin.conftest import ServerForTest, settings_for_test

    class Dbless:
        snapshot = empty_snapshot()

    async def hello(request):
        return PlainTextResponse("hello")

    async def boom(request):
        raise RuntimeError("boom")

    app = create_admin_app(settings=settings_for_test(tmp_path, database="off"), dbless=Dbless(), node_info={},
                           extra_routes=[Route("/upstreams/{x}/health", hello), Route("/boom", boom)])
    server = ServerForTest(app).start()
    try:
        r = server.client.get("/upstreams/u/health")
        assert (r.status_code, r.text) == (200, "hello") and r.headers["server"].startswith("meshway/")
        r = server.client.get("/boom")
        assert (r.status_code, r.json()) == (500, {"message": "An unexpected error occurred"})
    finally:
        server.stop()
