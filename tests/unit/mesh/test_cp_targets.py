"""`dp run` with several control planes: which one a data plane tries first, and the list it keeps."""
from __future__ import annotations

import uuid

from meshway.mesh._dp import DpOptions, first_control_plane


def test_data_planes_spread_over_the_control_planes_and_keep_theirs():
    targets = ["10.0.0.1:5678", "10.0.0.2:5678", "10.0.0.3:5678"]
    ids = [str(uuid.uuid4()) for _ in range(300)]
    picked = [first_control_plane(i, targets) for i in ids]
    counts = {t: picked.count(t) for t in targets}
    assert all(n >= 50 for n in counts.values()), counts  # each node gets its share (100 expected)
    assert [first_control_plane(i, targets) for i in ids] == picked  # the same again after a restart


def test_the_control_plane_list_keeps_order_and_brackets_ipv6():
    options = DpOptions(cp_host="a", cp_port=1, token="t", ca_file=None, dataplane=None, mesh="default", name="web",
                        work_dir="/tmp/x", control_planes=(("a", 1), ("::1", 5678)))
    assert options.cp_targets() == ["a:1", "[::1]:5678"]
    alone = DpOptions(cp_host="cp", cp_port=5678, token="t", ca_file=None, dataplane=None, mesh="default",
                      name="web", work_dir="/tmp/x")
    assert alone.cp_targets() == ["cp:5678"]
