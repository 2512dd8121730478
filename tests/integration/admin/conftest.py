"""An Admin API served by uvicorn on a free 127.0.0.1 port, over a temp SQLite (or PostgreSQL) store."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from meshway.admin import create_admin_app
from meshway.settings import load_settings
from meshway.store import open_store


class ServerForTest:
    """A running uvicorn server; `url` is its base URL, `client` an httpx client on it."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", server_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> "ServerForTest":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("admin server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def settings_for_test(prefix: Path, **overrides: str) -> Any:
    return load_settings(env={}, overrides={"prefix": str(prefix), **overrides})


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, plugin_for_test: type) -> Iterator[ServerForTest]:
    settings = settings_for_test(tmp_path_factory.mktemp("admin"))
    store = open_store(settings, bootstrap=True)
    app = create_admin_app(settings=settings, store=store, node_info={"node_id": "node-for-test"})
    server = ServerForTest(app).start()
    server.store = store  # type: ignore[attr-defined]
    yield server
    server.stop()
    store.close()


@pytest.fixture
def api(admin: ServerForTest) -> httpx.Client:
    return admin.client
