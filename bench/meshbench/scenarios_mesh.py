"""`mesh`: app to app through two sidecars (Kuma style) against the same app reached directly.

Set-up, in network namespaces the scenario creates (`mwbench-<hex>-sw|a|b`) and deletes at the
end together with every process that ran in them (their iptables rules vanish with them):
- a LAN: a bridge in `sw`, which also holds 10.79.0.1 and runs the control plane with default
  settings (`MESHWAY_ROLE=control_plane meshway start`); host `a` (10.79.0.2) runs the client
  (wrk), host `b` (10.79.0.3) the app (nginx, 1 worker, 5-byte `hello` on ports 8080 and 8081);
  both have a default route;
- on `a` and `b`, as docs/guides/transparent-proxy.md: `meshway install transparent-proxy
  --kuma-dp-user 5678` with port 8081 excluded both ways, and `meshway dp run` as uid 5678 with a
  token, the guide's Dataplane template (b: service `web`, `kuma.io/protocol: http`) and
  `--concurrency 1`;
- `two-sidecars`: wrk on `a` to 10.79.0.3:8080, the app's own address: a's outbound listener
  (HTTP path), a mutual TLS hop, b's inbound listener (HTTP path), nginx. `direct`: wrk on `a`
  to 10.79.0.3:8081, the same nginx, no sidecar (port 8081 is excluded from the rules).
Before measuring, one request must have gone through both data planes (b's access log shows it
with `mtls=yes`), so the figures are of the mesh path and not of a passthrough.

Pinning: both data planes on core 1 (their CPU per request is the two sidecars' together); wrk,
nginx and the control plane on core 0. Figures: wrk -c conns (req/s), then wrk -c1 (unloaded
latency); added p50/p99 = two-sidecars minus direct, in each.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .load import Target, interleave, run_wrk
from .meshway import MESHWAY, meshway_available
from .procs import CORE_LOAD, CORE_PROXY, Proc, clean_env
from .servers import write_app_nginx

CP_IP, A_IP, B_IP = "10.79.0.1", "10.79.0.2", "10.79.0.3"
MESHED_PORT, DIRECT_PORT = 8080, 8081
DP_UID = "5678"  # Kuma's default data plane uid; no user entry needed
# the data plane reads meshway's files wherever the repo lives (e.g. under /root)
CAPS = ["--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
TOOLS = ("ip", "iptables", "iptables-restore", "setpriv", "nginx", "wrk", "curl", "taskset")

DATAPLANE = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: 8080
    tags:
      kuma.io/service: {{ service }}
      kuma.io/protocol: http
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
"""



def why_not() -> str | None:
    """Why the scenario cannot run here (not root, a tool missing, no meshway), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return meshway_available()


class MeshLan:
    """The namespaces, the control plane, the app and both data planes; everything goes on exit."""

    def __init__(self, keep: bool = False) -> None:
        self.tag = secrets.token_hex(3)
        self.ns = {h: f"mwbench-{self.tag}-{h}" for h in ("sw", "a", "b")}
        # readable by uid 5678 (tokens, templates); its own work dirs are chowned to it
        self.root = Path(tempfile.mkdtemp(prefix="meshway-bench-mesh-"))
        self.root.chmod(0o755)
        self.keep = keep
        self.dps: dict[str, Proc] = {}
        self._stack = contextlib.ExitStack()

    # ---- commands in a namespace -----------------------------------------------------------------
    def argv(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def run(self, host: str, *argv: str, timeout: float = 60, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(host, *argv), capture_output=True, text=True, timeout=timeout,
                              env=env or clean_env())
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])} in {host}: rc={done.returncode} "
                               f"{(done.stderr or done.stdout).strip()[-300:]}")
        return done

    def curl(self, host: str, url: str) -> str:
        return self.run(host, "curl", "-s", "--max-time", "3", url, check=False).stdout.strip()

    # ---- set-up --------------------------------------------------------------------------------
    def __enter__(self) -> "MeshLan":
        try:
            self._lan()
            self._control_plane()
            self._app()
            for host, ip, service in (("a", A_IP, "client"), ("b", B_IP, "web")):
                self._transparent_proxy(host)
                self._dp_run(host, ip, service)
            self._ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _lan(self) -> None:
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
            self._stack.callback(subprocess.run, ["ip", "netns", "del", ns], capture_output=True, timeout=10)
            self._stack.callback(_kill_all_in, ns)  # runs before the delete (LIFO)
        self.run("sw", "ip", "link", "set", "lo", "up")
        self.run("sw", "ip", "link", "add", "br0", "type", "bridge")
        self.run("sw", "ip", "addr", "add", f"{CP_IP}/24", "dev", "br0")
        self.run("sw", "ip", "link", "set", "br0", "up")
        for i, (host, ip) in enumerate((("a", A_IP), ("b", B_IP))):
            subprocess.run(["ip", "link", "add", "eth0", "netns", self.ns[host], "type", "veth", "peer", "name",
                            f"p{i}", "netns", self.ns["sw"]], check=True, capture_output=True, timeout=10)
            self.run("sw", "ip", "link", "set", f"p{i}", "master", "br0")
            self.run("sw", "ip", "link", "set", f"p{i}", "up")
            for cmd in (("link", "set", "lo", "up"), ("addr", "add", f"{ip}/24", "dev", "eth0"),
                        ("link", "set", "eth0", "up"), ("route", "add", "default", "dev", "eth0")):
                self.run(host, "ip", *cmd)

    def _control_plane(self) -> None:
        prefix = self.root / "cp"
        env = clean_env({"MESHWAY_PREFIX": str(prefix), "MESHWAY_ROLE": "control_plane"})
        self.run("sw", "taskset", "-c", CORE_LOAD, str(MESHWAY), "start", env=env, timeout=90)
        self._stack.callback(self.run, "sw", str(MESHWAY), "stop", "-p", str(prefix), check=False, timeout=30)

    def _app(self) -> None:
        d = self.root / "app"
        conf = write_app_nginx(d, [f"0.0.0.0:{MESHED_PORT}", f"0.0.0.0:{DIRECT_PORT}"], "hello")
        proc = Proc("app", self.argv("b", "nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf),
                                      "-g", "daemon off;"), d / "stdout.log", CORE_LOAD)
        self._stack.callback(proc.stop)
        _until(lambda: self.curl("a", f"http://{B_IP}:{DIRECT_PORT}/") == "hello", 10, f"nginx on b: {proc.tail()}")

    def _transparent_proxy(self, host: str) -> None:
        self._dp_user(host)
        self.run(host, str(MESHWAY), "install", "transparent-proxy", "--kuma-dp-user", DP_UID,
                 "--exclude-inbound-ports", str(DIRECT_PORT), "--exclude-outbound-ports", str(DIRECT_PORT))

    def _dp_user(self, host: str) -> None:
        """The install wants a user with uid 5678 (Kuma's check). When the machine has none, the
        namespace gets its own /etc/passwd with one (`ip netns exec` mounts /etc/netns/NAME/*),
        so the benchmark adds no user to the machine."""
        try:
            pwd.getpwuid(int(DP_UID))
            return
        except KeyError:
            pass
        etc = Path("/etc/netns") / self.ns[host]
        etc.mkdir(parents=True, exist_ok=True)
        self._stack.callback(shutil.rmtree, etc, ignore_errors=True)
        passwd = Path("/etc/passwd").read_text()
        entry = f"kuma-dp:x:{DP_UID}:{DP_UID}::/nonexistent:/usr/sbin/nologin"
        (etc / "passwd").write_text(passwd.rstrip("\n") + f"\n{entry}\n")

    def _dp_run(self, host: str, ip: str, service: str) -> None:
        name = f"dp-{host}"
        token = self.root / f"token-{name}"
        token.write_text(self.run("sw", str(MESHWAY), "generate", "dataplane-token", "--name", name,
                                  "--mesh", "default").stdout)
        token.chmod(0o644)
        template = self.root / f"dataplane-{name}.yaml"
        template.write_text(DATAPLANE)
        template.chmod(0o644)
        work = self.root / f"work-{host}"
        work.mkdir()
        os.chown(work, int(DP_UID), int(DP_UID))
        cmd = self.argv(host, "setpriv", f"--reuid={DP_UID}", f"--regid={DP_UID}", *CAPS,
                        str(MESHWAY), "dp", "run", f"--cp-address=https://{CP_IP}:5678",
                        f"--dataplane-token-file={token}", f"--dataplane-file={template}",
                        "--dataplane-var", f"name={name}", "--dataplane-var", f"address={ip}",
                        "--dataplane-var", f"service={service}", "--dns-enabled=false",
                        "--concurrency", "1", "--work-dir", str(work))
        proc = Proc(name, cmd, self.root / f"{name}.log", CORE_PROXY, env=clean_env({"HOME": "/tmp"}))
        self._stack.callback(proc.stop)
        self.dps[host] = proc

    def _ready(self) -> None:
        for host, proc in self.dps.items():
            _until(lambda: self.curl(host, "http://127.0.0.1:9902/ready") == "READY", 60,
                   f"data plane on {host} ready: {proc.tail()}")
        _until(lambda: self.curl("a", f"http://{B_IP}:{MESHED_PORT}/") == "hello", 30,
               f"hello through both data planes: {self.dps['a'].tail()}")
        log = self.root / "work-b" / "logs" / "access.log"
        _until(lambda: log.exists() and "mtls=yes" in log.read_text(errors="replace"), 10,
               "b's data plane logged the request with mtls=yes (the path is the mesh, not a passthrough)")

    # ---- what wrk loads --------------------------------------------------------------------------
    def targets(self) -> list[Target]:
        prefix = tuple(self.argv("a"))
        sidecars = lambda: [pid for p in self.dps.values() for pid in p.pids()]  # noqa: E731
        return [Target("direct", f"http://{B_IP}:{DIRECT_PORT}", prefix=prefix),
                Target("two-sidecars", f"http://{B_IP}:{MESHED_PORT}", pids=sidecars, prefix=prefix)]


def _until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"not met within {timeout:.0f} s: {what}")


def _kill_all_in(ns: str) -> None:
    """Whatever still runs in a namespace we made (the daemonized control plane, nginx workers)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


def added(res: dict, base: str, subject: str) -> None:
    """added_p50_ms / added_p99_ms on `subject`: its latency minus `base`'s."""
    a, b = res.get(subject, {}), res.get(base, {})
    if "error" in a or "error" in b or a.get("p50_ms") is None or b.get("p50_ms") is None:
        return
    a["added_p50_ms"] = round(a["p50_ms"] - b["p50_ms"], 3)
    a["added_p99_ms"] = round(a["p99_ms"] - b["p99_ms"], 3)


def run(cfg, workdir: Path, keep: bool = False) -> dict:
    """The scenario on its own (bench/mesh_sidecars.py) or from run.py; raises when it cannot run."""
    why = why_not()
    if why:
        raise RuntimeError(why)
    wrk = lambda conns, secs: (lambda t: run_wrk(t, workdir, conns, secs))  # noqa: E731
    with MeshLan(keep) as lan:
        targets = lan.targets()
        warm = wrk(cfg.conns, cfg.warmup) if cfg.warmup else None
        loaded = interleave(targets, cfg.rounds, wrk(cfg.conns, cfg.duration), warm)
        unloaded = interleave(targets, cfg.rounds, wrk(1, cfg.duration))
        where = str(lan.root) if keep else ""
    res = {**loaded, **{f"{k}-c1": v for k, v in unloaded.items()}}
    added(res, "direct", "two-sidecars")
    added(res, "direct-c1", "two-sidecars-c1")
    ratio = None
    if "error" not in res["two-sidecars"] and "error" not in res["direct"] and res["direct"].get("rps"):
        ratio = round(res["two-sidecars"]["rps"] / res["direct"]["rps"], 3)
    notes = (f"wrk -c{cfg.conns} then -c1 on host a to b's app; two-sidecars = a's dp run -> mTLS -> b's dp run "
             "(both kuma.io/protocol http, 1 worker each, core 1); added = two-sidecars - direct")
    return {"targets": res, "ratios": {"two-sidecars/direct": ratio},
            "notes": notes + (f"; kept {where}" if where else "")}


def mesh(lab) -> dict:
    """run.py's `mesh` scenario."""
    return run(lab.cfg, lab.workdir, lab.keep)
