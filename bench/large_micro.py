"""The cost per MiB of relaying 1 MiB responses (the `large` scenario's work), counted instead of
timed: a meshway worker (or nginx, for comparison) proxies GET /1m from the nginx origin over
real loopback sockets; a client in this process asks for the responses one after another on
`--conns` keep-alive connections (round robin) and reads them whole.

    .venv/bin/python bench/large_micro.py --tool callgrind [--target meshway|pure|nginx] [--responses 100]
    .venv/bin/python bench/large_micro.py --tool strace [--target ...]

After `--warmup` responses, `callgrind` zeroes the worker's counters (callgrind_control -z) and
dumps them after `--responses` more (-d): instructions per MiB = Ir of that dump / responses.
`strace` attaches `strace -c -f` to the worker for the measured responses only (syscalls per
MiB, by name). Both are repeatable on a loaded machine, unlike req/s. The proxy runs under the
tool ~50x slower than the origin and the client, so its upstream reads come back full: the
case of a proxy saturated on its core, which is what the `large` scenario measures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from meshbench.meshway import service  # noqa: E402
from meshbench.procs import Proc, clean_env, descendants, free_port, wait_port  # noqa: E402
from meshbench.servers import BODY_1M, start_nginx_proxy, start_origin  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")


def _tool_prefix(tool: str, out: Path) -> list[str]:
    if tool == "callgrind":
        return ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}.%p"]
    return []


def start_target(workdir: Path, target: str, origin: int, tool: str, conf_extra: str,
                 src: Path = ROOT / "src") -> tuple[Proc, int]:
    prefix = _tool_prefix(tool, workdir / "callgrind.out")
    if target == "nginx":
        if prefix:  # nginx's worker is a child of its master: callgrind follows it
            import meshbench.servers as servers
            orig = servers._nginx

            def wrapped(name, wd, http, core, stream=""):
                p = orig(name, wd, http, core, stream)
                p.stop()
                cmd = p.popen.args[3:]  # without taskset -c N
                return Proc(name, prefix + list(cmd), wd / name / "stdout.log", "1")
            servers._nginx = wrapped
        p, port, _ = start_nginx_proxy(workdir, origin, origin)
        return p, port
    from meshway.model import parse_declarative

    d = workdir / target
    d.mkdir(parents=True)
    snap = d / "snapshot.json"
    snap.write_text(json.dumps(parse_declarative(
        {"_format_version": "3.0", "services": [service("origin", origin, [{"name": "all", "paths": ["/"]}])]})))
    conf = d / "meshway.conf"
    impl = "http1_impl = python\n" if target == "pure" else ""
    conf.write_text(f"prefix = {d}\n{impl}{conf_extra}")
    port = free_port()
    proc = Proc(target, prefix + [PY, "-m", "meshway.proxy.worker", "--standalone", "--conf", str(conf), "--listen",
                                  f"127.0.0.1:{port}", "--snapshot", str(snap)], d / "worker.log", "1",
                env=clean_env({"PYTHONPATH": str(src)}))
    if not wait_port(port, 300):
        raise RuntimeError(f"{target} did not start: {proc.tail()}")
    return proc, port


class Client:
    """Keep-alive GETs of one path; reads each response whole (Content-Length or chunked)."""

    def __init__(self, port: int, path: str):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        self.buf = bytearray(4 << 20)
        self.view = memoryview(self.buf)
        self.expect: bytes | None = None

    def get(self) -> int:
        self.sock.sendall(self.req)
        have = 0
        while True:
            n = self.sock.recv_into(self.view[have:])
            if not n:
                raise RuntimeError("closed")
            have += n
            end = self.buf.find(b"\r\n\r\n", 0, have)
            if end >= 0:
                break
        head = bytes(self.buf[:end]).decode("latin-1")
        assert head.startswith("HTTP/1.1 200"), head
        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
        assert m, head
        total = end + 4 + int(m.group(1))
        while have < total:
            n = self.sock.recv_into(self.view[have:])
            if not n:
                raise RuntimeError("closed")
            have += n
        assert have == total, (have, total)
        if self.expect is not None:  # --check: the body is the origin's file, byte for byte
            assert self.view[end + 4:total] == self.expect, "body differs from the origin's"
        return int(m.group(1))


def _wait_routed(port: int, path: str) -> None:
    """Until the worker answers 200 (its snapshot may apply a moment after it listens)."""
    for _ in range(600):
        c = Client(port, path)
        try:
            c.get()
            return
        except AssertionError:
            time.sleep(0.1)
        finally:
            c.sock.close()
    raise RuntimeError("the proxy never answered 200")


def _ticks(pid: int) -> tuple[int, int]:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])


def worker_pid(proc: Proc, target: str) -> int:
    if target != "nginx":
        return proc.pid
    kids = [p for p in descendants([proc.pid])]
    assert kids, "no nginx worker"
    return kids[-1]


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="meshway-large-"))
    origin_p, origin = start_origin(workdir)
    proc, port = start_target(workdir, args.target, origin, args.tool, args.conf.replace(";", "\n"), Path(args.src))
    try:
        _wait_routed(port, args.path)
        clients = [Client(port, args.path) for _ in range(args.conns)]
        if args.check:
            for c in clients:
                c.expect = (workdir / "origin" / "1m.bin").read_bytes()
        for i in range(args.warmup):
            clients[i % len(clients)].get()
        pid = worker_pid(proc, args.target)
        st = None
        if args.tool == "callgrind":
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True, timeout=120)
        elif args.tool == "strace":
            st_out = workdir / "strace.txt"
            st = subprocess.Popen(["strace", "-c", "-f", "-o", str(st_out), "-p", str(pid)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached (strace prints nothing when it is)
        elif args.tool == "perf-trace":
            pt_out = workdir / "perf-trace.txt"
            st = subprocess.Popen(["perf", "trace", "-s", "-o", str(pt_out), "-p", str(pid)],
                                  stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            time.sleep(1.0)
        elif args.tool == "cpu":
            ticks0 = _ticks(pid)
        if args.wrk:  # wrk -c50 as the `large` scenario (the count, not its rate, is the figure)
            out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{args.wrk_conns}", f"-d{args.wrk}s",
                                  f"http://127.0.0.1:{port}{args.path}"], capture_output=True, text=True).stdout
            mib = int(re.search(r"(\d+) requests in", out).group(1))
        else:
            got = 0
            for i in range(args.responses):
                got += clients[i % len(clients)].get()
            mib = got / BODY_1M
        if args.tool == "callgrind":
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True, timeout=120)
            time.sleep(1.0)
            dumps = sorted(workdir.glob(f"callgrind.out.{pid}.*"), key=os.path.getmtime)
            assert dumps, list(workdir.iterdir())
            text = dumps[-1].read_text(errors="replace")
            ir = int(re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M).group(1))
            print(f"{args.target}: {ir / mib / 1e6:.3f} M instructions per MiB ({mib:.0f} MiB, dump {dumps[-1]})")
        elif args.tool == "strace":
            st.send_signal(signal.SIGINT)
            st.wait(30)
            text = st_out.read_text()
            print(f"{args.target}: syscalls per MiB ({mib:.0f} MiB)")
            for line in text.splitlines():
                f = line.split()
                if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
                    print(f"  {f[-1]:<16} {int(f[3]) / mib:8.2f}")
                elif line.strip().endswith("total"):
                    print(f"  {'total':<16} {int(f[2]) / mib:8.2f}")
        elif args.tool == "cpu":
            u, s_ = (b - a for a, b in zip(ticks0, _ticks(pid)))
            per = 1e6 / os.sysconf("SC_CLK_TCK") / mib
            print(f"{args.target}: CPU per MiB user {u * per:.0f} us, system {s_ * per:.0f} us ({mib:.0f} MiB)")
        elif args.tool == "perf-trace":
            st.send_signal(signal.SIGINT)
            st.wait(30)
            print(f"{args.target}: syscalls per MiB ({mib:.0f} MiB)")
            for line in pt_out.read_text().splitlines():
                f = line.split()
                if len(f) >= 8 and f[1].isdigit() and f[0].isidentifier():
                    print(f"  {f[0]:<16} {int(f[1]) / mib:8.2f}")
        else:
            print(f"{args.target}: {mib:.0f} MiB relayed")
    finally:
        for c in locals().get("clients", []):
            c.sock.close()
        proc.stop()
        origin_p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="meshway", choices=["meshway", "pure", "nginx"])
    ap.add_argument("--tool", default="none", choices=["none", "callgrind", "strace", "perf-trace", "cpu"])
    ap.add_argument("--wrk", type=int, default=0, help="SECONDS of wrk -t1 -c50 as the client (perf-trace)")
    ap.add_argument("--wrk-conns", type=int, default=50)
    ap.add_argument("--responses", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--path", default="/1m")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the meshway sources to run (another checkout's, built)")
    ap.add_argument("--check", action="store_true", help="compare each body with the origin's file")
    ap.add_argument("--conf", default="", help="extra meshway.conf lines, ';'-separated")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
