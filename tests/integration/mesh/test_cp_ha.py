"""Several control plane nodes on one PostgreSQL serve `meshway dp run` data planes together: a token
or a resource written through one node works on the other, and a data plane whose control plane is
killed (-9) moves to another one, proxying all along, then follows changes written there."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.helpers.node import MESHWAY, clean_env, free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import CLIENT, WEB, dig, wait_until

OTHER = """\
type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    servicePort: {port}
    tags:
      kuma.io/service: {name}
"""


class Cp:
    """One control plane node of the cluster (its own prefix, the shared database)."""

    def __init__(self, node_factory, name: str, db) -> None:
        self.dp_port = free_port()
        # db_update_frequency = 3600: a change made through the other node can only arrive here in
        # the test's time because PostgreSQL notifies this node of it (LISTEN/NOTIFY), not by polling
        self.node = node_factory(name, role="control_plane", proxy_listen="off", db_update_frequency="3600",
                                 mesh_dp_listen=f"127.0.0.1:{self.dp_port}", **db.settings())

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.dp_port}"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([MESHWAY, *args, "--cp-address", self.node.admin], capture_output=True, text=True,
                              env=clean_env(), timeout=60, input=stdin)

    def apply(self, text: str) -> None:
        done = self.cli("apply", "-f", "-", stdin=text)
        assert done.returncode == 0, done.stderr

    def token(self, tmp: Path, name: str) -> Path:
        made = self.cli("generate", "dataplane-token", "--name", name, "--mesh", "default", "--valid-for", "1h")
        assert made.returncode == 0, made.stderr
        path = tmp / f"token-{name}"
        path.write_text(made.stdout.strip())
        return path

    def kill(self) -> None:
        """kill -9: no goodbye to anyone, sockets closed by the kernel."""
        pid = int((self.node.prefix / "pids" / "meshway.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), timeout=10, what="the control plane gone")
        (self.node.prefix / "pids" / "meshway.pid").unlink(missing_ok=True)
        self.node.started = False

    def dataplanes(self) -> dict[str, dict]:
        items = httpx.get(f"{self.node.admin}/meshes/default/dataplanes+insights").json()["items"]
        return {i["name"]: i for i in items}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Dp:
    def __init__(self, tmp: Path, name: str, template: str, cp_flags: list[str], token: Path, *variables: str,
                 app: list[str] = ()) -> None:
        self.ready_port, self.dns_port = free_port(), free_port()
        self.template = tmp / f"{name}.yaml"
        self.template.write_text(template)
        self.work = tmp / f"work-{name}"
        cmd = [MESHWAY, "dp", "run", *cp_flags, f"--dataplane-token-file={token}",
               f"--dataplane-file={self.template}", "--readiness-port", str(self.ready_port),
               "--dns-proxy-port", str(self.dns_port), "--work-dir", str(self.work)]
        for v in variables:
            cmd += ["--dataplane-var", v]
        if app:
            cmd += ["--", *app]
        self.log = open(tmp / f"{name}.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=clean_env(),
                                     start_new_session=True)

    def ready(self) -> bool:
        return httpx.get(f"http://127.0.0.1:{self.ready_port}/ready", timeout=2).status_code == 200

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def control_plane(self) -> str | None:
        """host:port of the control plane it last connected to (its log says so)."""
        found = re.findall(r"connected to control plane (\S+) as", self.output())
        return found[-1] if found else None


@pytest.fixture
def dps():
    running: list[Dp] = []
    yield running
    for dp in running:
        try:
            os.killpg(dp.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        dp.proc.wait()
        dp.log.close()


class Traffic:
    """Sequential requests through the client's outbound until stopped (at most `limit`)."""

    def __init__(self, url: str, limit: int = 20000) -> None:
        self.url, self.limit = url, limit
        self.ok, self.failed = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(self.limit):
                if self._stop.is_set():
                    return
                try:
                    r = client.get(self.url)
                    if r.status_code == 200 and r.text == "hello from web\n":
                        self.ok += 1
                    else:
                        self.failed.append(f"{r.status_code} {r.text[:80]!r}")
                except httpx.HTTPError as e:
                    self.failed.append(repr(e))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.mark.postgres
def test_data_planes_fail_over_to_another_control_plane_with_no_request_lost(node_factory, postgres_db, tmp_path,
                                                                             dps):
    one, two = Cp(node_factory, "cp-one", postgres_db), Cp(node_factory, "cp-two", postgres_db)
    assert one.node.cli("migrations", "bootstrap").returncode == 0
    one.node.start()
    two.node.start()
    # one CA for the cluster: a token issued through one node is accepted by the other
    ca_one = (one.node.prefix / "mesh" / "ca.crt").read_text()
    assert ca_one == (two.node.prefix / "mesh" / "ca.crt").read_text()

    web_port, app_port, outbound = free_port(), free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    both = f"--cp-address={one.url},{two.url}"  # comma separated ...
    web = Dp(tmp_path, "web", WEB, [both], two.token(tmp_path, "web"), "name=web", "address=127.0.0.1",
             f"port={web_port}", f"app_port={app_port}", app=app)
    dps.append(web)
    client = Dp(tmp_path, "client", CLIENT, [f"--cp-address={two.url}", f"--cp-address={one.url}"],  # ... or repeated
                one.token(tmp_path, "client"), f"outbound={outbound}")
    dps.append(client)
    wait_until(web.ready, timeout=60, what="web ready")
    wait_until(client.ready, timeout=60, what="client ready")
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{outbound}/hello.txt", timeout=3).text == "hello from web\n",
               timeout=30, what="client to web through both data planes")

    cps = {f"127.0.0.1:{cp.dp_port}": cp for cp in (one, two)}
    wait_until(lambda: client.control_plane() in cps, what="the client's control plane")
    home = cps[client.control_plane()]
    survivor = two if home is one else one
    # a resource written through the node the client is not on reaches the client
    survivor.apply(OTHER.format(name="billing", port=free_port()))
    wait_until(lambda: dig(client.dns_port, "billing.mesh") != "", timeout=30, what="billing.mesh on the client")
    # both nodes show both data planes Online (insights are in the database)
    for cp in (one, two):
        wait_until(lambda: {n: i["dataplaneInsight"]["subscriptions"][-1].get("disconnectTime") is None
                            for n, i in cp.dataplanes().items() if n in ("web", "client")}
                   == {"web": True, "client": True}, timeout=30, what="both Online on every node")

    traffic = Traffic(f"http://127.0.0.1:{outbound}/hello.txt")
    wait_until(lambda: traffic.ok >= 20, what="traffic flowing")
    on_home = [dp for dp in (web, client) if dp.control_plane() == f"127.0.0.1:{home.dp_port}"]
    home.kill()
    for dp in on_home:  # each data plane that was on it moves to the survivor
        wait_until(lambda: dp.control_plane() == f"127.0.0.1:{survivor.dp_port}", timeout=60,
                   what="the data plane on the surviving control plane")
    before = traffic.ok
    wait_until(lambda: traffic.ok >= before + 20, what="traffic after the failover")
    # a change written through the survivor reaches the data planes that moved
    survivor.apply(OTHER.format(name="payments", port=free_port()))
    wait_until(lambda: dig(client.dns_port, "payments.mesh") != "", timeout=30, what="payments.mesh on the client")
    before = traffic.ok
    wait_until(lambda: traffic.ok >= before + 20, what="traffic after the change")
    traffic.stop()
    assert traffic.failed == [], traffic.failed[:5]
    assert client.proc.poll() is None and web.proc.poll() is None
    assert f"trying control plane 127.0.0.1:{survivor.dp_port}" in client.output()
    # the survivor sees both Online, on itself now
    wait_until(lambda: all(i["dataplaneInsight"]["subscriptions"][-1].get("disconnectTime") is None
                           for n, i in survivor.dataplanes().items() if n in ("web", "client")),
               timeout=30, what="both Online on the survivor")
    subs = survivor.dataplanes()["client"]["dataplaneInsight"]["subscriptions"]
    if client in on_home:
        assert len(subs) >= 2 and subs[-1]["controlPlaneInstanceId"] != subs[-2]["controlPlaneInstanceId"]


def test_a_bad_control_plane_list_names_the_flag(tmp_path):
    for given, said in ((["--cp-address=https://127.0.0.1:5678,"], "an empty URL in the list"),
                        (["--cp-address=https://127.0.0.1:5678", "--cp-address=http://127.0.0.1:5679"],
                         "--cp-address 'http://127.0.0.1:5679': expected https://HOST:PORT")):
        done = subprocess.run([MESHWAY, "dp", "run", *given, "--dataplane-token=x.y.z", "--name", "web",
                               "--work-dir", str(tmp_path / "w")], capture_output=True, text=True, timeout=60,
                              env=clean_env())
        assert done.returncode == 1 and said in done.stderr, done.stderr


@pytest.mark.postgres
def test_one_data_plane_per_name_across_nodes_and_a_dead_nodes_connections_closed(node_factory, postgres_db,
                                                                                  tmp_path, dps):
    one, two = Cp(node_factory, "cp-one", postgres_db), Cp(node_factory, "cp-two", postgres_db)
    assert one.node.cli("migrations", "bootstrap").returncode == 0
    one.node.start()
    two.node.start()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first_port, second_port = free_port(), free_port()
    # the first web, and a job, on node one only (a dead address first: it moves on to the live one)
    dead = f"https://127.0.0.1:{free_port()}"
    first = Dp(tmp_path / "a", "web", WEB, [f"--cp-address={dead},{one.url}"], one.token(tmp_path, "web"),
               "name=web", "address=127.0.0.1", f"port={first_port}", f"app_port={free_port()}")
    dps.append(first)
    job = Dp(tmp_path / "a", "job", OTHER.format(name="job", port=free_port()), [f"--cp-address={one.url}"],
             one.token(tmp_path, "job"))
    dps.append(job)
    wait_until(first.ready, timeout=60, what="the first web ready")
    wait_until(job.ready, timeout=60, what="job ready")
    # another web (another host: its own work dir and node id) on node two is refused while the first is connected
    second = Dp(tmp_path / "b", "web", WEB, [f"--cp-address={two.url}"], two.token(tmp_path, "web"),
                "name=web", "address=127.0.0.1", f"port={second_port}", f"app_port={free_port()}")
    dps.append(second)
    wait_until(lambda: "is already connected to control plane" in second.output(), timeout=60,
               what="the second web refused by node two")
    assert second.proc.poll() is None and not second.ready()
    registered = two.dataplanes()["web"]["dataplane"]["networking"]["inbound"][0]["port"]
    assert registered == first_port  # the first one's registration was not replaced

    # node one dies with the data planes on it (kill -9 of all): nobody tells the database they left
    for dp in (first, job):
        os.killpg(dp.proc.pid, signal.SIGKILL)
    one.kill()
    # node two finds node one dead and closes its connections for it: job shows Offline ...
    wait_until(lambda: " Offline " in _row(two, "job"), timeout=120, what="job Offline on node two")
    # the line is logged once every connection the dead node held is closed, after job's: wait for it
    wait_until(lambda: "stopped beating" in two.node.error_log(), timeout=60, what="node two's log of node one dead")
    # ... and the second web gets in (it kept retrying)
    wait_until(second.ready, timeout=120, what="the second web in once the first's node is dead")
    wait_until(lambda: two.dataplanes()["web"]["dataplane"]["networking"]["inbound"][0]["port"] == second_port,
               what="the second web registered")
    subs = two.dataplanes()["web"]["dataplaneInsight"]["subscriptions"]
    assert subs[-1].get("disconnectTime") is None and subs[-2].get("disconnectTime")


def _row(cp: Cp, name: str) -> str:
    listed = cp.cli("inspect", "dataplanes").stdout.splitlines()
    return next((f" {line} " for line in listed if line.split()[1:2] == [name]), "")


def _mesh_view(cp: Cp) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{cp.node.admin}/meshes/default/metrics", timeout=5).text
    return {(s.name, *sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


SERVED = ("meshway_mesh_requests_total", ("destination_service", "web"), ("direction", "inbound"),
          ("response_code", "200"), ("source_service", "client"))  # counted by web (HTTP inbound)
CALLED = ("meshway_mesh_tcp_connections_total", ("destination_service", "web"), ("direction", "outbound"),
          ("source_service", "client"))  # counted by the client (its outbound has no protocol tag: TCP)
REPORTING = ("meshway_mesh_dataplanes_reporting", ("mesh", "default"))


def _own(dp: Dp, series: tuple) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{dp.ready_port}/metrics", timeout=5).text
    return {(s.name, *sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}.get(series)


def test_every_node_shows_the_whole_mesh_metrics_and_a_moved_data_plane_counts_once(node_factory, postgres_db,
                                                                                   tmp_path, dps):
    one, two = Cp(node_factory, "cp-one", postgres_db), Cp(node_factory, "cp-two", postgres_db)
    assert one.node.cli("migrations", "bootstrap").returncode == 0
    one.node.start()
    two.node.start()
    web_port, app_port, outbound = free_port(), free_port(), free_port()
    (tmp_path / "hello.txt").write_text("hello from web\n")
    app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    web = Dp(tmp_path, "web", WEB, [f"--cp-address={one.url},{two.url}"], one.token(tmp_path, "web"), "name=web",
             "address=127.0.0.1", f"port={web_port}", f"app_port={app_port}", app=app)
    dps.append(web)
    wait_until(web.ready, timeout=60, what="web ready")
    cps = {f"127.0.0.1:{cp.dp_port}": cp for cp in (one, two)}
    home = cps[web.control_plane()]
    other = two if home is one else one
    client = Dp(tmp_path, "client", CLIENT, [f"--cp-address={other.url}"], two.token(tmp_path, "client"),
                f"outbound={outbound}")  # on the other node
    dps.append(client)
    wait_until(client.ready, timeout=60, what="client ready")
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{outbound}/hello.txt", timeout=3).status_code == 200,
               timeout=30, what="client to web")
    for _ in range(4):
        assert httpx.get(f"http://127.0.0.1:{outbound}/hello.txt", timeout=5).status_code == 200
    served, called = _own(web, SERVED), _own(client, CALLED)
    assert served >= 5 and called >= 5
    # web reports to its node, client to the other: each node's view has both sides of the calls
    for cp in (one, two):
        wait_until(lambda: (_mesh_view(cp).get(SERVED), _mesh_view(cp).get(CALLED), _mesh_view(cp).get(REPORTING))
                   == (served, called, 2), timeout=40, what="both sides in the view")

    home.kill()  # web moves to the other node; the dead one's last heartbeat must stop counting, or web's calls
    # would count twice there
    wait_until(lambda: web.control_plane() == f"127.0.0.1:{other.dp_port}", timeout=60, what="web moved")
    wait_until(lambda: _mesh_view(other).get(REPORTING) == 2 and _mesh_view(other).get(SERVED) == served,
               timeout=60, what="web reporting to the other node")
    view = _mesh_view(other)
    assert (view[SERVED], view[CALLED], view[REPORTING]) == (served, called, 2)
