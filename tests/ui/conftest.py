"""Browser tests of the dashboard: Debian's chromium driven by playwright (no browser download:
`executable_path` points at the system's), against real `meshway start` nodes."""
from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers.node import free_port, node_factory  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-headless-shell") or "/usr/bin/chromium"


@pytest.fixture(scope="package")
def playwright_session():
    """One playwright for the browser tests: its sync API runs a loop that a second one would collide
    with. Package scope, so that loop stops when tests/ui ends: left running, it made every later
    asyncio.run() in the session fail ("cannot be called from a running event loop")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright_session):
    b = playwright_session.chromium.launch(executable_path=CHROMIUM, headless=True)
    yield b
    b.close()


class ConsoleErrors_for_test(list):
    """Every console error and uncaught page exception of a page, as text."""

    def watch(self, page) -> None:
        page.on("console", lambda msg: self.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.append(f"pageerror: {exc}"))


@pytest.fixture
def page(browser):
    context = browser.new_context()
    pg = context.new_page()
    errors = ConsoleErrors_for_test()
    errors.watch(pg)
    pg.console_errors = errors
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


@pytest.fixture
def gui_node(node_factory):  # noqa: F811
    """A traditional node with its dashboard on a free loopback port; `.gui` is its URL."""

    def make(name: str = "node", **settings: str):
        port = free_port()
        node = node_factory(name, admin_gui_listen=f"127.0.0.1:{port}", **settings)
        node.gui = f"http://127.0.0.1:{port}" + settings.get("admin_gui_path", "").rstrip("/")
        return node

    return make


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, with Content-Length, as most upstreams answer
    def do_GET(self) -> None:
        body = f"hello from the upstream, path {self.path}".encode()
        self.send_response(503 if self.path.endswith("/fail") else 200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def upstream():
    """A real HTTP server on loopback answering `hello from the upstream, path <path>`, with 503
    for a path ending in `/fail`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
