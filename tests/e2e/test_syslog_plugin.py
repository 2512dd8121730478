"""syslog end to end: a real node (2 workers) writes to /dev/log, which this test owns: the node
runs in a private mount namespace whose /dev is an overlay where /dev/log is this test's unix
datagram socket (the host's /dev is untouched, so parallel runs do not collide)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import httpx

from tests.e2e.test_socket_log_plugins import OriginForTest
from tests.helpers.node import MESHWAY, clean_env

# /dev overlaid in a private mount namespace; its submounts (shm for the workers' shared
# counters, pts...) bound back in; then /dev/log -> the test's socket.
PRIVATE_DEV_LOG = """set -e
mount --make-rprivate /
mkdir -p "$T/orig" "$T/up" "$T/work"
mount --rbind /dev "$T/orig"
mount -t overlay overlay -o lowerdir=/dev,upperdir="$T/up",workdir="$T/work" /dev
for sub in shm pts mqueue hugepages; do
  if mountpoint -q "$T/orig/$sub"; then mount --rbind "$T/orig/$sub" "/dev/$sub"; fi
done
ln -sf "$SOCK" /dev/log
exec "$@"
"""
LINE = re.compile(r"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d kong\[(\d+)\]: (\{.*\})$")


def _start_with_private_dev_log(node, tmp_path, sock_path):
    env = clean_env(T=str(tmp_path / "dev"), SOCK=sock_path)
    result = subprocess.run(["unshare", "-m", "sh", "-c", PRIVATE_DEV_LOG, "sh", MESHWAY, "start",
                             "-p", str(node.prefix), "-c", str(node.conf)],
                            capture_output=True, text=True, env=env, timeout=60)
    node.started = result.returncode == 0
    assert node.started, f"{result.stdout}{result.stderr}\n{node.error_log()}"


def _receive(sock, count, timeout=10):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(sock.recv(65536).decode())
        except socket.timeout:
            pass
    return got


def test_entries_reach_the_local_syslog_socket_with_kongs_priorities(node_factory, tmp_path):
    sock_path = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(sock_path)
    receiver.settimeout(0.2)
    node = node_factory(workers="2")
    _start_with_private_dev_log(node, tmp_path, sock_path)
    admin = httpx.Client(base_url=node.admin)
    origin = OriginForTest()
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("logged", "quiet"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    r = admin.post("/routes/logged/plugins", json={"name": "syslog", "config": {
        "facility": "local4", "log_level": "notice", "successful_severity": "notice",
        "client_errors_severity": "info", "server_errors_severity": "err"}})
    assert r.status_code == 201, r.text
    bad = admin.post("/plugins", json={"name": "syslog", "config": {"facility": "local9"}})
    assert bad.status_code == 400 and "facility" in bad.json()["fields"]["config"], bad.text
    assert "syslog" in admin.get("/").json()["plugins"]["available_on_server"]
    time.sleep(1.5)
    with httpx.Client() as client:
        assert client.get(f"{node.proxy}/logged/ok").status_code == 200
        assert client.get(f"{node.proxy}/quiet").status_code == 200
    lines = _receive(receiver, 1)
    time.sleep(0.5)
    lines += _receive(receiver, 5, timeout=0.5)  # nothing more: /quiet has no plugin
    assert len(lines) == 1, lines
    pri, pid, body = LINE.match(lines[0]).groups()
    assert int(pri) == 20 * 8 + 5  # local4.notice
    entry = json.loads(body)
    assert entry["request"]["uri"] == "/logged/ok" and entry["response"]["status"] == 200
    assert entry["route"]["name"] == "logged" and entry["service"]["name"] == "s"
    assert int(pid) != 0
