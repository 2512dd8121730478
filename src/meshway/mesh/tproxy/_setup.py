"""`install` and `uninstall`: plan each IP family's change, show it (dry run) or apply it.

A plan is computed from the host's current rules before anything is touched: for install, the
removal of any previous install followed by the new rules (so installing twice gives the same
rules, as Kuma's cleanup-first does, but in one transaction); for uninstall, the removal alone.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from . import _apply, _firewalld, _rules, _saved
from ._config import Settings, TproxyError

ABOUT_TO_APPLY = ("meshway is about to apply the iptables rules that will enable transparent proxying on the machine. "
                  "The SSH connection may drop. If that happens, just reconnect again")
INSTALLED = ("transparent proxy setup completed successfully. "
             "You can now run meshway dp with the transparent-proxy feature enabled")
UNINSTALLED = "transparent proxy cleanup completed successfully"
DRY_RUN_NON_ROOT = "# [WARNING] [dry-run]: running this command as a non-root user may lead to unpredictable results"


@dataclass
class Plan:
    """One IP family's change: the restore text and the rules before and after it."""

    tools: _apply.Tools
    before: _saved.Ruleset
    text: str
    after: _saved.Ruleset
    fresh_text: str = ""              # install: the rules alone, for firewalld and --verbose
    drop_tables: list[str] = field(default_factory=list)

    @property
    def ipv6(self) -> bool:
        return self.tools.family == "IPv6"


def check_root(dry_run: bool, err) -> None:
    if os.geteuid() == 0:
        return
    if not dry_run:
        raise TproxyError("you need to have root privileges to run this command")
    print(DRY_RUN_NON_ROOT, file=err)


def families(settings: Settings, err, *, install: bool) -> list[_apply.Tools]:
    v4 = _apply.find_tools(settings, ipv6=False)
    if v4 is None:
        raise TproxyError("iptables, iptables-save and iptables-restore are needed (apt-get install iptables)", exit_code=1)
    if settings.ip_family_mode == "ipv4":
        return [v4]
    v6 = _apply.find_tools(settings, ipv6=True)
    if install and not _apply.has_ipv6():
        print("# [WARNING] IPv6 rules skipped: this host has no IPv6 address (use --ip-family-mode ipv4 to silence this)",
              file=err)
        return [v4]
    if v6 is None:
        if install:
            print("# [WARNING] IPv6 rules skipped: ip6tables, ip6tables-save or ip6tables-restore not found", file=err)
        return [v4]
    return [v4, v6]


def current_rules(tools: _apply.Tools, settings: Settings, err) -> _saved.Ruleset:
    try:
        return _saved.parse(_apply.save(tools))
    except TproxyError:
        if settings.dry_run and os.geteuid() != 0:
            print(f"# [WARNING] [dry-run]: cannot read the current {tools.family} rules as a non-root user; "
                  "showing the rules as if the host had none", file=err)
            return {}
        raise


# -- install ---------------------------------------------------------------------------------------------


def plan_install(settings: Settings, err) -> list[Plan]:
    uid = _apply.resolve_uid(settings.dp_user)
    servers = []
    if settings.dns_enabled and not settings.dns_capture_all:
        servers = _apply.resolvers(settings.resolv_conf)
    plans, lo = [], _apply.loopback_name()
    for tools in families(settings, err, install=True):
        ipv6 = tools.family == "IPv6"
        fam = _rules.Family(ipv6, uid, lo, tuple(s for s in servers if (":" in s) == ipv6))
        if settings.dns_enabled and not settings.dns_capture_all and not fam.dns_servers:
            print(f"# [WARNING] no {tools.family} DNS servers found in {settings.resolv_conf}. "
                  f"DNS traffic capture for {tools.family} will be disabled", file=err)
        before = current_rules(tools, settings, err)
        fresh = _rules.render(settings, fam)
        text = _saved.removal(before) + fresh
        plans.append(Plan(tools, before, text, _saved.simulate(before, text), fresh_text=fresh))
    return plans


def install(settings: Settings, firewalld_path: str = _firewalld.DEFAULT_PATH, out=sys.stdout, err=sys.stderr) -> int:
    check_root(settings.dry_run, err)
    plans = plan_install(settings, err)
    firewalld = None
    if settings.store_firewalld:
        texts = {("ipv6" if p.ipv6 else "ipv4"): p.fresh_text for p in plans}
        firewalld = (_firewalld.read(firewalld_path), _firewalld.entries(texts))
    if settings.dry_run:
        show(plans, "after install", out)
        if firewalld:
            show_firewalld(firewalld_path, firewalld[0], _firewalld.planned(*firewalld), out)
        return 0
    if settings.verbose:
        for plan in plans:
            print(f"# {plan.tools.restore} --noflush <<EOF\n{plan.text}EOF", file=out)
    print(ABOUT_TO_APPLY, file=out)
    apply(plans, settings)
    if any(p.ipv6 for p in plans):
        _apply.set_passthrough_v6(_apply.loopback_name(), True)
    if firewalld:
        _firewalld.write(firewalld_path, _firewalld.planned(*firewalld))
        print(f"iptables saved with firewalld ({firewalld_path})", file=out)
    print(INSTALLED, file=out)
    return 0


def apply(plans: list[Plan], settings: Settings) -> None:
    """Test every family's text, then apply them; a failure puts the families already done back."""
    for plan in plans:
        _apply.restore(plan.tools, plan.text, settings, test=True)
    done: list[Plan] = []
    try:
        for plan in plans:
            _apply.restore(plan.tools, plan.text, settings)
            done.append(plan)
            _apply.drop_empty_tables(plan.tools, plan.drop_tables)
    except TproxyError:
        for plan in done:
            undo = _saved.removal(plan.after) + _rules_of(plan.before)
            _apply.restore(plan.tools, undo, settings)
        raise


def _rules_of(tables: _saved.Ruleset) -> str:
    """Restore text re-adding the transparent proxy rules of `tables` where they were (to undo a partial
    apply): once ours are removed, a built-in chain holds only the foreign rules in their order, so
    inserting ours at their old positions, lowest first, rebuilds it exactly."""
    blocks = []
    for name, table in tables.items():
        ours = [c for c in table.chains if _saved.is_ours_chain(c)]
        lines = [f"-N {c}" for c in ours]
        for chain in table.chains:
            for index, spec in enumerate(table.rules[chain]):
                if _saved.is_ours_chain(chain):
                    lines.append(f"-A {chain} {spec}")
                elif _saved.is_ours_rule(chain, spec):
                    lines.append(f"-I {chain} {index + 1} {spec}")
        if lines:
            blocks.append("\n".join([f"*{name}", *lines, "COMMIT"]))
    return "\n".join(blocks) + ("\n" if blocks else "")


# -- uninstall --------------------------------------------------------------------------------------------


def plan_uninstall(settings: Settings, err) -> list[Plan]:
    plans = []
    primary = families(settings, err, install=False)
    for tools in primary + [other for t in primary for other in _apply.other_backends(settings, t)]:
        try:
            before = _saved.parse(_apply.save(tools))
        except TproxyError:
            if tools not in primary or tools.family == "IPv6":
                continue  # no IPv6 in this kernel, or no such backend: nothing of ours there either
            raise
        if not _saved.has_ours(before):
            continue
        text = _saved.removal(before)
        after = _saved.simulate(before, text)
        drop = [t for t in _saved.touched_tables(text) if t in after and _saved.is_empty(after[t])]
        plans.append(Plan(tools, before, text, _saved.without_tables(after, drop), drop_tables=drop))
    return plans


def uninstall(settings: Settings, firewalld_path: str = _firewalld.DEFAULT_PATH, out=sys.stdout, err=sys.stderr) -> int:
    check_root(settings.dry_run, err)
    plans = plan_uninstall(settings, err)
    fw_before = _firewalld.read(firewalld_path)
    fw_after = _firewalld.planned(fw_before, []) if fw_before is not None else None
    fw_changes = fw_before is not None and _firewalld.text_of(fw_before) != _firewalld.text_of(fw_after)
    if not plans and not fw_changes:
        print("no transparent proxy rules detected", file=out)
        return 0
    if settings.dry_run:
        show(plans, "after uninstall", out)
        if fw_changes:
            show_firewalld(firewalld_path, fw_before, fw_after, out)
        return 0
    if settings.verbose:
        for plan in plans:
            print(f"# {plan.tools.restore} --noflush <<EOF\n{plan.text}EOF", file=out)
    apply(plans, settings)
    if any(p.ipv6 for p in plans):
        _apply.set_passthrough_v6(_apply.loopback_name(), False)
    if fw_changes:
        _firewalld.write(firewalld_path, fw_after)
        print(f"transparent proxy entries removed from {firewalld_path}", file=out)
    print(UNINSTALLED, file=out)
    return 0


# -- showing a plan ---------------------------------------------------------------------------------------


def show(plans: list[Plan], label: str, out) -> None:
    for plan in plans:
        print(f"### {plan.tools.family} ###", file=out)
        text = _saved.diff(plan.before, plan.after, f"current ({plan.tools.save})", label)
        print(text or "# no changes: the rules are already as planned", file=out)


def show_firewalld(path: str, before, after, out) -> None:
    import difflib

    print("### firewalld ###", file=out)
    lines = difflib.unified_diff(_firewalld.text_of(before).splitlines(), _firewalld.text_of(after).splitlines(),
                                 f"{path} (current)", f"{path} (planned)", n=1, lineterm="")
    print("\n".join(lines) or "# no changes", file=out)
