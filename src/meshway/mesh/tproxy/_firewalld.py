"""firewalld's permanent copy of the rules: `<direct>` entries in /etc/firewalld/direct.xml.

Install replaces the transparent proxy's entries (found by chain name or rule comment, as in
iptables) and keeps every foreign entry; uninstall removes them, which Kuma cannot do. A file that
holds nothing else afterwards is deleted, as it was before the install created it. Each rule gets
its position in its chain as priority: firewalld orders direct rules by priority only, and rules of
equal priority may come in any order.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from . import _saved
from ._config import TproxyError

DEFAULT_PATH = "/etc/firewalld/direct.xml"


def entries(family_texts: dict[str, str]) -> list[ET.Element]:
    """direct.xml elements for the restore texts of a fresh install, keyed by "ipv4"/"ipv6"."""
    out = []
    for ipv, text in family_texts.items():
        for table_name, table in _saved.simulate({}, text).items():
            for chain in table.chains:
                if _saved.is_ours_chain(chain):
                    out.append(ET.Element("chain", ipv=ipv, table=table_name, chain=chain))
            for chain, specs in table.rules.items():
                for priority, spec in enumerate(specs):
                    rule = ET.Element("rule", ipv=ipv, table=table_name, chain=chain, priority=str(priority))
                    rule.text = spec
                    out.append(rule)
    return out


def _is_ours(element: ET.Element) -> bool:
    chain = element.get("chain", "")
    return _saved.is_ours_chain(chain) or (element.tag == "rule" and _saved.is_ours_rule(chain, element.text or ""))


def read(path: str) -> ET.Element | None:
    if not os.path.exists(path):
        return None
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise TproxyError(f"cannot read firewalld file {path}: {e}", exit_code=1) from None


def text_of(root: ET.Element | None) -> str:
    if root is None:
        return ""
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def planned(root: ET.Element | None, new: list[ET.Element]) -> ET.Element | None:
    """The document with our old entries removed and `new` added; None when nothing is left."""
    result = ET.Element("direct") if root is None else ET.fromstring(ET.tostring(root))
    for child in [c for c in result if _is_ours(c)]:
        result.remove(child)
    result.extend(new)
    return result if len(result) else None


def write(path: str, root: ET.Element | None) -> None:
    """Replace the file atomically, or delete it when nothing is left."""
    if root is None:
        if os.path.exists(path):
            os.unlink(path)
        return
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
    tmp = f"{path}.meshway-tmp"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text_of(root))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        raise TproxyError(f"cannot write firewalld file {path}: {e.strerror}", exit_code=1) from None
