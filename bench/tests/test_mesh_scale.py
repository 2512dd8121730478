"""The pure parts of bench/mesh_scale.py: `.venv/bin/pytest bench/tests -q` (no load, no processes)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mesh_scale import _dataplane, _hash_of  # noqa: E402

from meshway.cluster._protocol import encode_config  # noqa: E402
from meshway.mesh._resources import parse_resource  # noqa: E402


def test_the_hash_is_read_from_the_head_of_a_frame():
    frame = encode_config({"mesh_resources": {"dataplanes": [_dataplane(i) for i in range(100)]}}, "a" * 32)
    assert _hash_of(frame) == "a" * 32


def test_the_simulated_dataplanes_are_valid_resources():
    parsed = parse_resource(_dataplane(7), kind="Dataplane")
    assert parsed["name"] == "sim-7" and parsed["mesh"] == "default"
