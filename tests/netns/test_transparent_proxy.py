"""`meshway install|uninstall transparent-proxy` on a real host: two network namespaces joined by a veth.

Host A (the `netns` fixture, 10.77.0.1 / fd77::1) gets the rules; host B (10.77.0.2 / fd77::2) is
the rest of the network. Stand-ins for the data plane (tproxy_servers_for_test.py) listen on A's
15001/15006/15053 as the data plane's user, `nobody`; apps run as root, another user.
"""
from __future__ import annotations

import fcntl
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.netns.conftest import PYTHON, REPO, NetnsForTest

pytestmark = pytest.mark.netns

MESHWAY = str(REPO / ".venv" / "bin" / "meshway")
SERVERS = str(Path(__file__).with_name("tproxy_servers_for_test.py"))
A_IP, B_IP, A_IP6, B_IP6 = "10.77.0.1", "10.77.0.2", "fd77::1", "fd77::2"
DP = "65534"  # nobody: the data plane's user in these tests
# The interpreter may live under /root (pyenv): a non-root process may read it, nothing more.
AS_USER = ["--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
FOREIGN = [
    ("iptables", "-t", "nat", "-N", "FOREIGN_CHAIN"),
    ("iptables", "-t", "nat", "-A", "FOREIGN_CHAIN", "-p", "tcp", "--dport", "9999", "-j", "RETURN"),
    ("iptables", "-t", "nat", "-A", "OUTPUT", "-d", "10.99.0.0/16", "-j", "FOREIGN_CHAIN"),
    ("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "5353", "-j", "RETURN"),
    ("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"),
    ("ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"),
]


def as_user(uid: str, *argv: str) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", *AS_USER, *argv]


@pytest.fixture
def peer(netns, request) -> NetnsForTest:
    """Host B, joined to host A (`netns`) by a veth pair; each routes by default through the other."""
    b = NetnsForTest(f"mwtest-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", b.name], check=True, capture_output=True, timeout=10)
    request.addfinalizer(b.cleanup)
    subprocess.run(["ip", "link", "add", "eth0", "netns", netns.name, "type", "veth", "peer", "name", "eth0",
                    "netns", b.name], check=True, capture_output=True, timeout=10)
    for ns, mine, other, mine6, other6 in ((netns, A_IP, B_IP, A_IP6, B_IP6), (b, B_IP, A_IP, B_IP6, A_IP6)):
        ns.run("ip", "link", "set", "lo", "up")
        ns.run("ip", "addr", "add", f"{mine}/24", "dev", "eth0")
        ns.run("ip", "-6", "addr", "add", f"{mine6}/64", "dev", "eth0", "nodad")
        ns.run("ip", "link", "set", "eth0", "up")
        ns.run("ip", "route", "add", "default", "via", other)
    return b


def meshway(ns: NetnsForTest, *args: str, env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    argv = [MESHWAY, *args] if user is None else as_user(user, MESHWAY, *args)
    return ns.run(*argv, check=False, timeout=60, env=env)


def rules(ns: NetnsForTest, tool: str = "iptables-save") -> str:
    """iptables-save without the timestamps and counters that differ between two reads."""
    out = ns.run(tool).stdout.decode()
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in out.splitlines() if not line.startswith("#"))


def add_foreign_rules(ns: NetnsForTest) -> None:
    for argv in FOREIGN:
        ns.run(*argv)


def serve(ns: NetnsForTest, uid: str, *args: str) -> None:
    proc = ns.spawn(*as_user(uid, PYTHON, SERVERS, *args))
    assert proc.stdout.readline().startswith(b"ready"), proc.stderr.read()


def reply(ns: NetnsForTest, address: str, port: int, uid: str = "0") -> str:
    done = ns.run(*as_user(uid, "ncat", "--recv-only", "-w", "3", address, str(port)), check=False)
    return done.stdout.decode().strip() or f"error: {done.stderr.decode().strip()}"


def dig(ns: NetnsForTest, server: str, uid: str = "0") -> str:
    done = ns.run(*as_user(uid, "dig", "+short", "+time=2", "+tries=1", f"@{server}", "svc.test", "A"), check=False)
    return done.stdout.decode().strip()


def resolv_conf(tmp_path: Path, server: str) -> dict:
    path = tmp_path / "resolv.conf"
    path.write_text(f"nameserver {server}\n")
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH": str(path)}


# -- rules -----------------------------------------------------------------------------------------------


def test_install_twice_then_uninstall_restores_the_exact_rules(netns, peer, tmp_path):
    add_foreign_rules(netns)
    before4, before6 = rules(netns), rules(netns, "ip6tables-save")
    env = resolv_conf(tmp_path, B_IP)

    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-dns", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "The SSH connection may drop" in out and "You can now run meshway dp" in out
    after4, after6 = rules(netns), rules(netns, "ip6tables-save")
    for text, lo_net in ((after4, "127.0.0.1/32"), (after6, "::1/128")):
        assert all(f":{c} -" in text for c in ("KUMA_MESH_INBOUND", "KUMA_MESH_INBOUND_REDIRECT",
                                                "KUMA_MESH_OUTBOUND", "KUMA_MESH_OUTBOUND_REDIRECT"))
        ours = [line for line in text.splitlines() if line.startswith("-A") and "KUMA_MESH" in line or "15053" in line]
        assert ours and all('--comment "meshway/mesh/transparent/proxy/' in line for line in ours)
        assert f"-A KUMA_MESH_OUTBOUND -d {lo_net} -m comment" in text
        assert "-A KUMA_MESH_INBOUND -p tcp -m comment" in text and "-m tcp --dport 22 -j RETURN" in text
    assert re.search(r"-A KUMA_MESH_OUTBOUND -m comment --comment \"[^\"]*\" -m owner --uid-owner 65534 -j RETURN", after4)
    assert re.search(r"-A OUTPUT -d 10.77.0.2/32 -p udp -m comment .* -m udp --dport 53 -j REDIRECT --to-ports 15053", after4)
    assert "-j CT --zone 2" in after4 and "-j CT --zone 1" in after4
    assert "15053" not in after6  # no IPv6 resolver in resolv.conf: no IPv6 DNS rules
    for line in before4.splitlines() + before6.splitlines():
        assert line in (after4 if line in before4 else after6)  # foreign rules and chains untouched
    assert "inet6 ::6/128" in netns.run("ip", "-6", "addr", "show", "dev", "lo").stdout.decode()

    planned = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-dns", "--dry-run", env=env)
    assert planned.stdout.decode().count("# no changes: the rules are already as planned") == 2  # IPv4 and IPv6
    again = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-dns", env=env)
    assert again.returncode == 0, again.stderr
    assert (rules(netns), rules(netns, "ip6tables-save")) == (after4, after6)

    done = meshway(netns, "uninstall", "transparent-proxy", "--verbose")
    assert done.returncode == 0, done.stderr
    assert "transparent proxy cleanup completed successfully" in done.stdout.decode()
    assert "-X KUMA_MESH_OUTBOUND" in done.stdout.decode()  # --verbose shows the removal it applies
    assert (rules(netns), rules(netns, "ip6tables-save")) == (before4, before6)
    assert "::6/128" not in netns.run("ip", "-6", "addr", "show", "dev", "lo").stdout.decode()
    assert "no transparent proxy rules detected" in meshway(netns, "uninstall", "transparent-proxy").stdout.decode()


def test_dry_run_shows_the_diff_and_changes_nothing(netns, peer):
    add_foreign_rules(netns)
    before = rules(netns)
    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--ip-family-mode", "ipv4", "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert rules(netns) == before and "about to apply" not in out
    assert out.startswith("### IPv4 ###\n--- current") and "+:KUMA_MESH_OUTBOUND -" in out
    assert re.search(r"^\+-A OUTPUT -p tcp -m comment .* -j KUMA_MESH_OUTBOUND$", out, re.M)
    changed = [line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert not any("FOREIGN_CHAIN" in line or "--dport 80" in line for line in changed)
    assert not any(line.startswith("-") for line in changed)

    meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--ip-family-mode", "ipv4")
    installed = rules(netns)
    done = meshway(netns, "uninstall", "transparent-proxy", "--dry-run")
    out = done.stdout.decode()
    assert done.returncode == 0 and rules(netns) == installed
    changed = [line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed and all(line.startswith("-") and "KUMA_MESH" in line or "meshway/mesh" in line for line in changed)


@pytest.mark.parametrize("args, message", [
    (["--kuma-dp-user", "no-such-user-here"], "the specified UID or username ('no-such-user-here') does not refer"),
    (["--redirect-dns", "--redirect-all-dns-traffic"], "only one of '--redirect-dns' or '--redirect-all-dns-traffic'"),
    (["--redirect-outbound-port", "0"], "redirect.outbound.port: value '0' is not a valid port"),
    (["--exclude-outbound-ips", "10.0.0.300"], "invalid IP address: '10.0.0.300'"),
    (["--config", "-"], "unknown configuration key 'redirect.inbound.prot'"),
])
def test_bad_input_exits_2_and_changes_nothing(netns, args, message):
    add_foreign_rules(netns)
    before = rules(netns)
    done = netns.run(MESHWAY, "install", "transparent-proxy", "--kuma-dp-user", DP, *args, check=False,
                     input=b"redirect:\n  inbound:\n    prot: 1\n")
    assert done.returncode == 2 and message in done.stderr.decode()
    assert rules(netns) == before


def test_without_kuma_dp_user_uid_5678_then_user_kuma_dp_else_exit_2(netns):
    """Kuma's lookup when --kuma-dp-user is not given: uid 5678, else the user named kuma-dp, else an
    error. The namespace sees its own /etc/passwd (`ip netns exec` mounts /etc/netns/NAME/passwd)."""
    etc = Path("/etc/netns") / netns.name
    etc.mkdir(parents=True, exist_ok=True)
    try:
        base = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        (etc / "passwd").write_text(base)
        add_foreign_rules(netns)
        before = rules(netns)
        done = meshway(netns, "install", "transparent-proxy")
        assert done.returncode == 2 and rules(netns) == before
        assert ("no UID or username provided, and user with the default UID ('5678') or username ('kuma-dp') "
                "could not be found") in done.stderr.decode()
        (etc / "passwd").write_text(base + "kuma-dp:x:6000:6000::/nonexistent:/usr/sbin/nologin\n")
        done = meshway(netns, "install", "transparent-proxy", "--ip-family-mode", "ipv4")
        assert done.returncode == 0, done.stderr
        assert "--uid-owner 6000" in rules(netns)
        meshway(netns, "uninstall", "transparent-proxy")
        (etc / "passwd").write_text(base + "kuma-dp:x:6000:6000::/nonexistent:/usr/sbin/nologin\n"
                                    "other:x:5678:5678::/nonexistent:/usr/sbin/nologin\n")
        done = meshway(netns, "install", "transparent-proxy", "--ip-family-mode", "ipv4")
        assert done.returncode == 0, done.stderr
        assert "--uid-owner 5678" in rules(netns) and "--uid-owner 6000" not in rules(netns)  # uid 5678 first
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def test_not_root_exits_2_and_changes_nothing(netns):
    add_foreign_rules(netns)
    before = rules(netns)
    for verb in ("install", "uninstall"):
        done = meshway(netns, verb, "transparent-proxy", "--kuma-dp-user", DP, user="65534") if verb == "install" \
            else meshway(netns, verb, "transparent-proxy", user="65534")
        assert done.returncode == 2
        assert "you need to have root privileges to run this command" in done.stderr.decode()
    assert rules(netns) == before



def test_host_without_ipv6_gets_ipv4_rules_and_a_notice(netns):
    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP)  # lo only: ::1 is loopback
    assert done.returncode == 0, done.stderr
    assert "IPv6 rules skipped: this host has no IPv6 address" in done.stderr.decode()
    assert ":KUMA_MESH_OUTBOUND" in rules(netns) and "KUMA_MESH" not in rules(netns, "ip6tables-save")

# -- traffic ----------------------------------------------------------------------------------------------


def test_traffic_is_redirected_except_the_data_planes_own_and_ssh(netns, peer, tmp_path):
    for name, port in (("outbound", 15001), ("inbound", 15006)):
        serve(netns, DP, "tcp", name, str(port))
    serve(netns, "0", "tcp", "sshd", "22")
    serve(netns, DP, "dns", "127.0.0.1", "15053", "1.2.3.4")
    serve(peer, "0", "tcp", "service-b", "8080")
    serve(peer, "0", "dns", B_IP, "53", "5.6.7.8")
    assert reply(netns, B_IP, 8080) == f"service-b {B_IP}:8080"
    assert dig(netns, B_IP) == "5.6.7.8"

    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-dns",
                   env=resolv_conf(tmp_path, B_IP))
    assert done.returncode == 0, done.stderr
    # An app (root) is sent to the outbound listener, which sees where it wanted to go; IPv6 too.
    assert reply(netns, B_IP, 8080) == f"outbound {B_IP}:8080"
    assert reply(netns, B_IP6, 8080) == f"outbound [{B_IP6}]:8080"
    # The data plane's own connections leave as they are.
    assert reply(netns, B_IP, 8080, uid=DP) == f"service-b {B_IP}:8080"
    # Inbound connections go to the inbound listener, except SSH.
    assert reply(peer, A_IP, 9090) == f"inbound {A_IP}:9090"
    assert reply(peer, A_IP, 22) == f"sshd {A_IP}:22"
    # DNS to the resolver of resolv.conf goes to the DNS port; the data plane's lookups do not.
    assert dig(netns, B_IP) == "1.2.3.4"
    assert dig(netns, B_IP, uid=DP) == "5.6.7.8"

    assert meshway(netns, "uninstall", "transparent-proxy").returncode == 0
    assert reply(netns, B_IP, 8080) == f"service-b {B_IP}:8080"
    assert dig(netns, B_IP) == "5.6.7.8"


def test_all_dns_traffic_and_a_control_plane_on_the_same_host(netns, peer):
    """The reference document says a control plane cannot share a host with transparent proxying:
    its own connections (to its database) would be redirected, and so would the local data plane's
    connection to it. Kuma's flags exclude both; this is the command the guide documents."""
    cp = "1"  # daemon: the control plane's user
    serve(netns, DP, "tcp", "outbound", "15001")
    serve(netns, DP, "tcp", "inbound", "15006")
    serve(netns, cp, "tcp", "control-plane", "5678")
    serve(netns, DP, "dns", "127.0.0.1", "15053", "1.2.3.4")
    serve(peer, "0", "tcp", "postgres", "5432")
    serve(peer, "0", "dns", B_IP, "53", "5.6.7.8")

    meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-all-dns-traffic")
    assert reply(netns, A_IP, 5678, uid=DP) == f"inbound {A_IP}:5678"  # the data plane cannot reach its CP
    assert reply(netns, B_IP, 5432, uid=cp) == f"outbound {B_IP}:5432"  # the CP cannot reach its database
    assert dig(netns, B_IP) == "1.2.3.4" and dig(netns, "10.99.0.53") == "1.2.3.4"  # every resolver captured

    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-all-dns-traffic",
                   "--exclude-outbound-ports-for-uids", cp, "--exclude-inbound-ports", "5678",
                   "--exclude-outbound-ports", "5678")
    assert done.returncode == 0, done.stderr
    assert reply(netns, A_IP, 5678, uid=DP) == f"control-plane {A_IP}:5678"
    assert reply(peer, A_IP, 5678) == f"control-plane {A_IP}:5678"
    assert reply(netns, B_IP, 5432, uid=cp) == f"postgres {B_IP}:5432"
    assert reply(netns, B_IP, 5432) == f"outbound {B_IP}:5432"  # apps are still redirected


# -- firewalld ---------------------------------------------------------------------------------------------

FOREIGN_DIRECT = """<?xml version="1.0" encoding="utf-8"?>
<direct>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-p tcp --dport 8443 -j ACCEPT</rule>
</direct>
"""


def test_firewalld_copy_is_written_and_uninstalled(netns, peer, tmp_path):
    direct = tmp_path / "firewalld" / "direct.xml"
    fw = ["--firewalld-direct-xml", str(direct)]
    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--store-firewalld", *fw)
    assert done.returncode == 0, done.stderr
    text = direct.read_text()
    assert '<chain ipv="ipv4" table="nat" chain="KUMA_MESH_OUTBOUND"' in text
    assert '<chain ipv="ipv6" table="nat" chain="KUMA_MESH_OUTBOUND"' in text
    assert re.search(r'<rule ipv="ipv4" table="nat" chain="KUMA_MESH_OUTBOUND" priority="\d+">-d 127.0.0.1/32 -m comment', text)
    assert meshway(netns, "uninstall", "transparent-proxy", *fw).returncode == 0
    assert not direct.exists()  # install created it; uninstall leaves the host as it was

    direct.write_text(FOREIGN_DIRECT)
    meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--store-firewalld", *fw)
    assert "8443" in direct.read_text() and "KUMA_MESH" in direct.read_text()
    done = meshway(netns, "uninstall", "transparent-proxy", "--dry-run", *fw)
    assert "### firewalld ###" in done.stdout.decode() and "KUMA_MESH" in direct.read_text()
    meshway(netns, "uninstall", "transparent-proxy", *fw)
    text = direct.read_text()
    assert "KUMA_MESH" not in text and '<rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-p tcp --dport 8443' in text


# -- the xtables lock ---------------------------------------------------------------------------------------

LEGACY = "iptables:/usr/sbin/iptables-legacy,iptables-save:/usr/sbin/iptables-legacy-save," \
         "iptables-restore:/usr/sbin/iptables-legacy-restore"


def test_retries_while_another_program_holds_the_xtables_lock(netns, tmp_path):
    """The legacy backend takes the xtables lock (iptables-nft never waits for it); the lock file is
    the test's own (XTABLES_LOCKFILE), so no other iptables user on the machine waits."""
    lock = tmp_path / "xtables.lock"
    lock.touch()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "XTABLES_LOCKFILE": str(lock),
           "KUMA_TRANSPARENT_PROXY_IPTABLES_EXECUTABLES": LEGACY}
    args = ["install", "transparent-proxy", "--kuma-dp-user", DP, "--ip-family-mode", "ipv4", "--wait", "1"]

    with lock.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another program holds the lock
        done = meshway(netns, *args, "--max-retries", "1", "--sleep-between-retries", "100ms", env=env)
        assert done.returncode == 1 and "xtables lock" in done.stderr.decode()
        assert "KUMA_MESH" not in netns.run("iptables-legacy-save").stdout.decode()
        # ... and lets it go once the install said it waits for its next try.
        proc = netns.spawn(MESHWAY, *args, "--max-retries", "4", "--sleep-between-retries", "0.5s", "--verbose", env=env)
        said = b""
        for line in proc.stderr:  # bounded: the install ends (EOF) after its last try
            said += line
            if b"xtables lock busy, retry 1/4" in line:
                fcntl.flock(held, fcntl.LOCK_UN)
                break
        assert b"retry 1/4" in said, said.decode()
        assert proc.wait(30) == 0, proc.stderr.read().decode()
    assert ":KUMA_MESH_OUTBOUND" in netns.run("iptables-legacy-save").stdout.decode()
    # Uninstall finds the rules in the legacy backend without being told where they are.
    done = meshway(netns, "uninstall", "transparent-proxy", env={"PATH": env["PATH"]})
    assert done.returncode == 0, done.stderr
    assert "KUMA_MESH" not in netns.run("iptables-legacy-save").stdout.decode()


def test_ipv6_failure_after_ipv4_applied_puts_ipv4_back(netns, peer, tmp_path):
    """A fault injected where it cannot be provoked for real: ip6tables-restore accepts the rules in
    its --test pass, then fails to apply them. The IPv4 change already made must be undone."""
    add_foreign_rules(netns)
    env = resolv_conf(tmp_path, B_IP)
    assert meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-dns", env=env).returncode == 0
    installed4, installed6 = rules(netns), rules(netns, "ip6tables-save")
    failing = tmp_path / "ip6tables-restore"
    failing.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = --test ] && exec /usr/sbin/ip6tables-restore "$@"; done\n'
                       'echo "ip6tables-restore: injected failure" >&2; exit 1\n')
    failing.chmod(0o755)
    executables = f"ip6tables:/usr/sbin/ip6tables,ip6tables-save:/usr/sbin/ip6tables-save,ip6tables-restore:{failing}"
    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--exclude-outbound-ports", "5432",
                   "--iptables-executables", executables, env=env)
    assert done.returncode == 1 and "unable to restore ip6tables rules" in done.stderr.decode()
    assert (rules(netns), rules(netns, "ip6tables-save")) == (installed4, installed6)


def test_dns_redirect_with_a_resolver_on_loopback(netns, tmp_path):
    """systemd-resolved's 127.0.0.53: the resolver's answers to the data plane are local traffic too,
    and must land in the data plane's conntrack zone (Kuma's loopback rule)."""
    serve(netns, "0", "dns", "127.0.0.53", "53", "5.6.7.8")
    serve(netns, DP, "dns", "127.0.0.1", "15053", "1.2.3.4")
    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-dns",
                   env=resolv_conf(tmp_path, "127.0.0.53"))
    assert done.returncode == 0, done.stderr
    assert dig(netns, "127.0.0.53") == "1.2.3.4"
    assert dig(netns, "127.0.0.53", uid=DP) == "5.6.7.8"
    # The rules read back are exactly the ones written: a second install plans no change.
    again = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--redirect-dns", "--dry-run",
                    env=resolv_conf(tmp_path, "127.0.0.53"))
    assert "# no changes: the rules are already as planned" in again.stdout.decode(), again.stdout.decode()


def test_vnet_traffic_from_a_bridge_goes_to_the_outbound_and_dns_ports(netns, peer):
    """`--vnet eth0:10.77.0.0/24`: host B plays a container behind A's bridge. Its connections to
    addresses outside the virtual network, and its DNS queries, are taken on A's ports."""
    serve(netns, DP, "tcp", "outbound", "15001")
    serve(netns, DP, "dns", A_IP, "15053", "1.2.3.4")
    serve(netns, DP, "tcp", "inbound", "15006")
    done = meshway(netns, "install", "transparent-proxy", "--kuma-dp-user", DP, "--ip-family-mode", "ipv4",
                   "--redirect-all-dns-traffic", "--vnet", "eth0:10.77.0.0/24")
    assert done.returncode == 0, done.stderr
    assert reply(peer, "10.99.0.7", 80) == "outbound 10.99.0.7:80"
    assert dig(peer, "10.99.0.53") == "1.2.3.4"
    assert reply(peer, A_IP, 8080) == f"inbound {A_IP}:8080"  # inside the virtual network: inbound traffic
