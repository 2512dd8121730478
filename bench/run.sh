#!/bin/sh
# meshway benchmark: installs missing tools (apt-get), then runs bench/run.py with the repo's venv.
#   bench/run.sh [--quick] [--only http1,tcp] [--keep] [--no-install]
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
exec "$PY" "$HERE/run.py" "$@"
