"""`zones`: web to api through two mesh gateways (api in the other zone) against one zone and direct.

Set-up: docs/guides/multi-zone.md's topology and commands, as tests/netns/test_multi_zone_guide.py
runs them (`TopologyForTest`: namespaces `mwtest-<hex>-<host>`, onprem / WAN / cloud bridges with
nothing routed between them; deleted at the end with every process that ran in them). Changes to
the guide, for measuring: api's app is nginx (1 worker, `hello from api in cloud`) on
10.6.0.10:9090 instead of `python3 -m http.server`; the guide's checks (`curl`, `get zones`,
`config read`) are replaced by waiting for the answer; the data planes and gateways are pinned to
core 1 (`taskset`), wrk and the apps to core 0 (the control planes are not pinned). On the `web`
host a second `api` instance (Dataplane `api-onprem`, inbound 20001 -> nginx on 10.5.0.10:9093,
`hello from api in onprem`, readiness port 9903, no DNS proxy) gives the one-zone path.

Two phases, wrk on `web` each time:
1. before `config write` (api resolves to its own zone): `direct` = 10.5.0.10:9093, the onprem
   nginx with no sidecar; `one-zone` = 127.0.0.1:9091, web's outbound: web's sidecar, mutual TLS,
   api-onprem's sidecar, nginx.
2. after the guide's `config write global_defaults.hcl` and `api_resolver.hcl` (redirect to cloud,
   gateway mode local): `two-gateways` = 127.0.0.1:9091 again: web's sidecar, onprem's gateway,
   the WAN, cloud's gateway, api's sidecar, nginx.
Each phase waits until a curl gets that phase's answer and web's sidecar logs the hop it took (to
api-onprem's inbound, or to onprem's gateway, with mtls=yes), so the figures are of the intended
path. Both paths are TCP through the sidecars (the guide's Dataplanes carry no protocol tag, and
phase 2 also writes `service-defaults api Protocol tcp` over global_defaults.hcl's `http`: the
sidecars forward the stream raw inside mutual TLS), so they compare like with like.
Figures: wrk -c conns, then wrk -c1; added_p50/p99 = path minus direct; on two-gateways also
gateways_added_p50/p99 = two-gateways minus one-zone. CPU per request: the meshway processes of
the path (both sidecars; plus both gateways for two-gateways).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .load import Target, interleave, run_wrk
from .meshway import meshway_available
from .procs import CORE_LOAD, CORE_PROXY
from .servers import write_app_nginx

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("ip", "nginx", "wrk", "curl", "taskset")
OUTBOUND = "http://127.0.0.1:9091/"
LOCAL_APP = "10.5.0.10:9093"
FIRST_HOP = {"onprem": "10.5.0.10:20001", "cloud": "10.5.0.33:8443"}  # api-onprem's inbound, onprem's gateway
PATH_HOSTS = {"one-zone": ("web",), "two-gateways": ("web", "onprem-gw", "cloud-gw", "api")}


API_TCP = '{"Kind": "service-defaults", "Name": "api", "Protocol": "tcp"}'
API_ONPREM = """\
type: Dataplane
mesh: default
name: api-onprem
networking:
  address: 10.5.0.10
  inbound:
  - port: 20001
    servicePort: 9093
    tags:
      kuma.io/service: api
"""


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return meshway_available()


def _topology():
    """The test suite's topology builder (tests/netns/zones_for_test.py), not a copy of it."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.netns.zones_for_test import TopologyForTest, guide_steps_for_test
    return TopologyForTest, guide_steps_for_test


class Zones:
    """The guide's two zones with an api in each; `resolve_to_cloud()` runs the guide's config writes."""

    def __init__(self, workdir: Path) -> None:
        topology, self._steps = _topology()
        self.topo = topology(workdir)
        self.dir = workdir
        self._writes: list[tuple[str, str]] = []

    def __enter__(self) -> "Zones":
        try:
            self.topo.build()
            self._app("api", "10.6.0.10:9090", "cloud")
            self._app("web", LOCAL_APP, "onprem")
            self._guide()
            self._api_onprem()
            self._until_answer("onprem")
        except BaseException:
            self.topo.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.topo.cleanup()

    def run(self, host: str, script: str, timeout: float = 60) -> str:
        done = self.topo.run(host, script, timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{host}: {script[:120]}: rc={done.returncode} {(done.stderr or done.stdout)[-300:]}")
        return done.stdout

    def _app(self, host: str, listen: str, zone: str) -> None:
        d = self.dir / f"nginx-{host}"
        write_app_nginx(d, [listen], f"hello from api in {zone}\\n")
        self.topo.spawn(host, f"taskset -c {CORE_LOAD} nginx -p {d} -e {d}/error.log -c {d}/nginx.conf "
                              "-g 'daemon off;'", d / "stdout.log")
        _until(lambda: f"in {zone}" in self.topo.run(host, f"curl -s --max-time 2 http://{listen}/").stdout,
               10, f"nginx on {host}")

    def _guide(self) -> None:
        for n, (host, command, background) in enumerate(self._steps()):
            if command.startswith("export "):  # evaluated once, then in the host's environment
                key = command[len("export "):].partition("=")[0]
                self.topo.env[host][key] = self.run(host, f'{command}; printf %s "${key}"')
            elif command.startswith("meshway config write"):
                self._writes.append((host, command))  # phase 2
            elif command.startswith(("curl", "meshway get zones", "meshway config read")):
                continue  # the guide's checks; the phases wait for their own answer instead
            elif background:
                if command.startswith("meshway dp run") and "http.server 9090 --bind 10.6.0.10" in command:
                    command = command.partition(" -- ")[0]  # api's app is the nginx already running
                self.topo.spawn(host, f"taskset -c {CORE_PROXY} {command}", self.dir / f"step{n}-{host}.log")
                if "dp run" in command:
                    self._ready(host, 9902)
            else:
                self.run(host, command)

    def _api_onprem(self) -> None:
        self.run("onprem-cp", "meshway generate dataplane-token --name api-onprem --mesh default "
                              "--admin-token $CONSUL_HTTP_TOKEN > api-onprem.token")
        (self.dir / "api-onprem.yaml").write_text(API_ONPREM)
        self.topo.spawn("web", f"taskset -c {CORE_PROXY} meshway dp run --cp-address https://10.5.0.2:5678 "
                               "--dataplane-token-file api-onprem.token --dataplane-file api-onprem.yaml "
                               "--work-dir api-onprem-dp --readiness-port 9903 --dns-enabled=false",
                        self.dir / "api-onprem-dp.log")
        self._ready("web", 9903)

    def _ready(self, host: str, port: int) -> None:
        _until(lambda: self.topo.run(host, f"curl -sf http://127.0.0.1:{port}/ready").returncode == 0, 60,
               f"{host}'s data plane ready on {port}")

    def _until_answer(self, zone: str) -> None:
        """web's outbound answers from api in `zone`, and web's sidecar logged that call's hop: mutual
        TLS to api-onprem's inbound, or to onprem's gateway."""
        _until(lambda: f"hello from api in {zone}" in self.topo.run("web", f"curl -s --max-time 3 {OUTBOUND}").stdout,
               60, f"web's outbound answers from api in {zone}")
        log = self.dir / "web-dp" / "logs" / "access.log"
        hop = f"upstream={FIRST_HOP[zone]} upstream_tls=yes"
        # each check makes a call: the hop logged is that of a call made with the current config
        _until(lambda: self.topo.run("web", f"curl -s --max-time 3 {OUTBOUND}").returncode == 0 and _logged(log, hop),
               10, f"web's sidecar logged {hop} mtls=yes")

    def resolve_to_cloud(self) -> None:
        # global_defaults.hcl makes every service `protocol = "http"` (the HTTP path at both sidecars);
        # api stays tcp, as in phase 1, so the paths differ by the gateways only. Written first: were
        # it last, web's first calls to cloud could take the HTTP path and the TCP hop be logged late
        self.run("onprem-cp", f"echo '{API_TCP}' | meshway config write -")
        for host, command in self._writes:
            self.run(host, command)
        self._until_answer("cloud")

    def target(self, name: str) -> Target:
        prefix = ("ip", "netns", "exec", self.topo.ns["web"])
        if name == "direct":
            return Target(name, f"http://{LOCAL_APP}", prefix=prefix)
        return Target(name, OUTBOUND.rstrip("/"), prefix=prefix, pids=lambda: self._meshway_pids(PATH_HOSTS[name]))

    def _meshway_pids(self, hosts) -> list[int]:
        """The data planes and gateways of the path: meshway processes in those namespaces."""
        pids = []
        for host in hosts:
            out = subprocess.run(["ip", "netns", "pids", self.topo.ns[host]], capture_output=True, text=True,
                                 timeout=10).stdout
            for pid in out.split():
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if b"meshway" in cmd and b"http.server" not in cmd:
                    pids.append(int(pid))
        return pids


def _logged(log: Path, hop: str) -> bool:
    return log.exists() and any(hop in line and "mtls=yes" in line for line in log.read_text().splitlines())


def _until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"not met within {timeout:.0f} s: {what}")


def added(res: dict, base: str, subject: str, key: str = "added") -> None:
    a, b = res.get(subject, {}), res.get(base, {})
    if "error" in a or "error" in b or a.get("p50_ms") is None or b.get("p50_ms") is None:
        return
    a[f"{key}_p50_ms"] = round(a["p50_ms"] - b["p50_ms"], 3)
    a[f"{key}_p99_ms"] = round(a["p99_ms"] - b["p99_ms"], 3)


def _phase(zones: Zones, names, cfg, workdir: Path) -> dict:
    targets = [zones.target(n) for n in names]
    wrk = lambda conns, secs: (lambda t: run_wrk(t, workdir, conns, secs))  # noqa: E731
    warm = wrk(cfg.conns, cfg.warmup) if cfg.warmup else None
    loaded = interleave(targets, cfg.rounds, wrk(cfg.conns, cfg.duration), warm)
    unloaded = interleave(targets, cfg.rounds, wrk(1, cfg.duration))
    return {**loaded, **{f"{k}-c1": v for k, v in unloaded.items()}}


def run(cfg, workdir: Path, keep: bool = False) -> dict:
    """The scenario alone (bench/zones_gateways.py) or from run.py; raises when it cannot run."""
    why = why_not()
    if why:
        raise RuntimeError(why)
    topo_dir = workdir / "zones"
    topo_dir.mkdir(parents=True, exist_ok=True)
    with Zones(topo_dir) as zones:
        res = _phase(zones, ("direct", "one-zone"), cfg, workdir)
        zones.resolve_to_cloud()
        res.update(_phase(zones, ("two-gateways",), cfg, workdir))
        namespaces = f"mwtest-{zones.topo.tag}-"
    for c1 in ("", "-c1"):
        added(res, f"direct{c1}", f"one-zone{c1}")
        added(res, f"direct{c1}", f"two-gateways{c1}")
        added(res, f"one-zone{c1}", f"two-gateways{c1}", "gateways_added")
    ratio = None
    if all("error" not in res[n] and res[n].get("rps") for n in ("one-zone", "two-gateways")):
        ratio = round(res["two-gateways"]["rps"] / res["one-zone"]["rps"], 3)
    notes = (f"wrk -c{cfg.conns} then -c1 on web; one-zone = web's dp run -> mTLS -> api-onprem's dp run; "
             "two-gateways = web's dp run -> onprem gw -> WAN -> cloud gw -> api's dp run (after the resolver); "
             "data planes and gateways on core 1; added = path - direct, gateways_added = two-gateways - one-zone")
    return {"targets": res, "ratios": {"two-gateways/one-zone": ratio}, "namespaces": namespaces,
            "notes": notes + (f"; kept {topo_dir}" if keep else "")}


def zones(lab) -> dict:
    """run.py's `zones` scenario."""
    return run(lab.cfg, lab.workdir, lab.keep)
