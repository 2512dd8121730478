"""start, stop, quit, restart, reload, health, check, version."""
from __future__ import annotations

import os
import signal
import sys
import time

from meshway import __version__
from meshway.cli._common import add_node_options, fail, settings_from
from meshway.settings import Settings, check_role, load_settings


# The commands `register` adds: `meshway` builds only this group's parsers for them (see
# meshway.cli.build_parser); tests/unit/test_cli_parser.py keeps the two in step.
COMMANDS = ("start", "stop", "quit", "reload", "restart", "health", "check", "version")


def register(sub) -> None:
    p = sub.add_parser("start", help="start a node (in the background unless --foreground)")
    add_node_options(p)
    p.add_argument("--foreground", action="store_true", help="stay in the foreground (containers, systemd)")
    p.set_defaults(handler=cmd_start)
    for name, handler, text in (
        ("stop", cmd_stop, "stop the node running in the prefix"),
        ("quit", cmd_stop, "gracefully stop the node running in the prefix (same as stop)"),
        ("reload", cmd_reload, "re-read the declarative config / database and apply it"),
        ("restart", cmd_restart, "stop the node if it runs, then start it"),
        ("health", cmd_health, "tell whether the node in the prefix is running"),
        ("check", cmd_check, "validate the settings without starting"),
    ):
        p = sub.add_parser(name, help=text)
        add_node_options(p)
        if name == "restart":
            p.add_argument("--foreground", action="store_true")
        p.set_defaults(handler=handler)
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(handler=lambda args: print(f"meshway {__version__}"))


def cmd_start(args) -> int:
    return _start(settings_from(args), args.foreground)


def _start(settings: Settings, foreground: bool) -> int:
    from meshway.node import running_pid, run_node, spawn_node
    from meshway.node._prefix import record_settings

    check_role(settings)
    pid = running_pid(settings.prefix_path)
    if pid:
        return fail(f"meshway is already running in {settings.prefix_path} (pid {pid})")
    recorded = str(record_settings(settings))  # what the master, its workers and `restart` read
    if foreground:
        return run_node(settings, recorded, ready_fd=None, foreground=True)
    ok, message = spawn_node(settings, recorded)
    if not ok:
        return fail(message)
    print(message)
    return 0


def _signal(args, sig: int) -> tuple[int | None, str]:
    from meshway.node import running_pid

    settings = settings_from(args)
    pid = running_pid(settings.prefix_path)
    if pid:
        os.kill(pid, sig)
    return pid, str(settings.prefix_path)


def cmd_stop(args) -> int:
    pid, prefix = _signal(args, signal.SIGTERM)
    if not pid:
        return fail(f"meshway is not running in {prefix}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    print("meshway stopped")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def cmd_reload(args) -> int:
    settings = settings_from(args)
    changed = _changed_settings(settings, args)
    pid, prefix = _signal(args, signal.SIGHUP)
    if not pid:
        return fail(f"meshway is not running in {prefix}")
    if changed:
        print(f"Warning: the node keeps running with its recorded settings; {', '.join(changed)} changed: "
              "apply them with 'meshway restart'", file=sys.stderr)
    print("meshway reloaded")
    return 0


def _changed_settings(settings: Settings, args) -> list[str]:
    """Settings given now (-c or MESHWAY_*) that differ from the ones the node runs with."""
    recorded = _recorded(settings)
    if recorded is None:
        return []
    from meshway.node._prefix import recorded_value

    now = settings_for_restart(args)
    before = load_settings(env={}, recorded=recorded)
    # as recorded: a file named by a relative path now and an absolute one then is the same file
    return [k for k in now.values if k != "prefix" and recorded_value(now, k) != recorded_value(before, k)]


def _recorded(settings: Settings):
    from meshway.node._prefix import recorded_path

    path = recorded_path(settings.prefix_path)
    return path if path.is_file() else None


def settings_for_restart(args) -> Settings:
    """The recorded settings of the node in the prefix, under any given now (-c, MESHWAY_*, -p)."""
    settings = settings_from(args)
    recorded = _recorded(settings)
    if recorded is None:
        return settings
    overrides = {"prefix": args.prefix} if args.prefix else None
    return load_settings(args.conf, overrides=overrides, recorded=recorded)


def cmd_restart(args) -> int:
    from meshway.node import running_pid

    settings = settings_for_restart(args)
    if running_pid(settings.prefix_path):
        cmd_stop(args)
    return _start(settings, args.foreground)


def cmd_health(args) -> int:
    from meshway.node import running_pid

    settings = settings_from(args)
    pid = running_pid(settings.prefix_path)
    if not pid:
        return fail(f"meshway is not running in {settings.prefix_path}")
    print(f"meshway is healthy at {settings.prefix_path} (pid {pid})")
    return 0


def cmd_check(args) -> int:
    settings = settings_from(args)
    check_role(settings)
    print(f"configuration at {args.conf or 'defaults and environment'} is valid")
    return 0
