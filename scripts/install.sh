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

if [ "$want_test" = 1 ]; then
  need curl curl; need ncat ncat; need iptables iptables; need ip iproute2; need openssl openssl
  need nginx nginx-light; need haproxy haproxy; need wrk wrk; need h2load nghttp2-client
  need redis-server redis-server; need tcpdump tcpdump
  # transparent proxy tests: dig for DNS redirection, nft to drop the empty tables an uninstall leaves
  need dig bind9-dnsutils; need nft nftables; need setpriv util-linux
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql)
fi

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's nginx/redis packages start system services we do not use; tests start their own.
if [ "$want_test" = 1 ]; then
  for svc in nginx redis-server haproxy; do
    $sudo_cmd systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo_cmd service "$svc" stop >/dev/null 2>&1 || true
  done
fi

[ -x .venv/bin/python ] || $PY -m venv .venv
extras=""
[ "$want_test" = 1 ] && extras="[test]"
stamp=".venv/.meshway-installed${extras:+-test}"
digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras}"
  echo "$digest" > "$stamp"
fi
echo "meshway installed: $(.venv/bin/meshway version)"
