"""A Store on a temp SQLite file and on the session's PostgreSQL, emptied before each test."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from meshway.settings import load_settings
from meshway.store import Store, open_store


def store_settings(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> Any:
    if kind == "sqlite":
        return load_settings(env={}, overrides={"prefix": str(tmp_path)})
    db = request.getfixturevalue("postgres_db")
    return load_settings(env={}, overrides={"prefix": str(tmp_path), **db.settings()})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Any, plugin_for_test: type) -> Iterator[Store]:
    s = open_store(store_settings(request.param, tmp_path, request))
    s.reset()
    s.bootstrap()
    yield s
    s.close()
