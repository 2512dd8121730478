"""kuma-dp's other ways to say the same: the token and the Dataplane inline (`--dataplane-token`,
`--dataplane`), the control plane's CA from a file (`--ca-cert-file`) instead of the token's pin, Kuma
2.x's `--dns-coredns-port`;
a CA that did not issue the control plane's certificate never gets the data plane registered, ready
or its app started."""
from __future__ import annotations

import subprocess
import sys

import httpx

from tests.helpers.node import MESHWAY, clean_env, free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import Cp, Dp, dig, dps, wait_until  # noqa: F401

INLINE = ('{"type": "Dataplane", "mesh": "default", "name": "{{ name }}", "networking": {"address": "127.0.0.1", '
          '"inbound": [{"port": {{ port }}, "servicePort": {{ app }}, "tags": {"kuma.io/service": "inline"}}]}}')


class InlineDp(Dp):
    def __init__(self, cp: Cp, tmp, name: str, ca_file: str, app: tuple[str, ...] = ()):
        self.ready_port, self.dns_port, self.work = free_port(), free_port(), tmp / f"work-{name}"
        token = cp.token(tmp, name).read_text()
        cmd = [MESHWAY, "dp", "run", f"--cp-address=https://127.0.0.1:{cp.dp_port}", "--dataplane-token", token,
               "--dataplane", INLINE, "--dataplane-var", f"name={name}", "--dataplane-var", f"port={free_port()}",
               "--dataplane-var", f"app={free_port()}", "--ca-cert-file", ca_file,
               "--dns-coredns-port", str(self.dns_port),
               "--readiness-port", str(self.ready_port), "--work-dir", str(self.work)]
        if app:
            cmd += ["--", *app]
        self.log = open(tmp / f"{name}.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=clean_env(),
                                     start_new_session=True)


def test_inline_token_and_dataplane_and_a_ca_file(node_factory, tmp_path, dps):
    from meshway.mesh import MeshCA

    cp = Cp(node_factory)
    good = InlineDp(cp, tmp_path, "inline", str(cp.node.prefix / "mesh" / "ca.crt"))
    dps.append(good)
    wait_until(good.ready, timeout=40, what="the inline data plane ready")
    assert cp.dataplanes()["inline"]["dataplane"]["networking"]["inbound"][0]["tags"] == {"kuma.io/service": "inline"}
    # Kuma 2.x's --dns-coredns-port is the port DNS is redirected to: the DNS proxy listens there
    assert "--dns-coredns-port is ignored" not in good.output()
    wait_until(lambda: dig(good.dns_port, "inline.mesh").startswith("240."), timeout=15,
               what="inline.mesh on that port")

    stranger = MeshCA.load_or_create(tmp_path / "other-ca")  # a CA that did not issue the control plane's cert
    marker = tmp_path / "app-started"
    bad = InlineDp(cp, tmp_path, "stranger", str(tmp_path / "other-ca" / "ca.crt"),
                   app=(sys.executable, "-c", f"open({str(marker)!r}, 'w')"))
    dps.append(bad)
    wait_until(lambda: "certificate verify failed" in bad.output(), timeout=30, what="the TLS refusal logged")
    assert bad.proc.poll() is None  # it keeps retrying
    # no configuration yet: /ready says so (503), and the app given after -- is not started
    ready = httpx.get(f"http://127.0.0.1:{bad.ready_port}/ready", timeout=3)
    assert (ready.status_code, ready.text) == (503, "NOT READY")
    assert not marker.exists()
    assert "stranger" not in cp.dataplanes()
