"""Several control plane nodes on one database (real SQLite store): a data plane that moved from one
node to another counts once in the mesh metrics view, even while the old node's last heartbeat is
still fresh (killed a moment ago) and still has the data plane in its published sum."""
from __future__ import annotations

from meshway.mesh._instances import Instances
from meshway.settings import load_settings
from meshway.store import open_store


def _store(tmp_path):
    return open_store(load_settings(env={"MESHWAY_DATABASE": "sqlite", "MESHWAY_PREFIX": str(tmp_path)}),
                      bootstrap=True)


def _node(store, name, published):
    return Instances(store, name, {"address": name}, status=lambda: {"meshStats": published})


def test_a_node_whose_data_plane_moved_here_stops_counting_until_it_beats_again(tmp_path):
    store = _store(tmp_path)
    web_sum = {"default": {"text": "web 5\n", "dataplanes": 1}}
    old, new = _node(store, "cp-old", web_sum), _node(store, "cp-new", {})
    old.beat()
    new.beat()  # new watches old from here
    old.beat()
    new.beat()
    assert [p["meshStats"] for p in new.fresh_peers()] == [web_sum]  # old's sum counts: web is there
    # old is killed; web connects to new, whose insight says it was last on cp-old
    new.moved_here("cp-old")
    assert new.fresh_peers() == []  # old's last sum still has web, which now reports here
    new.beat()
    assert new.fresh_peers() == []  # still the same heartbeat: never counted twice
    # had old lived on, its next beat (without web) counts again
    old._status = lambda: {"meshStats": {}}
    old.beat()
    assert [p["meshStats"] for p in new.fresh_peers()] == [{}]
    new.beat()
    assert new._left == {}  # forgotten once it beat


def test_a_move_from_a_node_without_a_heartbeat_changes_nothing(tmp_path):
    store = _store(tmp_path)
    other, new = _node(store, "cp-other", {"default": {"text": "x 1\n", "dataplanes": 1}}), _node(store, "cp-new", {})
    other.beat()
    new.beat()
    other.beat()
    new.moved_here("cp-gone")  # a node long forgotten (its row deleted)
    assert [p["meshStats"] for p in new.fresh_peers()] == [{"default": {"text": "x 1\n", "dataplanes": 1}}]
