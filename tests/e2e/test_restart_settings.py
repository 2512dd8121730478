"""restart and reload keep the node's settings: `meshway start` records them in the prefix
(`.meshway_env`, as Kong's `.kong_env`), and a node started with MESHWAY_* variables comes
back from `meshway restart -p PREFIX` as the same node, whatever the caller's environment."""
import os
import stat
import subprocess

import httpx

from tests.e2e.test_node_lifecycle import _declarative, _origin_for_test
from tests.helpers.node import MESHWAY, clean_env, free_port, run_cli_for_test


def test_restart_without_variables_keeps_the_started_settings(tmp_path):
    origin = _origin_for_test()
    prefix, decl = tmp_path / "dbless", tmp_path / "meshway.yml"
    decl.write_text(_declarative(origin.port, "/one"))
    proxy, admin = free_port(), free_port()
    started_with = clean_env(
        MESHWAY_DATABASE="off", MESHWAY_DECLARATIVE_CONFIG=str(decl), MESHWAY_PROXY_LISTEN=f"127.0.0.1:{proxy}",
        MESHWAY_ADMIN_LISTEN=f"127.0.0.1:{admin}", MESHWAY_WORKERS="1", MESHWAY_PG_PASSWORD="p#ss")
    try:
        assert run_cli_for_test("start", "-p", str(prefix), env=started_with).returncode == 0
        recorded = prefix / ".meshway_env"
        assert stat.S_IMODE(os.stat(recorded).st_mode) == 0o600  # it holds pg_password
        assert "database = off" in recorded.read_text().splitlines()
        # the caller's environment has none of the variables now
        restarted = run_cli_for_test("restart", "-p", str(prefix))
        assert restarted.returncode == 0, restarted.stderr
        assert httpx.get(f"http://127.0.0.1:{proxy}/one/x").text == "origin saw /x"
        info = httpx.get(f"http://127.0.0.1:{admin}/").json()
        assert info["configuration"]["database"] == "off" and info["configuration"]["pg_password"] == "******"
        # a variable given now changes that one setting and keeps the others
        relogged = run_cli_for_test("restart", "-p", str(prefix), env=clean_env(MESHWAY_LOG_LEVEL="debug"))
        assert relogged.returncode == 0, relogged.stderr
        info = httpx.get(f"http://127.0.0.1:{admin}/").json()
        assert info["configuration"]["log_level"] == "debug" and info["configuration"]["database"] == "off"
        assert httpx.get(f"http://127.0.0.1:{proxy}/one/x").status_code == 200
    finally:
        run_cli_for_test("stop", "-p", str(prefix))
        origin.stop()


def test_reload_keeps_the_settings_and_says_when_new_ones_need_a_restart(tmp_path):
    origin = _origin_for_test()
    prefix, decl = tmp_path / "node", tmp_path / "meshway.yml"
    decl.write_text(_declarative(origin.port, "/one"))
    proxy = free_port()
    env = clean_env(MESHWAY_DATABASE="off", MESHWAY_DECLARATIVE_CONFIG=str(decl), MESHWAY_ADMIN_LISTEN="off",
                    MESHWAY_PROXY_LISTEN=f"127.0.0.1:{proxy}", MESHWAY_WORKERS="1")
    try:
        assert run_cli_for_test("start", "-p", str(prefix), env=env).returncode == 0
        decl.write_text(_declarative(origin.port, "/two"))
        reloaded = run_cli_for_test("reload", "-p", str(prefix))  # no variables: the recorded ones
        assert reloaded.returncode == 0 and "Warning" not in reloaded.stderr, reloaded.stderr
        relative = subprocess.run([MESHWAY, "reload", "-p", str(prefix)], capture_output=True, text=True, timeout=60,
                                  env=clean_env(MESHWAY_DECLARATIVE_CONFIG=decl.name), cwd=decl.parent)  # the same file
        assert relative.returncode == 0 and "Warning" not in relative.stderr, relative.stderr
        _eventually(lambda: httpx.get(f"http://127.0.0.1:{proxy}/two/x").status_code == 200)
        other = free_port()
        changed = run_cli_for_test("reload", "-p", str(prefix), env=clean_env(MESHWAY_PROXY_LISTEN=f"127.0.0.1:{other}"))
        assert changed.returncode == 0 and "proxy_listen changed" in changed.stderr and "meshway restart" in changed.stderr
        assert httpx.get(f"http://127.0.0.1:{proxy}/two/x").status_code == 200
    finally:
        run_cli_for_test("stop", "-p", str(prefix))
        origin.stop()


def _eventually(check, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
