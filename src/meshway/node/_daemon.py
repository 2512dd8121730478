"""Starting a node in the background and knowing when it is ready.

`meshway start` spawns `python -m meshway.node` in a new session with one end of a pipe;
the master writes `ready` or `error: <reason>` on it once start-up is over, so the CLI can
print `meshway started` only when every listener accepts connections, or print the cause and
exit non-zero.
"""
from __future__ import annotations

import gc
import os
import select
import subprocess
import sys
import time

from meshway import logs
from meshway.node import _prefix
from meshway.settings import Settings, without_settings_env


def _report(fd: int | None, text: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (text + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def run_node(settings: Settings, conf_path: str | None, *, ready_fd: int | None, foreground: bool) -> int:
    """Run the master until it is stopped; returns the process exit status."""
    import uvloop

    from meshway.node.master import Master, StartError

    if not gc.isenabled():  # `python -m meshway.node` imported with it off: see its module
        gc.freeze()
        gc.enable()
    prefix = _prefix.prepare(settings)
    logs.setup(settings.log_level, settings.path(settings.proxy_error_log), stderr=foreground)

    def ready(error: str | None, notes: list[str] = ()) -> None:
        if foreground and error is None:
            print("\n".join(["meshway started", *notes]), flush=True)
        # one line on the pipe: the notes (the dashboard's URL) ride after a tab each
        _report(ready_fd, "\t".join(["ready", *notes]) if error is None else f"error: {error}")

    try:
        uvloop.run(Master(settings, conf_path, ready).run())
    except StartError as e:
        _fail(ready_fd, str(e), foreground)
        return 1
    except Exception as e:
        import logging

        logging.getLogger("meshway.node").exception("start-up failed")
        _fail(ready_fd, f"{type(e).__name__}: {e}", foreground)
        return 1
    finally:
        _prefix.remove_pid(prefix)
    return 0


def _fail(ready_fd: int | None, message: str, foreground: bool) -> None:
    import logging

    logging.getLogger("meshway.node").error("%s", message)
    if foreground:
        print(f"Error: {message}", file=sys.stderr, flush=True)
    _report(ready_fd, f"error: {message}")


def spawn_node(settings: Settings, conf_path: str | None) -> tuple[bool, str]:
    """Start the master detached; wait until it says ready or fails. Returns (ok, message)."""
    prefix = _prefix.prepare(settings)
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "meshway.node", "--ready-fd", str(write_fd)]
    if conf_path:
        cmd += ["--conf", conf_path]
    env = without_settings_env(os.environ)  # the master reads the recorded settings (`conf_path`) only
    out = open(prefix / "logs" / "stdout.log", "ab")
    proc = subprocess.Popen(cmd, pass_fds=[write_fd], env=env, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    os.close(write_fd)
    out.close()
    return _wait_ready(read_fd, proc, settings.start_timeout)


def _wait_ready(read_fd: int, proc: subprocess.Popen, timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 0.2)
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                buf += chunk
                if buf.endswith(b"\n"):
                    break
            elif proc.poll() is not None:
                break
    finally:
        os.close(read_fd)
    text = buf.decode(errors="replace").strip()
    if text == "ready" or text.startswith("ready\t"):
        return True, "\n".join(["meshway started", *text.split("\t")[1:]])
    if text.startswith("error: "):
        return False, text[len("error: "):]
    if proc.poll() is None:
        return False, f"meshway did not become ready within {timeout:g} s (see the error log)"
    return False, f"meshway exited during start-up with status {proc.returncode} (see the error log)"
