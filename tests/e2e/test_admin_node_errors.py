"""Admin API endpoints that depend on the node's role answer as Kong's do on the wrong node."""
import httpx

CP_ONLY = "this endpoint is only available when meshway is configured to run as Control Plane for the cluster"
DB_ONLY = "this endpoint is only available when meshway is configured to not use a database"


def test_clustering_on_a_node_that_is_not_a_control_plane_is_400(node_factory):
    node = node_factory()
    node.start()
    for path in ("/clustering/data-planes", "/clustering/status"):
        r = httpx.get(node.admin + path)
        assert (r.status_code, r.json()) == (400, {"message": CP_ONLY}), path
    r = httpx.post(node.admin + "/config", json={"config": "_format_version: '3.0'"})
    assert (r.status_code, r.json()) == (400, {"message": DB_ONLY})
