"""Host side of install/uninstall: read the rules, apply a planned change, retry on the xtables lock.

Thin on purpose: the decisions live in `_rules` (what to add) and `_saved` (what to remove, what the
host looks like after); this module runs iptables-save / iptables-restore and reads host facts.
Each family's change is one `iptables-restore --noflush` transaction (removal of any previous
install and the new rules together), checked with `--test` first for both families, so a rejected
rule changes nothing; if IPv6 fails after IPv4 applied, IPv4 is put back.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from ._config import DEFAULT_UID, DEFAULT_USERNAME, Settings, TproxyError

LOCK_SIGNS = ("xtables lock", "resource temporarily unavailable", "another app is currently holding")


@dataclass(frozen=True)
class Tools:
    """The three executables of one IP family."""

    family: str  # "IPv4" / "IPv6"
    cmd: str
    save: str
    restore: str


def find_tools(settings: Settings, ipv6: bool) -> Tools | None:
    base = "ip6tables" if ipv6 else "iptables"
    custom = settings.executables
    paths = [custom.get(n) or shutil.which(n) for n in (base, f"{base}-save", f"{base}-restore")]
    if not all(paths):
        return None
    return Tools("IPv6" if ipv6 else "IPv4", *paths)


def other_backends(settings: Settings, tools: Tools) -> list[Tools]:
    """The nft and legacy variants of `tools` that are a different backend (uninstall looks in both:
    rules installed through `--iptables-executables` or by an older kumactl may sit in either)."""
    if settings.executables:
        return []  # the user said which executables to use
    base = "ip6tables" if tools.family == "IPv6" else "iptables"
    seen, out = {os.path.realpath(tools.save)}, []
    for mode in ("nft", "legacy"):
        paths = [shutil.which(f"{base}-{mode}{suffix}") for suffix in ("", "-save", "-restore")]
        if all(paths) and os.path.realpath(paths[1]) not in seen:
            seen.add(os.path.realpath(paths[1]))
            out.append(Tools(tools.family, *paths))
    return out


def resolve_uid(user: str) -> str:
    """Kuma's lookup: the name or uid given, else uid 5678, else user kuma-dp."""
    if user:
        uid = _lookup(user)
        if uid is None:
            raise TproxyError(f"the specified UID or username ('{user}') does not refer to a valid user on the host")
        return uid
    uid = _lookup(DEFAULT_UID) or _lookup(DEFAULT_USERNAME)
    if uid is None:
        raise TproxyError(f"no UID or username provided, and user with the default UID ('{DEFAULT_UID}') "
                          f"or username ('{DEFAULT_USERNAME}') could not be found")
    return uid


def _lookup(user: str) -> str | None:
    if user.isdigit():
        try:
            return str(pwd.getpwuid(int(user)).pw_uid)
        except KeyError:
            pass
    try:
        return str(pwd.getpwnam(user).pw_uid)
    except KeyError:
        return None


def resolvers(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise TproxyError(f"unable to read file {path}: {e.strerror}") from None
    return [w[1].split("%")[0] for w in (line.split() for line in lines) if len(w) >= 2 and w[0] == "nameserver"]


def has_ipv6() -> bool:
    """A non-loopback IPv6 address exists (Kuma's test); /proc lists none when IPv6 is off."""
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            return any(line.split()[-1] != "lo" for line in f if line.strip())
    except OSError:
        return False


def loopback_name() -> str:
    for name in sorted(os.listdir("/sys/class/net")):
        try:
            with open(f"/sys/class/net/{name}/type", encoding="ascii") as f:
                if f.read().strip() == "772":  # ARPHRD_LOOPBACK
                    return name
        except OSError:
            continue
    return "lo"


# -- running the tools -------------------------------------------------------------------------------


def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise TproxyError(f"{argv[0]}: not found", exit_code=1) from None


def save(tools: Tools) -> str:
    done = run([tools.save])
    if done.returncode != 0:
        raise TproxyError(f"{tools.save} failed: {done.stderr.strip()}", exit_code=1)
    return done.stdout


def restore(tools: Tools, text: str, settings: Settings, *, test: bool = False) -> None:
    """`iptables-restore --noflush`, retried while another program holds the xtables lock."""
    argv = [tools.restore, "--noflush", f"--wait={settings.wait}"]
    if settings.wait_interval:
        argv.append(f"--wait-interval={settings.wait_interval}")
    if test:
        argv.append("--test")
    for attempt in range(settings.max_retries + 1):
        done = run(argv, text)
        if done.returncode == 0:
            return
        error = done.stderr.strip()
        if not any(sign in error.lower() for sign in LOCK_SIGNS) or attempt == settings.max_retries:
            break
        if settings.verbose:
            print(f"# {tools.restore}: xtables lock busy, retry {attempt + 1}/{settings.max_retries} "
                  f"in {settings.sleep_between_retries:g}s", file=sys.stderr)
        time.sleep(settings.sleep_between_retries)
    raise TproxyError(f"unable to restore {'ip6tables' if tools.family == 'IPv6' else 'iptables'} rules: "
                      f"{tools.restore}: {error}", exit_code=1)


def drop_empty_tables(tools: Tools, names: list[str]) -> None:
    """Delete tables the removal left empty, so iptables-save reads as before the install.

    Only with the nf_tables backend (iptables-nft creates a table on first use; an empty one has no
    effect) and when `nft` is installed; with the legacy backend empty tables cannot be removed.
    """
    nft = shutil.which("nft")
    if not names or not nft or "nf_tables" not in run([tools.cmd, "--version"]).stdout:
        return
    family = "ip6" if tools.family == "IPv6" else "ip"
    for name in names:
        run([nft, "delete", "table", family, name])


def lo_has(address: str, lo: str) -> bool:
    return f"inet6 {address}/128" in run(["ip", "-6", "addr", "show", "dev", lo]).stdout


def set_passthrough_v6(lo: str, present: bool) -> None:
    """::6 on lo is the data plane's IPv6 inbound passthrough source (Kuma adds it too)."""
    if lo_has("::6", lo) != present and shutil.which("ip"):
        run(["ip", "-6", "addr", "add" if present else "del", "::6/128", "dev", lo])

