#!/usr/bin/env bash
# One command: install meshway and start a traditional node (Admin API + proxy) on the
# embedded SQLite store, with its prefix in ./meshway-node.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
prefix="${MESHWAY_PREFIX:-$PWD/meshway-node}"
if .venv/bin/meshway health -p "$prefix" >/dev/null 2>&1; then
  echo "meshway already runs in $prefix"
else
  .venv/bin/meshway start -p "$prefix"
fi
cat <<MSG
Admin API: http://127.0.0.1:8001   Proxy: http://127.0.0.1:8000 (https on 8443)
Dashboard: http://127.0.0.1:8002/  (open it in a browser)
Logs:      $prefix/logs/error.log
Stop it:   .venv/bin/meshway stop -p $prefix
MSG
