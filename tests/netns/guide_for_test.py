"""The commands of a docs/guides/*.md file, read from its text, so that a test runs the guide as
written and a guide can never drift from what is tested.

A command is one complete shell command of a ```sh block: continuation lines (`\\`) and compound
commands over several lines (`for ...; do ... done`) are one command; `bash -n` says when the
lines gathered so far make a whole command. Each command carries the `## ` heading it is under
and the text of its trailing comment (what the guide promises it prints).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "guides"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
_HEADING = re.compile(r"^## (.+)$", re.M)


@dataclass(frozen=True)
class GuideCommand:
    """One command of a guide: its text, the section it is in, and what its comment promises."""

    text: str
    section: str
    promise: str


def guide_commands_for_test(name: str) -> list[GuideCommand]:
    text = (GUIDES / name).read_text()
    headings = [(m.start(), m.group(1)) for m in _HEADING.finditer(text)]
    commands = []
    for block in _BLOCK.finditer(text):
        section = next((h for pos, h in reversed(headings) if pos < block.start()), "")
        commands += [GuideCommand(c, section, _promise(c)) for c in _split(block.group(1))]
    return commands


def guide_step_for_test(name: str, step: int) -> list[GuideCommand]:
    """The commands under the guide's `## Step <step>:` heading (and only that one: Step 1 is
    not Step 10, whose `pkill ncat` outside a PID namespace of its own would hit the host's)."""
    found = [c for c in guide_commands_for_test(name) if c.section.startswith(f"Step {step}:")]
    assert found, f"docs/guides/{name} has no commands under a heading 'Step {step}:'"
    return found


def _split(block: str) -> list[str]:
    commands, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if not pending.rstrip().endswith("\\") and _complete(pending):
            commands.append(pending.strip())
            pending = ""
    assert not pending, f"an unfinished command in a guide: {pending!r}"
    return commands


def _complete(text: str) -> bool:
    return subprocess.run(["bash", "-n", "-c", text], capture_output=True, timeout=10).returncode == 0


def _promise(command: str) -> str:
    """The trailing comment of a one-line command (`curl ... # Hello from Service B`)."""
    if "\n" in command or " # " not in command:
        return ""
    return command.rsplit(" # ", 1)[1].strip()
