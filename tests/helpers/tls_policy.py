"""Probe a TLS listener with `openssl s_client`: TLS 1.2 CBC suites refused, an AEAD suite chosen."""
from __future__ import annotations

import subprocess

# CBC suites a TLS 1.2 client may offer: SHA-1 ones (which Python's default cipher string already
# drops) and SHA-256/384 ones (which it keeps: the gap meshway's policy closes), ECDHE and static RSA.
CBC_SUITES = ("AES128-SHA", "ECDHE-RSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES256-SHA384",
              "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "AES128-SHA256")


def s_client_for_test(port: int, *args: str) -> str:
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input=b"", capture_output=True, timeout=20)
    return (proc.stdout + proc.stderr).decode(errors="replace")


def chosen_suite(out: str) -> str:
    return out.split("Cipher is ", 1)[1].split()[0] if "Cipher is " in out else "(NONE)"


def assert_aead_only_for_test(port: int, *client_args: str) -> None:
    """`client_args`: e.g. `-cert`/`-key` for listeners that require a client certificate."""
    for suite in ("AES128-SHA", ":".join(CBC_SUITES)):
        out = s_client_for_test(port, "-tls1_2", "-cipher", suite, *client_args)
        assert chosen_suite(out) == "(NONE)", f"CBC {suite} accepted on {port}: {out[-600:]}"
    out = s_client_for_test(port, "-tls1_2", *client_args)
    chosen = chosen_suite(out)
    assert "GCM" in chosen or "CHACHA20" in chosen, f"no AEAD suite on {port}: {out[-600:]}"
    out = s_client_for_test(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256",
                            *client_args)
    assert chosen_suite(out) in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"), out[-600:]
