"""The `meshway` command: one module per command group."""
from __future__ import annotations

import argparse
import sys

from meshway import __version__
from meshway.cli import _admin, _config, _connect, _dp, _explain, _hybrid, _k8s, _mesh, _migrations, _node, _tproxy
from meshway.settings import SettingsError

GROUPS = (_node, _migrations, _config, _hybrid, _mesh, _explain, _dp, _tproxy, _admin, _k8s, _connect)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `meshway` parser; with `argv` naming one of a node's own commands (`meshway start`,
    `stop`, ...), only that group's parsers: the ~45 of the other groups cost ~50M instructions
    of argparse on the way from `meshway start` to the first proxied request. Any other argv
    (`-h`, another or an unknown command) gets every group."""
    parser = argparse.ArgumentParser(
        prog="meshway",
        description="meshway: an API gateway and service mesh with a Kong-compatible Admin API.",
    )
    parser.add_argument("--version", action="version", version=f"meshway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in (_node,) if argv and argv[0] in _node.COMMANDS else GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return args.handler(args) or 0
    except SettingsError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
