#!/usr/bin/env bash
# Run the whole test suite (installs what it needs first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
[ $# -gt 0 ] || set -- tests examples  # default: the suite and the example plugin's own tests
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
