"""`python -m meshway.node`: the detached master process that `meshway start` spawns."""
import argparse
import sys

from meshway.node._daemon import run_node
from meshway.settings import SettingsError, load_settings


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
