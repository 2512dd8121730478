#!/bin/sh
# Profile the meshway worker under wrk load; the SVG flame graph goes to bench/results/.
#   bench/profile.sh [--scenario http1|routes10k|plugins|https] [--seconds 10] [--format flamegraph|speedscope] [--native]
# Needs py-spy in the venv (not a project dependency): .venv/bin/pip install py-spy
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="$ROOT/.venv/bin/python"
[ -x "$ROOT/.venv/bin/py-spy" ] || "$ROOT/.venv/bin/pip" install -q py-spy
exec "$PY" "$HERE/profile.py" "$@"
