"""`python -m meshway.node`: the detached master process that `meshway start` spawns.

The garbage collector is off until the master's start-up imports are done (`run_node`): what
they allocate lives as long as the process, and the collections it would trigger, before the
workers are spawned, find nothing to free (as in `meshway.node.worker`).
"""
import gc

if __name__ == "__main__":  # run as the process, not imported
    gc.disable()

import argparse  # noqa: E402
import sys  # noqa: E402

from meshway.node._daemon import run_node  # noqa: E402
from meshway.settings import SettingsError, load_settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m meshway.node")
    parser.add_argument("--conf")
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args()
    try:
        settings = load_settings(args.conf)
    except SettingsError as e:
        import os

        if args.ready_fd is not None:
            os.write(args.ready_fd, f"error: {e}\n".encode())
        return 1
    return run_node(settings, args.conf, ready_fd=args.ready_fd, foreground=False)


if __name__ == "__main__":
    sys.exit(main())
