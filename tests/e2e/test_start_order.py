"""The order of a node's start (issue 17, item 6): the master launches its workers right after
binding, so their interpreter start and imports run while it loads the declarative file; they
accept only once they run that config. A start that fails after the launch leaves no worker."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.helpers.node import MESHWAY, clean_env

_DOC = '_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:{port}\n  routes:\n  - name: r\n    paths: ["/"]\n'


class _Origin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"origin")

    def log_message(self, *args) -> None:
        pass


def _workers_of(prefix: Path) -> list[int]:
    """Live worker processes of the node in `prefix` (their command line names its recorded settings)."""
    mark = f"{prefix}/.meshway_env".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"meshway.node.worker" in cmdline and mark in cmdline:
            pids.append(int(entry))
    return pids


def test_workers_start_while_the_master_still_reads_its_declarative_file(node_factory, tmp_path):
    origin = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    fifo = tmp_path / "kong.yml"
    os.mkfifo(fifo)  # the master's read of the file blocks until the test writes it
    node = node_factory(database="off", declarative_config=str(fifo))
    cli = subprocess.Popen([MESHWAY, "start", "-p", str(node.prefix), "-c", str(node.conf)], env=clean_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node.started = True  # the fixture stops it whatever happens
    try:
        deadline = time.monotonic() + 60
        while not _workers_of(node.prefix) and time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.05)
        assert _workers_of(node.prefix), "no worker was running while the master waited for its config"
        with pytest_raises_connect():
            httpx.get(node.proxy + "/", timeout=0.5)  # not serving before it has the config
        fifo.write_text(_DOC.format(port=origin.server_address[1]))
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, out + err
        r = httpx.get(node.proxy + "/", timeout=10)
        assert r.status_code == 200 and r.text == "origin"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        origin.shutdown()


class pytest_raises_connect:  # noqa: N801 (a context manager named for what it expects)
    """A request to the proxy before the workers run the config gets no answer: the listener is
    bound (the connection waits in its queue) but no worker accepts yet."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> bool:
        assert kind is not None and issubclass(kind, httpx.TimeoutException), f"the proxy answered early ({value!r})"
        return True


def test_a_start_that_fails_after_launching_workers_leaves_none(node_factory, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text('_format_version: "3.0"\nservices:\n- name: s\n  url: not a url\n')
    node = node_factory(database="off", declarative_config=str(bad))
    result = node.start(check=False)
    assert result.returncode == 1 and "declarative_config" in result.stderr
    deadline = time.monotonic() + 10
    while _workers_of(node.prefix) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workers_of(node.prefix) == []
