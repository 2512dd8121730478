"""Top-level test configuration: shared fixtures are plugins under tests/fixtures."""
import sys
from pathlib import Path

# `tests.fixtures.*` must import however pytest is launched (`pytest`, `python -m pytest`, from any cwd).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The node plugs the mesh into the proxy's hooks (meshway.proxy.meshhooks) in every worker; tests
# that compile runtimes in-process compose the parts the same way.
import meshway.mesh  # noqa: E402,F401

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.plugins"]
