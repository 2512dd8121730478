"""The pid file's master counts as running only while it runs: a dead, unreaped one does not."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from meshway.node import running_pid
from meshway.node._prefix import pid_path


def pid_file_for_test(prefix, pid):
    pid_path(prefix).parent.mkdir(parents=True, exist_ok=True)
    pid_path(prefix).write_text(f"{pid}\n")


def test_a_killed_master_not_yet_reaped_is_not_running(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file_for_test(tmp_path, child.pid)
        assert running_pid(tmp_path) == child.pid
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and running_pid(tmp_path) is not None:
            time.sleep(0.01)
        assert running_pid(tmp_path) is None
    finally:
        child.kill()
        child.wait()


def test_no_pid_file_or_a_gone_pid_is_not_running(tmp_path):
    assert running_pid(tmp_path) is None
    pid_file_for_test(tmp_path, 999999999)
    assert running_pid(tmp_path) is None
