"""docs/guides/multi-zone.md, every command as written, on the document's two-datacenter topology
in network namespaces (onprem and cloud networks that cannot reach each other, a shared WAN, a
gateway in each); then what the document promises: no plaintext and only the SNI on the WAN,
each zone serving on when the WAN is cut, and catching up when it returns."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.netns.pcap_for_test import read_pcap_for_test
from tests.netns.zones_for_test import TopologyForTest, guide_steps_for_test

REASON = "no-healthy-instance-of-api-in-datacenter-onprem"
ZONES = "meshway get zones --admin-token $CONSUL_HTTP_TOKEN"
SNI = b"api.default.cloud.internal.mesh.meshway"
ANSWER = "hello from api in cloud\n"


def eventually(check, timeout: float = 40.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


@pytest.fixture
def topology(tmp_path):
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tcpdump"):
        pytest.skip("network namespaces need root, iproute2 and tcpdump")
    topo = TopologyForTest(tmp_path)
    try:
        topo.build()
        yield topo
    finally:
        topo.cleanup()


def call_api(topo) -> str:
    return topo.run("web", "curl -s --max-time 5 http://127.0.0.1:9091/", timeout=20).stdout


def run_guide(topo) -> dict[str, str]:
    """Every command of the guide; the output of each, by its text."""
    outputs: dict[str, str] = {}
    for n, (host, command, background) in enumerate(guide_steps_for_test()):
        if command.startswith("export "):  # evaluated once, then in the host's environment
            key = command[len("export "):].partition("=")[0]
            done = topo.run(host, f'{command}; printf %s "${key}"')
            assert done.returncode == 0, f"{host}: {command}\n{done.stderr}"
            topo.env[host][key] = done.stdout
            continue
        if background:
            topo.spawn(host, command, topo.workdir / f"step{n}-{host}.log")
            if "dp run" in command:  # as a user would: go on once the data plane says it is ready
                eventually(lambda: topo.run(host, "curl -sf http://127.0.0.1:9902/ready").returncode == 0,
                           what=f"{host}'s data plane ready")
            continue
        if command.startswith(("curl", "meshway get zones", "meshway config read")):
            outputs[command] = _when_settled(topo, host, command)
            continue
        done = topo.run(host, command)
        assert done.returncode == 0, f"{host}: {command}\n{done.stdout}{done.stderr}"
        outputs[command] = done.stdout
    return outputs


def _when_settled(topo, host: str, command: str) -> str:
    """Commands whose answer depends on what the zones learnt: retried until it is the guide's."""
    def settled(out: str) -> bool:
        if command.startswith("curl") and "||" in command:  # the failure, and its reason in the sidecar's log
            log = topo.workdir / "web-dp" / "logs" / "error.log"
            return "upstream error" in out and REASON in log.read_text()
        if command.startswith("curl"):
            return ANSWER in out
        if command.startswith("meshway config read"):  # replicated at the next exchange
            return '"Datacenter": "cloud"' in out
        return any(line.split()[:3] == ["cloud", "Online", "1"] for line in out.splitlines())

    def attempt() -> str | None:
        out = topo.run(host, command, timeout=20).stdout
        return out if settled(out) else None

    return eventually(attempt, what=f"{host}: {command} settles")


def output_of(outputs: dict[str, str], start: str) -> str:
    return next(v for k, v in outputs.items() if k.startswith(start))


def test_the_guide_on_two_datacenters(topology):
    topo = topology
    # the networks are separate: web cannot reach api's host
    refused = topo.run("web", "curl -s --max-time 2 http://10.6.0.10:9090/", timeout=10)
    assert refused.returncode != 0

    outputs = run_guide(topo)
    assert outputs["curl -s http://127.0.0.1:9091/"] == ANSWER
    zones = output_of(outputs, "meshway get zones").splitlines()
    assert zones[0].split() == ["NAME", "STATUS", "GATEWAYS", "DATAPLANES", "LAST", "SYNC"]
    assert zones[1].split()[:3] == ["onprem", "Online", "1"] and zones[2].split()[:3] == ["cloud", "Online", "1"]
    read = output_of(outputs, "meshway config read")
    assert '"Datacenter": "cloud"' in read
    web_error_log = (topo.workdir / "web-dp" / "logs" / "error.log").read_text()
    assert REASON in web_error_log

    # the WAN carries TLS with the SNI only: none of api's answer, no handshake ended at a gateway
    capture = topo.workdir / "wan.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", topo.ns["onprem-gw"], "tcpdump", "-i", "eth-wan", "-U", "--immediate-mode", "-n",
                             "-s", "0", "-w", str(capture), "tcp port 443"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert b"listening" in dump.stderr.readline()
    time.sleep(0.5)
    assert call_api(topo) == ANSWER
    time.sleep(0.5)
    dump.send_signal(signal.SIGINT)
    dump.wait(10)
    segments = read_pcap_for_test(capture.read_bytes())
    payload = b"".join(s.payload for s in segments)
    assert segments and all({s.src[0], s.dst[0]} == {"192.169.7.33", "192.169.7.140"} for s in segments)
    assert SNI in payload and ANSWER.encode() not in payload and b"GET / HTTP" not in payload
    for name in ("onprem-gw", "cloud-gw"):  # both gateways passed it through, none terminated it
        lines = [ln for ln in _gateway_access_logs(topo) if name in ln[0] and "sni=api.default.cloud" in ln[1]]
        assert lines and all("mode=passthrough" in ln[1] for ln in lines), (name, lines)

    # the WAN is cut: the call fails, each zone keeps running, the other zone turns Offline
    topo.cut_wan(up=False)
    assert call_api(topo) != ANSWER
    eventually(lambda: "Offline" in topo.run("onprem-cp", ZONES).stdout, what="cloud Offline")
    assert "cloud" in topo.run("cloud-cp", "meshway config read -kind service-resolver -name api").stdout
    # restored: caught up, the call works again
    topo.cut_wan(up=True)
    eventually(lambda: topo.run("onprem-cp", ZONES).stdout.count("Online") == 2, what="Online again")
    eventually(lambda: call_api(topo) == ANSWER, what="web reaches api again")


def _gateway_access_logs(topo) -> list[tuple[str, str]]:
    """(which gateway, line) of both gateways' access logs (their nodes run in temporary prefixes)."""
    out = []
    for host in ("onprem-gw", "cloud-gw"):
        found = topo.run(host, 'cat "$TMPDIR"/meshway-gateway-*/node/logs/access.log', timeout=10).stdout
        out += [(host, line) for line in found.splitlines()]
    return out
