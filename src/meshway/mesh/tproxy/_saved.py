"""The host's rules as `iptables-save` prints them: parse, find ours, plan their removal, predict a change.

Pure. Uninstall deletes exactly the rules that carry a transparent proxy comment (meshway's or
Kuma's) or name a KUMA_MESH_ chain, and those chains, with `-D <spec>` / `-F` / `-X` lines fed to
`iptables-restore --noflush`: foreign rules, chains and their counters are never rewritten (Kuma
instead restores the whole filtered ruleset with a flush, which races with other writers).

`simulate` applies restore text to a parsed ruleset the way iptables-restore would, which is how a
dry run shows the diff against the host's current rules without changing them.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ._rules import BUILTIN_CHAINS, CHAIN_PREFIX, COMMENT_PREFIX, KUMA_COMMENT_PREFIX

_COUNTERS = re.compile(r"\s*\[\d+:\d+\]$")


@dataclass
class Table:
    """Chains in order (name -> policy, '-' for user chains) and each chain's rule specs."""

    chains: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)

    def add_chain(self, name: str, policy: str = "-") -> None:
        self.chains.setdefault(name, policy)
        self.rules.setdefault(name, [])


Ruleset = dict[str, Table]


def new_table(name: str) -> Table:
    table = Table()
    for chain in BUILTIN_CHAINS.get(name, ()):
        table.add_chain(chain, "ACCEPT")
    return table


def parse(text: str) -> Ruleset:
    """iptables-save output (counters and `#` lines ignored)."""
    tables: Ruleset = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), Table())
        elif line.startswith(":") and current is not None:
            name, _, policy = _COUNTERS.sub("", line[1:]).partition(" ")
            current.add_chain(name, policy.strip() or "-")
        elif line.startswith("-A ") and current is not None:
            _, chain, rest = line.split(" ", 2)
            current.add_chain(chain)
            current.rules[chain].append(rest)
    return tables


def is_ours_chain(name: str) -> bool:
    return name.startswith(CHAIN_PREFIX + "_")


def is_ours_rule(chain: str, rule_spec: str) -> bool:
    if is_ours_chain(chain) or COMMENT_PREFIX in rule_spec or KUMA_COMMENT_PREFIX in rule_spec:
        return True
    return any(is_ours_chain(w) for w in rule_spec.split())


def has_ours(tables: Ruleset) -> bool:
    return any(is_ours_chain(c) or any(is_ours_rule(c, s) for s in t.rules[c])
               for t in tables.values() for c in t.chains)


def removal(tables: Ruleset) -> str:
    """Restore text removing every transparent proxy rule and chain, and nothing else."""
    blocks = []
    for name, table in tables.items():
        deletes = [f"-D {c} {s}" for c in table.chains if not is_ours_chain(c)
                   for s in table.rules[c] if is_ours_rule(c, s)]
        ours = [c for c in table.chains if is_ours_chain(c)]
        lines = deletes + [f"-F {c}" for c in ours] + [f"-X {c}" for c in ours]
        if lines:
            blocks.append("\n".join([f"*{name}", *lines, "COMMIT"]))
    return "\n".join(blocks) + ("\n" if blocks else "")


def touched_tables(restore_text: str) -> list[str]:
    return [line[1:].strip() for line in restore_text.splitlines() if line.startswith("*")]


def simulate(tables: Ruleset, restore_text: str) -> Ruleset:
    """The ruleset after `iptables-restore --noflush` of the text (a copy; the input is untouched)."""
    out = {n: Table(dict(t.chains), {c: list(r) for c, r in t.rules.items()}) for n, t in tables.items()}
    table = None
    for line in restore_text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            name = line[1:].strip()
            table = out.setdefault(name, new_table(name))
        elif line and line != "COMMIT" and not line.startswith("#") and table is not None:
            _apply_line(table, line)
    return out


def _apply_line(table: Table, line: str) -> None:
    op, chain, *rest = line.split(" ", 2)
    arg = rest[0] if rest else ""
    if op == "-N":
        table.add_chain(chain)
    elif op == "-X":
        table.chains.pop(chain, None)
        table.rules.pop(chain, None)
    elif op == "-F":
        table.rules[chain] = []
    elif op == "-A":
        table.rules[chain].append(arg)
    elif op == "-D":
        if arg in table.rules.get(chain, []):
            table.rules[chain].remove(arg)
    elif op == "-I":
        position, _, rule = arg.partition(" ")
        table.rules[chain].insert(int(position) - 1, rule)


def is_empty(table: Table) -> bool:
    """No rules, no user chains, every policy ACCEPT: the same as no table at all."""
    return all(p == "ACCEPT" for p in table.chains.values()) and not any(table.rules.values())


def without_tables(tables: Ruleset, names: list[str]) -> Ruleset:
    return {n: t for n, t in tables.items() if n not in names}


def render(tables: Ruleset) -> list[str]:
    """A normalized listing (built-in chains first, user chains sorted) that two rulesets diff well in."""
    lines = []
    for name in sorted(tables, key=_table_key):
        table = tables[name]
        builtin = [c for c in BUILTIN_CHAINS.get(name, ()) if c in table.chains]
        order = builtin + sorted(c for c in table.chains if c not in builtin)
        lines.append(f"*{name}")
        lines += [f":{c} {table.chains[c]}" for c in order]
        lines += [f"-A {c} {s}" for c in order for s in table.rules[c]]
        lines.append("COMMIT")
    return lines


def _table_key(name: str) -> tuple[int, str]:
    order = ("raw", "mangle", "nat", "filter", "security")
    return (order.index(name) if name in order else len(order), name)


def diff(before: Ruleset, after: Ruleset, label_before: str, label_after: str) -> str:
    lines = difflib.unified_diff(render(before), render(after), label_before, label_after, n=2, lineterm="")
    return "\n".join(lines)

