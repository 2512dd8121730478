#!/usr/bin/env bash
# Install meshway into ./.venv. With --test, also the system tools the test suite drives
# (curl, ncat, iptables, nginx, haproxy, redis, PostgreSQL...). Idempotent and quick when
# everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

need_apt=()
need() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

PY=${PYTHON:-python3}
if ! $PY -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "meshway needs Python >= 3.11 (found: $($PY --version 2>&1))" >&2
  exit 1
fi
$PY -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# The compiled HTTP/1.1 core (setup.py: Cython over the vendored llhttp) needs a C compiler and
# the headers of the Python it is built for.
need gcc build-essential
$PY -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  2>/dev/null || need_apt+=(python3-dev)
# TLS on the socket (setup.py: _core/_tlssock links the libssl Python's `ssl` module uses)
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)

if [ "$want_test" = 1 ]; then
  need curl curl; need ncat ncat; need iptables iptables; need ip iproute2; need openssl openssl
  need nginx nginx-light; need haproxy haproxy; need wrk wrk; need h2load nghttp2-client
  need redis-server redis-server; need tcpdump tcpdump
  # the acme plugin's tests: Debian's pebble ACME server and its DNS (pebble-challtestsrv)
  need pebble pebble; need pebble-challtestsrv pebble
  # the ldap-auth plugin's tests start their own slapd (slapadd/slappasswd load its directory)
  need slapd slapd; need ldapwhoami ldap-utils
  # transparent proxy tests: dig for DNS redirection, nft to drop the empty tables an uninstall leaves
  need dig bind9-dnsutils; need nft nftables; need setpriv util-linux
  # the dashboard's browser tests (tests/ui): Debian's Chromium, driven by playwright (no browser download)
  command -v chromium >/dev/null 2>&1 || command -v chromium-headless-shell >/dev/null 2>&1 || need_apt+=(chromium)
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql)
fi

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's nginx/redis/slapd packages start system services we do not use; tests start their own.
if [ "$want_test" = 1 ]; then
  for svc in nginx redis-server haproxy slapd; do
    $sudo_cmd systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo_cmd service "$svc" stop >/dev/null 2>&1 || true
  done
fi

[ -x .venv/bin/python ] || $PY -m venv .venv
extras=""
[ "$want_test" = 1 ] && extras="[test]"
stamp=".venv/.meshway-installed${extras:+-test}"
# Rebuilt when the build inputs change or the extension is missing (an editable install keeps it in src/).
digest=$(cat pyproject.toml setup.py src/meshway/proxy/_core/*.pyx src/meshway/proxy/_core/*.pxd | sha256sum | cut -d' ' -f1)
built=$(ls src/meshway/proxy/_core/_h1parse*.so 2>/dev/null || true)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ] || [ -z "$built" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras}"
  echo "$digest" > "$stamp"
fi
# playwright (tests/ui) apart from the [test] extra: on Python 3.11 httpbin pins greenlet<3, which it
# never imports, and playwright needs greenlet>=3.1; one resolver run cannot hold both.
if [ "$want_test" = 1 ] && ! .venv/bin/python -c 'import greenlet, playwright.sync_api; assert tuple(map(int, greenlet.__version__.split(".")[:2])) >= (3, 1)' 2>/dev/null; then
  .venv/bin/python -m pip install -q "playwright>=1.49,<2" 2>&1 | grep -v "dependency conflicts\|greenlet\|resolver does not" || true
fi
echo "meshway installed: $(.venv/bin/meshway version)"
