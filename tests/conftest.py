"""Top-level test configuration: shared fixtures are plugins under tests/fixtures."""
import sys
from pathlib import Path

import pytest

# `tests.fixtures.*` must import however pytest is launched (`pytest`, `python -m pytest`, from any cwd).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The node plugs the mesh into the proxy's hooks (meshway.proxy.meshhooks) in every worker; tests
# that compile runtimes in-process compose the parts the same way.
import meshway.mesh  # noqa: E402,F401

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.plugins"]


@pytest.fixture(autouse=True)
def _proxy_core_choice_stays_per_test():
    """A test that builds a proxy state in-process with `http1_impl`/`tls_impl = python` selects the
    pure path for the whole test process (`_core.select`, `_tlsimpl.select`: once per worker in a
    node). Restore the choice afterwards, or a later test meant for the compiled path silently runs
    the pure one."""
    from meshway.proxy import _core, _tlsimpl

    before = (_core._ACTIVE[0], _core.compiled, _tlsimpl._ACTIVE[0])
    yield
    _core._ACTIVE[0], _core.compiled, _tlsimpl._ACTIVE[0] = before
