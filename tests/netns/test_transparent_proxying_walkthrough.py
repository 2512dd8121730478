"""Kong Mesh's "Configure transparent proxying" document, step by step, with meshway's commands.

Three hosts (network namespaces) on one LAN (veth pairs to a bridge in a fourth namespace), each
with a default route (connections to 240.0.0.0/4 need one): the control plane (10.78.0.1, also
the LAN's DNS server and a web server outside the mesh) and two service hosts, A (10.78.0.2,
demo-client) and B (10.78.0.3, web and a server-first greeter). On each service host, as the
document says: a `kuma-dp` user, `meshway install transparent-proxy --kuma-dp-user kuma-dp
--redirect-dns --exclude-inbound-ports 22`, the document's Dataplane template, and
`meshway dp run` as `kuma-dp` with the document's flags; the apps run as `nobody`. Then: the old
addresses work through both data planes (mutual TLS between them: tcpdump on the wire sees TLS
only), `<service>.mesh` names, other names forwarded (NXDOMAIN stays NXDOMAIN), passthrough
outside the mesh, the control plane down (names and traffic keep working, a data plane restarts from its cache), VIPs stable
across a control plane restart, and uninstall restoring the exact rules.

`runuser -u kuma-dp --` of the document becomes `setpriv` with the same uid here: the test's
interpreter lives under /root, which only a process with `dac_read_search` may read.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.netns.conftest import PYTHON, REPO, NetnsForTest
from tests.netns.pcap_for_test import CaptureForTest

pytestmark = pytest.mark.netns

MESHWAY = str(REPO / ".venv" / "bin" / "meshway")
CP_IP, A_IP, B_IP = "10.78.0.1", "10.78.0.2", "10.78.0.3"
KUMA_DP, NOBODY = "5678", "65534"
CAPS = ["--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
ENV = {"PATH": f"{REPO / '.venv' / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp"}

# The document's Dataplane resource, as written (host A, demo-client).
DOC_DATAPLANE = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: {{ port }}
    tags:
      kuma.io/service: demo-client
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
"""
# Host B: the same shape, two services (web over HTTP, a greeter that speaks first).
B_DATAPLANE = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: {{ port }}
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
  - port: 19000
    tags:
      kuma.io/service: greeter
      kuma.io/protocol: tcp
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
"""


def as_user(uid: str, *argv: str) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", *CAPS, *argv]


class Host(NetnsForTest):
    def sh(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.run(*argv, check=False, timeout=timeout, env=ENV)

    def out(self, *argv: str, timeout: float = 30) -> str:
        return self.sh(*argv, timeout=timeout).stdout.decode().strip()

    def curl(self, url: str) -> str:
        done = self.sh("curl", "-sS", "--max-time", "5", url)
        return done.stdout.decode().strip() if done.returncode == 0 else f"error: {done.stderr.decode().strip()}"

    def dig(self, name: str, *extra: str) -> str:
        return self.out("dig", "+time=3", "+tries=1", name, *extra)

    def rules(self) -> str:
        out = self.run("iptables-save").stdout.decode()
        return "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in out.splitlines() if not line.startswith("#"))


def eventually(check, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what or 'condition'} not met within {timeout} s (last: {last!r})")


@pytest.fixture
def lan(request):
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2")
    tag = secrets.token_hex(3)
    switch = Host(f"mwtest-{tag}-sw")
    hosts = {name: Host(f"mwtest-{tag}-{name}") for name in ("cp", "a", "b")}
    for name, host in hosts.items():
        host.label = name
    for ns in (switch, *hosts.values()):
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True, timeout=10)
        request.addfinalizer(ns.cleanup)
        request.addfinalizer(lambda ns=ns: _kill_all_in(ns.name))  # runs first: daemons the test did not spawn
        ns.run("ip", "link", "set", "lo", "up")
    switch.run("ip", "link", "add", "br0", "type", "bridge")
    switch.run("ip", "link", "set", "br0", "up")
    for i, (name, ip) in enumerate((("cp", CP_IP), ("a", A_IP), ("b", B_IP))):
        ns = hosts[name]
        subprocess.run(["ip", "link", "add", "eth0", "netns", ns.name, "type", "veth", "peer", "name", f"p{i}",
                        "netns", switch.name], check=True, capture_output=True, timeout=10)
        switch.run("ip", "link", "set", f"p{i}", "master", "br0")
        switch.run("ip", "link", "set", f"p{i}", "up")
        ns.run("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        ns.run("ip", "link", "set", "eth0", "up")
        ns.run("ip", "route", "add", "default", "dev", "eth0")
        etc = Path("/etc/netns") / ns.name  # `ip netns exec` mounts it over /etc/resolv.conf
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {CP_IP}\n")
        request.addfinalizer(lambda etc=etc: shutil.rmtree(etc, ignore_errors=True))
    return hosts


def _kill_all_in(name: str) -> None:
    """Every process still in the namespace (a daemonized control plane, a backgrounded data plane)."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def start_control_plane(cp: Host, prefix: Path) -> None:
    done = cp.run("env", f"MESHWAY_PREFIX={prefix}", "MESHWAY_ROLE=control_plane", MESHWAY, "start",
                  check=False, timeout=60, env=ENV)
    assert done.returncode == 0 and b"meshway started" in done.stdout, done.stderr.decode()


def dp_run(host: Host, work: Path, token: Path, template: Path, name: str, address: str) -> subprocess.Popen:
    """The document's command line, `meshway dp` in place of `/usr/bin/kuma-dp`."""
    log = (work.parent / f"{name}.log").open("a")
    return host.spawn(*as_user(KUMA_DP, MESHWAY, "dp", "run",
                               f"--cp-address=https://{CP_IP}:5678",
                               f"--dataplane-token-file={token}",
                               f"--dataplane-file={template}",
                               f"--dataplane-var", f"name={name}",
                               f"--dataplane-var", f"address={address}",
                               f"--dataplane-var", "port=8080",
                               "--binary-path", "/usr/local/bin/envoy",
                               "--work-dir", str(work)),
                      stdout=log, stderr=subprocess.STDOUT, env=ENV)


def ready(host: Host) -> bool:
    return host.out("curl", "-s", "--max-time", "2", "http://127.0.0.1:9902/ready") == "READY"


def test_the_documents_workflow(lan, tmp_path_factory):
    cp, a, b = lan["cp"], lan["a"], lan["b"]
    shared = Path(f"/tmp/mwtest-tp-{secrets.token_hex(4)}")  # readable by kuma-dp (pytest's tmp is root's only)
    shared.mkdir(mode=0o755)
    try:
        _walkthrough(cp, a, b, shared)
    except BaseException:  # the data planes' and control plane's logs say why
        for log in sorted(shared.glob("**/*.log")):
            print(f"==== {log}\n{log.read_text()[-6000:]}")
        raise
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _walkthrough(cp: Host, a: Host, b: Host, shared: Path) -> None:
    # The LAN: a DNS server and a web server outside the mesh on the control plane's host.
    zone = shared / "zone.txt"
    zone.write_text(f"outside.test. 60 IN A {CP_IP}\n")
    dns = cp.spawn(PYTHON, str(REPO / "tests" / "netns" / "dns53_for_test.py"), str(zone), CP_IP)
    assert dns.stdout.readline().startswith(b"ready")
    site = shared / "site"
    site.mkdir()
    (site / "index.html").write_text("outside the mesh\n")
    cp.spawn(PYTHON, "-m", "http.server", "9000", "--bind", CP_IP, "--directory", str(site))

    # Apps as nobody: web on B:8080, a greeter that speaks first on B:19000, demo-client on A:8080.
    for host, text in ((b, "web on B"), (a, "demo-client on A")):
        root = shared / host.label
        root.mkdir()
        (root / "index.html").write_text(f"{text}\n")
        host.spawn(*as_user(NOBODY, PYTHON, "-m", "http.server", "8080", "--directory", str(root)))
        host.wait_listening("0.0.0.0", 8080)
    b.spawn(*as_user(NOBODY, "ncat", "--listen", "--keep-open", "--sh-exec", "echo Hello from B", "0.0.0.0", "19000"))
    b.wait_listening("0.0.0.0", 19000)
    assert a.curl(f"http://{B_IP}:8080/") == "web on B"  # before the mesh

    # The control plane, with default settings (its own host, as the document says).
    prefix = shared / "cp"
    start_control_plane(cp, prefix)
    tokens = {}
    for name in ("dp-a", "dp-b"):
        made = cp.sh(MESHWAY, "generate", "dataplane-token", "--name", name, "--mesh", "default")
        assert made.returncode == 0, made.stderr.decode()
        tokens[name] = shared / f"token-{name}"
        tokens[name].write_text(made.stdout.decode())
        tokens[name].chmod(0o644)

    # Setting up the service hosts: the user, then the rules.
    before = {h.label: h.rules() for h in (a, b)}
    for host in (a, b):
        assert host.sh("bash", "-c", "id kuma-dp >/dev/null 2>&1 || useradd -u 5678 -U kuma-dp").returncode == 0
        done = host.sh(MESHWAY, "install", "transparent-proxy", "--kuma-dp-user", "kuma-dp", "--redirect-dns",
                       "--exclude-inbound-ports", "22")
        assert done.returncode == 0, done.stderr.decode()

    # The data plane resources and `meshway dp run` as kuma-dp.
    templates = {"a": shared / "dpyaml-demo", "b": shared / "dpyaml-web"}
    templates["a"].write_text(DOC_DATAPLANE)
    templates["b"].write_text(B_DATAPLANE)
    works = {h.label: shared / f"work-{h.label}" for h in (a, b)}
    for path in works.values():
        path.mkdir()
        os.chown(path, int(KUMA_DP), int(KUMA_DP))
    procs = {"a": dp_run(a, works["a"], tokens["dp-a"], templates["a"], "dp-a", A_IP),
             "b": dp_run(b, works["b"], tokens["dp-b"], templates["b"], "dp-b", B_IP)}
    for host in (a, b):
        eventually(lambda: ready(host), 30, f"{host.label}'s data plane ready")
    log_a = (shared / "dp-a.log").read_text()
    assert "--binary-path is ignored" in log_a

    # "You can now reach the service on the same IP and port as before", through both data planes.
    eventually(lambda: a.curl(f"http://{B_IP}:8080/") == "web on B", what="old address")
    access_b = works["b"] / "logs" / "access.log"
    # web is kuma.io/protocol http: B's inbound takes the HTTP path too, one access log line per request
    eventually(lambda: '"GET / HTTP/1.1" 200' in access_b.read_text(), what="B's inbound HTTP access log")
    line_b = next(ln for ln in access_b.read_text().splitlines() if '"GET / HTTP/1.1" 200' in ln)
    assert "mtls=yes peer=spiffe://" in line_b, line_b  # the calling sidecar, verified
    assert "route=inbound-0 mode=mesh" not in access_b.read_text()  # not relayed as TCP
    access_a = works["a"] / "logs" / "access.log"  # web is kuma.io/protocol http: A took the HTTP path
    eventually(lambda: '"GET / HTTP/1.1" 200' in access_a.read_text(), what="A's HTTP access log")
    assert b.curl(f"http://{A_IP}:8080/") == "demo-client on A"
    # On the wire between the hosts (tcpdump on A's eth0): the hops carry TLS records only, never
    # the request, the page or the greeting in the clear.
    capture = CaptureForTest(a, shared / "eth0.pcap", iface="eth0")
    assert a.curl(f"http://{B_IP}:8080/") == "web on B"
    assert a.out("ncat", "--recv-only", "-w", "5", B_IP, "19000") == "Hello from B"  # server speaks first
    segments = capture.stop()
    for port in (8080, 19000):
        hop = [s for s in segments if s.between(A_IP, (B_IP, port)) and s.payload]
        # a handshake, or application data on a mutual TLS connection A's data plane kept in its pool
        assert hop and hop[0].src[0] == A_IP and hop[0].payload[:2] in (b"\x16\x03", b"\x17\x03"), port
        assert not any(clear in s.payload for s in hop for clear in (b"GET /", b"web on B", b"Hello from B"))

    # Kong Mesh DNS: <service>.mesh has a VIP; curl reaches the service on port 80 of it.
    vip = a.dig("web.mesh", "+short")
    assert vip.startswith("240."), vip
    assert a.dig("greeter.mesh", "+short").startswith("240.")
    assert a.out("dig", "+short", "+tcp", "-p", "15053", "@127.0.0.1", "web.mesh") == vip
    assert a.curl("http://web.mesh/") == "web on B"
    _retries(cp, a, shared)
    # other names go to the host's resolver unchanged; NXDOMAIN stays NXDOMAIN
    assert a.dig("outside.test", "+short") == CP_IP
    assert "status: NXDOMAIN" in a.dig("nowhere.test")
    # a destination outside the mesh passes through unchanged
    assert a.curl(f"http://{CP_IP}:9000/") == "outside the mesh"
    assert a.curl("http://outside.test:9000/") == "outside the mesh"

    inspect = cp.out(MESHWAY, "inspect", "dataplanes")
    rows = {line.split()[1]: line for line in inspect.splitlines()[1:]}
    assert "Online" in rows["dp-a"] and "Online" in rows["dp-b"], inspect

    # The control plane goes down: names and traffic keep working; B's data plane restarts from its cache.
    assert cp.sh(MESHWAY, "stop", "-p", str(prefix)).returncode == 0
    assert a.dig("web.mesh", "+short") == vip
    assert a.curl("http://web.mesh/") == "web on B"
    procs["b"].send_signal(15)
    procs["b"].wait(30)
    procs["b"] = dp_run(b, works["b"], tokens["dp-b"], templates["b"], "dp-b", B_IP)
    eventually(lambda: b.dig("web.mesh", "+short") == vip, 30, "B resolves from its cache")
    assert eventually(lambda: a.curl("http://web.mesh/") == "web on B", what="traffic after B's restart")

    # The control plane comes back: same VIP (persisted), both data planes online again.
    start_control_plane(cp, prefix)
    eventually(lambda: all(f" Online " in line for line in cp.out(MESHWAY, "inspect", "dataplanes").splitlines()[1:]
                           ) and len(cp.out(MESHWAY, "get", "dataplanes").splitlines()) == 3, 30, "both online")
    assert a.dig("web.mesh", "+short") == vip

    # SIGTERM deregisters at once (kuma#13403); uninstall restores the exact rules.
    for name, host in (("a", a), ("b", b)):
        procs[name].send_signal(15)
        assert procs[name].wait(30) == 0
    assert cp.out(MESHWAY, "get", "dataplanes").splitlines()[1:] == []
    for host in (a, b):
        done = host.sh(MESHWAY, "uninstall", "transparent-proxy")
        assert done.returncode == 0, done.stderr.decode()
        assert host.rules() == before[host.label]
    assert a.curl(f"http://{B_IP}:8080/") == "web on B"  # as before the mesh
    cp.sh(MESHWAY, "stop", "-p", str(prefix))


GHOST = """\
type: Dataplane
mesh: default
name: ghost
networking:
  address: 10.78.0.1
  inbound:
  - port: 9
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
"""


def _retries(cp: Host, a: Host, shared: Path) -> None:
    """The HTTP path retries: a second `web` endpoint where nothing listens (the control plane's
    host, port 9: refused at once) joins web.mesh; every request still gets B's page, the failed
    attempts going on to the next endpoint instead of reaching the client."""
    ghost = shared / "ghost.yaml"
    ghost.write_text(GHOST)
    assert cp.sh(MESHWAY, "apply", "-f", str(ghost)).returncode == 0
    log = shared / "work-a" / "logs" / "error.log"
    try:
        for _ in range(60):  # until A's data plane has tried the ghost at least once (bounded)
            assert a.curl("http://web.mesh/") == "web on B"
            if f"{CP_IP}:9" in log.read_text():
                break
        else:
            raise AssertionError(f"A's data plane never tried the ghost endpoint: {log.read_text()[-3000:]}"
                                 f"{(shared / 'dp-a.log').read_text()[-2000:]}")
        assert all(a.curl("http://web.mesh/") == "web on B" for _ in range(6))  # round robin hits the ghost too
    finally:
        cp.sh("curl", "-s", "-X", "DELETE", "http://127.0.0.1:8001/meshes/default/dataplanes/ghost")
