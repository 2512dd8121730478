"""`meshway start/stop/health/reload` as a user runs them: real processes, temp prefixes."""
import signal
import socket
import subprocess
import time

import httpx

from tests.helpers.node import MESHWAY, clean_env, free_port, run_cli_for_test


def test_start_health_stop(node_factory):
    node = node_factory()
    node.start()
    assert "meshway is healthy" in node.cli("health").stdout
    root = httpx.get(node.admin + "/").json()
    assert root["version"] and root["configuration"]["prefix"] == str(node.prefix)
    assert httpx.get(node.status + "/status").json()["ready"] is True
    assert node.cli("start").returncode == 1  # already running in that prefix
    result = node.stop()
    assert result.returncode == 0 and "meshway stopped" in result.stdout
    health = node.cli("health")
    assert health.returncode == 1 and "not running" in health.stderr


def test_port_in_use_fails_with_the_cause(node_factory):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    node = node_factory(admin_listen=f"127.0.0.1:{port}")
    result = node.start(check=False)
    busy.close()
    assert result.returncode == 1
    assert f"could not bind 127.0.0.1:{port} (admin_listen)" in result.stderr
    assert "in use" in result.stderr


def test_the_test_helper_moves_a_node_whose_chosen_port_was_taken(node_factory):
    # Another test's server can take a port between free_port() and the node's bind: the helper
    # then starts the node on new ports (only ports it chose itself; see the test above).
    node = node_factory()
    taken = node.admin_port
    with socket.create_server(("127.0.0.1", taken)):
        node.start()
    assert node.admin_port != taken
    assert httpx.get(node.admin + "/status").status_code == 200


def test_bad_setting_names_key_and_value(node_factory):
    node = node_factory(workers="many")
    result = node.start(check=False)
    assert result.returncode == 1
    assert "workers: invalid integer 'many'" in result.stderr


def test_unreadable_certificate_fails_start(node_factory, tmp_path):
    node = node_factory(ssl_cert=str(tmp_path / "missing.crt"), ssl_cert_key=str(tmp_path / "missing.key"))
    result = node.start(check=False)
    assert result.returncode == 1 and "missing.crt" in result.stderr


def test_two_nodes_side_by_side(node_factory):
    a, b = node_factory("a"), node_factory("b")
    a.start()
    b.start()
    a.stop()
    assert httpx.get(b.admin + "/").status_code == 200
    assert b.cli("health").returncode == 0 and a.cli("health").returncode == 1


def test_foreground_runs_until_sigterm(tmp_path):
    admin = free_port()
    env = clean_env(MESHWAY_PREFIX=str(tmp_path / "fg"), MESHWAY_ADMIN_LISTEN=f"127.0.0.1:{admin}",
                    MESHWAY_PROXY_LISTEN="off", MESHWAY_STATUS_LISTEN="off")
    proc = subprocess.Popen([MESHWAY, "start", "--foreground"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "meshway started"
        assert httpx.get(f"http://127.0.0.1:{admin}/status").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_dbless_declarative_config_and_reload(node_factory, tmp_path):
    origin = _origin_for_test()
    try:
        decl = tmp_path / "meshway.yml"
        decl.write_text(_declarative(origin.port, "/one"))
        node = node_factory(database="off", declarative_config=str(decl))
        node.start()
        assert httpx.get(node.proxy + "/one/hello").text == "origin saw /hello"
        decl.write_text(_declarative(origin.port, "/two"))
        assert node.cli("reload").returncode == 0
        _eventually(lambda: httpx.get(node.proxy + "/two/x").status_code == 200)
        assert httpx.get(node.proxy + "/one/x").status_code == 404
    finally:
        origin.stop()


def test_invalid_declarative_config_fails_start(node_factory, tmp_path):
    decl = tmp_path / "bad.yml"
    decl.write_text('_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:1\n  routes:\n  - paths: [nope]\n')
    node = node_factory(database="off", declarative_config=str(decl))
    result = node.start(check=False)
    assert result.returncode == 1
    assert "services[0].routes[0].paths[0]" in result.stderr


def test_config_cli_round_trip(node_factory, tmp_path):
    decl = tmp_path / "in.yml"
    decl.write_text(_declarative(12345, "/rt"))
    node = node_factory()
    parsed = node.cli("config", "parse", str(decl))
    assert parsed.returncode == 0 and "1 services" in parsed.stdout
    assert node.cli("config", "db_import", str(decl)).returncode == 0
    out = tmp_path / "out.yml"
    assert node.cli("config", "db_export", str(out)).returncode == 0
    node.start()
    routes = httpx.get(node.admin + "/routes").json()["data"]
    assert [r["paths"] for r in routes] == [["/rt"]]


def _declarative(port: int, path: str) -> str:
    return (
        '_format_version: "3.0"\n'
        "services:\n"
        f"- name: origin\n  url: http://127.0.0.1:{port}\n"
        f"  routes:\n  - name: r\n    paths: [\"{path}\"]\n"
    )


def _eventually(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


class _Origin:
    def __init__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = f"origin saw {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def _origin_for_test() -> _Origin:
    return _Origin()
