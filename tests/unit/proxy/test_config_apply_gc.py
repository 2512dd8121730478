"""The worker freezes each config it applies (gc.freeze, to keep full collections off the event
loop): so a replaced config must be freed by reference counting alone. A reference cycle in a
runtime (a plugin keeping a bound method of itself) would be frozen and never collected."""
import json
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).with_name("gc_probe_for_test.py")


def _probe(applies: int) -> dict:
    done = subprocess.run([sys.executable, str(PROBE), str(applies)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_replaced_configs_leave_no_frozen_garbage():
    few, many = _probe(4), _probe(24)
    assert many["meshway_garbage"] == {}, many
    assert many["replaced_alive"] == 0, many
    # the garbage the freezes kept does not grow with the number of applies (one-off import garbage aside)
    assert many["garbage"] - few["garbage"] < 20, (few, many)
