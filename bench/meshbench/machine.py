"""Tools the benchmark needs (installed with apt-get when missing) and the machine description."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

# executable -> Debian package
TOOLS = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk", "h2load": "nghttp2-client",
         "taskset": "util-linux", "openssl": "openssl"}


def missing_tools() -> list[str]:
    return [exe for exe in TOOLS if shutil.which(exe) is None]


def ensure_tools() -> None:
    """`apt-get install -y` whatever is missing (a fresh Debian machine); no-op when all are here."""
    missing = missing_tools()
    if not missing:
        return
    pkgs = sorted({TOOLS[exe] for exe in missing})
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print(f"installing {' '.join(pkgs)} (missing: {' '.join(missing)})", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update"], check=False, timeout=600, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", *pkgs], check=True, timeout=1200, env=env)
    # Debian enables and starts the packaged nginx/haproxy services; we run our own copies
    if missing_tools():
        raise SystemExit(f"still missing after apt-get: {missing_tools()}")


def _version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_rev() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        p = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        # untracked files count: the working tree is shared and much of it is not committed yet
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return p.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _packages() -> dict:
    """Versions of the packages on meshway's hot path, from the venv we run in."""
    from importlib import metadata
    out = {}
    for name in ("uvloop", "httptools", "h2"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe() -> dict:
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {
        "cpu_model": _cpu_model(), "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "os": _version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "nginx": _version(["nginx", "-v"]), "haproxy": _version(["haproxy", "-v"]),
        "wrk": _version(["wrk", "--version"]), "h2load": _version(["h2load", "--version"]),
        "python": sys.version.split()[0], "meshway_git": _git_rev(), **_packages(),
        "pinning": "proxy on core 1; wrk, h2load, clients, sinks and the nginx origin on core 0",
    }
