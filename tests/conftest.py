"""Top-level test configuration: shared fixtures are plugins under tests/fixtures."""
import sys
from pathlib import Path

# `tests.fixtures.*` must import however pytest is launched (`pytest`, `python -m pytest`, from any cwd).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.plugins"]
