"""A write the node could not run is refused whole: 400, the store unchanged, the node still
taking later writes (issue 10 item 1: writes apply whole or not at all).

Before the admission compile, such a write answered 201, every worker rejected the resulting
config, and the node stayed on the previous one for every write after it, silently.
"""
import httpx

from tests.fixtures.certs import cert_pair_for_test
from tests.helpers.node import free_port

UNKNOWN = "4e3ad2e4-0bc4-4638-8e34-c84a417ba39b"


def _routed(node, path: str) -> int:
    return httpx.get(node.proxy + path).status_code


def test_a_write_that_cannot_compile_is_400_and_changes_nothing(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    upstream = f"http://127.0.0.1:{free_port()}"
    assert admin.post("/services", data={"name": "s", "url": upstream}).status_code == 201
    # validates (a list of uuids, as Kong's schema), but names a CA certificate that does not exist
    r = admin.post("/services", data={"name": "s2", "url": "https://127.0.0.1:9", "ca_certificates[]": UNKNOWN})
    assert r.status_code == 400 and r.json()["name"] == "schema violation", r.text
    assert "unknown ca_certificates" in r.json()["message"] and UNKNOWN in r.json()["message"]
    assert admin.get("/services/s2").status_code == 404
    # the node was not left behind: the next write reaches the proxy at once
    assert admin.post("/services/s/routes", data={"name": "r", "paths[]": "/r"}).status_code == 201
    assert _routed(node, "/r") == 502  # routed (nothing listens upstream), not 404
    assert "rejected" not in node.error_log()


def test_deleting_a_ca_certificate_a_service_uses_is_refused_as_kong_does(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    ca, _ = cert_pair_for_test("ca.test", ca=True)
    ca_id = admin.post("/ca_certificates", json={"cert": ca}).json()["id"]
    r = admin.post("/services", json={"name": "s", "url": "https://127.0.0.1:9", "ca_certificates": [ca_id]})
    assert r.status_code == 201, r.text
    r = admin.delete(f"/ca_certificates/{ca_id}")  # Kong's ca_certificates:delete() and its message
    service_id = admin.get("/services/s").json()["id"]
    assert (r.status_code, r.json()) == (400, {
        "code": 19, "name": "referenced by others",
        "message": f"ca certificate {ca_id} is still referenced by services (id = {service_id})"}), r.text
    assert admin.get(f"/ca_certificates/{ca_id}").status_code == 200
    # once the service lets go of it, it can go
    assert admin.patch("/services/s", json={"ca_certificates": None}).status_code == 200
    assert admin.delete(f"/ca_certificates/{ca_id}").status_code == 204
    assert admin.post("/services/s/routes", data={"name": "r", "paths[]": "/r"}).status_code == 201
    assert _routed(node, "/r") == 502
    assert "rejected" not in node.error_log()
