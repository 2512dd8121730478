"""Two Store instances on one PostgreSQL see each other's writes through version()."""
import time

import pytest

from meshway.settings import load_settings
from meshway.store import open_store

pytestmark = pytest.mark.postgres


def test_second_node_sees_first_nodes_writes(postgres_db, tmp_path):
    settings = load_settings(env={}, overrides={"prefix": str(tmp_path), **postgres_db.settings()})
    a, b = open_store(settings), open_store(settings)
    try:
        a.reset()
        a.bootstrap()
        seen = b.version()
        a.insert("services", {"name": "from-a", "host": "a.test"})
        deadline = time.monotonic() + 1
        while b.version() == seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.version() != seen
        assert b.get("services", "from-a")["host"] == "a.test"
        b.delete("services", "from-a")
        assert a.find("services", "from-a") is None
    finally:
        a.close()
        b.close()
