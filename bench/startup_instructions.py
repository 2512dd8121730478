"""Instructions each process runs from `meshway start` to the first proxied request (issue 17, item 6).

    .venv/bin/python bench/startup_instructions.py [--runs 1] [--admin] [--keep DIR]

Wall-clock start-up (`startup_first_request.py`) means something on a quiet machine only; this
counts instructions instead, which hold under load. It runs `meshway start` for the same DB-less
node as `startup_first_request.py` (fresh prefix: the first start makes the default certificate
and the node id) under `valgrind --tool=callgrind --trace-children=yes`, sends `GET /` until the
proxy answers 200, then has every process still running dump its counters (`callgrind_control
-d`; a process blocked in epoll takes it at the latest on the stop signal) before `meshway stop`. It prints the instructions of each process: the CLI (`meshway
start`: all of it, it has exited once the node is ready), the master and the worker (up to
the first answer). With the Admin API off the master does little after it spawned its worker,
so the critical path is about CLI + master + worker; with `--admin` the CLI waits for the
master's servers too. `--keep DIR` keeps the callgrind files for `callgrind_annotate`.
The environment's PYTHONDONTWRITEBYTECODE is dropped: an installed package has its bytecode.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup_first_request import MESHWAY, _Origin, answered, free_port, write_node  # noqa: E402


def _role(cmdline: str) -> str:
    if "meshway.node.worker" in cmdline:
        return "worker"
    if "meshway.node" in cmdline:
        return "master"
    if " start" in cmdline:
        return "cli"
    return cmdline.split()[-1] if cmdline else "?"


def _parts(out_dir: Path) -> dict[str, list[tuple[str, str, int]]]:
    """Per process: its command line and its dumps in order, as (trigger, cmd, instructions)."""
    by_pid: dict[str, list[tuple[int, str, str, int]]] = {}
    for f in out_dir.glob("cg.*"):
        text = f.read_text(errors="replace")
        cmd = re.search(r"^cmd: (.*)$", text, re.M)
        part = re.search(r"^part: (\d+)", text, re.M)
        trigger = re.search(r"^desc: Trigger: (.*)$", text, re.M)
        summary = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        by_pid.setdefault(f.name.split(".")[1], []).append(
            (int(part.group(1)) if part else 1, trigger.group(1) if trigger else "", cmd.group(1) if cmd else "",
             int(summary.group(1)) if summary else 0))
    return {pid: [p[1:] for p in sorted(parts)] for pid, parts in by_pid.items()}


def _totals(out_dir: Path) -> dict[str, int]:
    """Per role: instructions until the first answer (`<role>`; for a process that exited
    before, all of it) and until the process spawned its first child (`<role>_to_spawn`)."""
    out: dict[str, int] = {}
    for parts in _parts(out_dir).values():
        role = _role(parts[0][1])
        ran = to_spawn = 0
        spawned = False
        for trigger, _, count in parts:
            ran += count
            if not spawned:
                to_spawn += count
                spawned = "subprocess_fork_exec" in trigger
            if trigger == "dump":  # callgrind_control -d: the first answer came
                break
        out[role] = out.get(role, 0) + ran
        if spawned:
            out[f"{role}_to_spawn"] = out.get(f"{role}_to_spawn", 0) + to_spawn
    return out


def one_run(origin: int, admin: bool, keep: Path | None, timeout: float = 600.0) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="meshway-startinstr-") as tmp:
        root = Path(tmp)
        proxy = free_port()
        conf = write_node(root, origin, proxy, admin)
        prefix = str(root / "node")
        cg = root / "cg"
        cg.mkdir()
        cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--dump-instr=no",
               "--dump-before=subprocess_fork_exec",
               f"--callgrind-out-file={cg}/cg.%p", MESHWAY, "start", "-p", prefix, "-c", str(conf)]
        cli = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        try:
            while not answered(proxy):
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"no 200 within {timeout} s")
                time.sleep(0.05)
            # An idle process takes the dump request when it next wakes (at the latest on the
            # stop signal, before it runs any of its stop handling): part 1 is the count so far.
            subprocess.Popen(["callgrind_control", "-d"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2.0)
            cli.wait(timeout)
        finally:
            subprocess.run([MESHWAY, "stop", "-p", prefix], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=300)
        counts = _totals(cg)
        if keep:
            shutil.copytree(cg, keep / f"run-{int(time.time())}", dirs_exist_ok=True)
        return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--admin", action="store_true")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    origin = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        runs = [one_run(origin.server_address[1], args.admin, args.keep) for _ in range(args.runs)]
    finally:
        origin.shutdown()
    rows = [("cli", "cli_to_spawn", "meshway start, until it spawns the master"),
            ("master", "master_to_spawn", "master, until it spawns its worker"),
            ("worker", None, "worker, until it answered")]
    for role, to_spawn, what in rows:
        values = [r.get(role, 0) for r in runs]
        line = f"{role:7s} {statistics.median(values) / 1e6:8.1f}M instructions"
        if to_spawn:
            line += f", {statistics.median(r.get(to_spawn, 0) for r in runs) / 1e6:.1f}M of them before it spawns"
        print(line + f"  (runs: {', '.join(f'{v / 1e6:.1f}M' for v in values)})")
    path = [r.get("cli_to_spawn", 0) + r.get("master_to_spawn", 0) + r.get("worker", 0) for r in runs]
    total = [sum(r.get(k, 0) for k in ("cli", "master", "worker")) for r in runs]
    print(f"critical path (CLI to spawn + master to spawn + worker): {statistics.median(path) / 1e6:.1f}M; "
          f"all processes: {statistics.median(total) / 1e6:.1f}M")

if __name__ == "__main__":
    main()
