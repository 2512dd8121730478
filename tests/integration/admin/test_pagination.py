"""Pagination (`size`, opaque `offset`, `next`) and tag filters (`a,b` AND, `a/b` OR)."""
from __future__ import annotations


def test_pages_cover_everything_once(api):
    for i in range(7):
        assert api.post("/consumers", json={"username": f"page-{i}", "tags": ["paged"]}).status_code == 201
    page = api.get("/consumers?size=3&tags=paged").json()
    names = [c["username"] for c in page["data"]]
    assert len(names) == 3 and page["next"].startswith("/consumers?") and page["offset"]
    while page["next"]:
        page = api.get(page["next"]).json()
        names += [c["username"] for c in page["data"]]
    assert sorted(names) == [f"page-{i}" for i in range(7)]
    assert page["next"] is None and "offset" not in page


def test_default_size_is_100_and_max_1000(api):
    for i in range(101):
        api.post("/consumers", data={"username": f"bulk-{i}", "tags[]": "bulk"})
    page = api.get("/consumers?tags=bulk").json()
    assert len(page["data"]) == 100 and page["next"]
    assert len(api.get("/consumers?tags=bulk&size=1000").json()["data"]) == 101
    assert api.get("/consumers?size=1001").status_code == 400


def test_tag_filters(api):
    api.post("/services", json={"name": "t-ab", "host": "a.test", "tags": ["t-a", "t-b"]})
    api.post("/services", json={"name": "t-a", "host": "a.test", "tags": ["t-a"]})
    api.post("/services", json={"name": "t-c", "host": "a.test", "tags": ["t-c"]})

    def names(query: str) -> list[str]:
        return sorted(s["name"] for s in api.get(f"/services?tags={query}").json()["data"])

    assert names("t-a,t-b") == ["t-ab"]
    assert names("t-a") == ["t-a", "t-ab"]
    assert names("t-b/t-c") == ["t-ab", "t-c"]
    assert names("nothing") == []


def test_bad_tag_is_refused(api):
    r = api.post("/services", json={"host": "a.test", "tags": ["a,b"]})
    assert r.status_code == 400 and "tags" in r.json()["fields"]


def test_tags_endpoint_lists_tagged_entities(api):
    svc = api.post("/services", json={"name": "tagged-svc", "host": "a.test", "tags": ["zz-team", "zz-prod"]}).json()
    consumer = api.post("/consumers", json={"username": "tagged-user", "tags": ["zz-team"]}).json()
    team = api.get("/tags/zz-team").json()
    assert sorted((r["entity_name"], r["entity_id"]) for r in team["data"]) == [
        ("consumers", consumer["id"]), ("services", svc["id"])]
    first = api.get("/tags?size=1").json()
    assert len(first["data"]) == 1 and first["next"].startswith("/tags?")
    assert api.get("/tags?offset=%%").status_code == 400
