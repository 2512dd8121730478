"""`meshway <node command>` builds only the node group's parsers (start-up: the other groups'
~45 parsers are ~50M instructions before `meshway start` spawns the master); what a user sees
of those commands is the same as with every group."""
from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from meshway.cli import GROUPS, _node, build_parser

_ROOT = Path(__file__).resolve().parents[2]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_node_groups_command_list_is_what_it_registers():
    parser = argparse.ArgumentParser(prog="meshway")
    _node.register(parser.add_subparsers())
    assert tuple(_commands(parser)) == _node.COMMANDS
    others = set()
    for group in GROUPS:
        if group is not _node:
            p = argparse.ArgumentParser()
            group.register(p.add_subparsers())
            others |= set(_commands(p))
    assert not others & set(_node.COMMANDS)


@pytest.mark.parametrize("command", _node.COMMANDS)
def test_a_node_command_parses_and_helps_as_with_every_group(command):
    lean, full = build_parser([command]), build_parser()
    assert set(_commands(lean)) == set(_node.COMMANDS)
    assert _commands(lean)[command].format_help() == _commands(full)[command].format_help()
    argv = [command, "-p", "/tmp/x"] if command != "version" else [command]
    assert vars(lean.parse_args(argv)).keys() == vars(full.parse_args(argv)).keys()


def test_other_arguments_get_every_group():
    assert _commands(build_parser(["-h"])).keys() == _commands(build_parser()).keys()
    assert _commands(build_parser(["migrations", "up"])).keys() == _commands(build_parser()).keys()


def test_meshway_start_with_a_bad_option_says_the_same_as_before():
    out = subprocess.run([sys.executable, "-c", "from meshway.cli import main; main()", "start", "--bogus"],
                         capture_output=True, text=True, cwd=_ROOT, timeout=60)
    assert out.returncode == 2
    assert "usage: meshway [-h] [--version] COMMAND ..." in out.stderr
    assert "unrecognized arguments: --bogus" in out.stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        build_parser().parse_args(["start", "--bogus"])
    assert err.getvalue() == out.stderr  # what every group's parser says
