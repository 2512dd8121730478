"""Options every command shares: `-p/--prefix` and `-c/--conf`."""
from __future__ import annotations

import argparse
import sys

from meshway.settings import Settings, load_settings


def add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--prefix", help="prefix directory of the node (default: MESHWAY_PREFIX or /usr/local/meshway)")
    parser.add_argument("-c", "--conf", help="configuration file (key = value lines)")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"prefix": args.prefix} if getattr(args, "prefix", None) else None
    return load_settings(getattr(args, "conf", None), overrides=overrides)


def fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1
