#!/usr/bin/env bash
# Run the whole test suite (installs what it needs first). Extra arguments go to pytest.
# With no test paths given, the HTTP/1.1, HTTP/2 and plugin tests then run a second time on the
# pure-Python path (`http1_impl = python`: httptools; `http2_impl = python`: the Python codec;
# `tls_impl = python`: uvloop's ssl transport), as the first run used the compiled core (README
# "Performance"); both must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
pure=(tests/integration/proxy tests/e2e/test_protocols.py tests/unit/proxy tests/integration/http2 tests/unit/http2
      tests/integration/plugins tests/unit/plugins tests/e2e/test_rate_limit_workers.py
      tests/e2e/test_response_ratelimiting_plugin.py tests/e2e/test_consumer_groups.py
      tests/e2e/test_traffic_plugins_hybrid.py)  # plugins: their hot paths have compiled steps (key-auth, rate-limiting)
if [ $# -eq 0 ] || { [ "${1:0:1}" = "-" ] && ! printf '%s\n' "$@" | grep -qv '^-'; }; then
  # Most tests wait on real processes (nodes, namespaces, browsers), not on the CPU: 4 workers, a
  # test file each at a time (its module fixtures stay in one process). MESHWAY_TEST_WORKERS=0: serial.
  par=(-n "${MESHWAY_TEST_WORKERS:-4}" --dist loadfile)
  unset MESHWAY_TEST_WORKERS  # nodes read every MESHWAY_* variable as a setting, and refuse unknown ones
  .venv/bin/python -m pytest -p no:cacheprovider "${par[@]}" "$@" tests examples
  echo "== HTTP/1.1, HTTP/2, TLS and plugin tests again on the pure-Python path (MESHWAY_HTTP1_IMPL=python, MESHWAY_HTTP2_IMPL=python, MESHWAY_TLS_IMPL=python)"
  exec env MESHWAY_HTTP1_IMPL=python MESHWAY_HTTP2_IMPL=python MESHWAY_TLS_IMPL=python .venv/bin/python -m pytest -p no:cacheprovider "${par[@]}" "$@" "${pure[@]}"
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
