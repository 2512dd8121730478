"""Data plane insights written in batches (`MeshResources.update_insights`, used by `meshway.mesh._acks`):
the counts land on the subscription they belong to, and a deleted Dataplane's insight stays deleted."""
from __future__ import annotations

from meshway.mesh import _insights
from meshway.mesh._acks import _changer
from meshway.mesh._resources import parse_resource


def _dataplane(name: str) -> dict:
    return parse_resource({"type": "Dataplane", "mesh": "default", "name": name,
                           "networking": {"address": "127.0.0.1", "inbound": [
                               {"port": 8080, "servicePort": 18080, "tags": {"kuma.io/service": name}}]}})


def _totals(store, name: str) -> list[dict]:
    return [s["status"]["total"] for s in store.mesh.insight("default", name)["subscriptions"]]


def test_batched_counts_land_on_their_subscription_and_never_revive_a_deleted_data_plane(store):
    for name in ("web", "api", "gone"):
        store.mesh.put(_dataplane(name))
        store.mesh.update_insight("default", name, lambda i: _insights.connected(i, "sub-1", "cp", {}))
    store.mesh.update_insight("default", "web", lambda i: _insights.connected(i, "sub-2", "cp", {}))
    store.mesh.delete("Dataplane", "default", "gone")
    from collections import Counter

    store.mesh.update_insights({
        ("default", "web"): _changer({"sub-1": Counter(sent=1, acknowledged=1),
                                      "sub-2": Counter(sent=3, acknowledged=2, rejected=1)}),
        ("default", "api"): _changer({"sub-1": Counter(sent=2, acknowledged=2)}),
        ("default", "gone"): _changer({"sub-1": Counter(sent=1, acknowledged=1)}),
    })
    assert _totals(store, "web") == [{"responsesSent": 1, "responsesAcknowledged": 1, "responsesRejected": 0},
                                     {"responsesSent": 3, "responsesAcknowledged": 2, "responsesRejected": 1}]
    assert _totals(store, "api") == [{"responsesSent": 2, "responsesAcknowledged": 2, "responsesRejected": 0}]
    assert store.mesh.insight("default", "gone") is None
