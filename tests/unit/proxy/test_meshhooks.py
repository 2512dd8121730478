"""The mesh is built on the proxy: no proxy module imports meshway.mesh; the mesh plugs into hooks."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import meshway.proxy

PROXY = Path(meshway.proxy.__file__).parent


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_no_proxy_module_imports_the_mesh():
    offenders = {str(p.relative_to(PROXY)): sorted(m for m in imported_modules(p) if m.startswith("meshway.mesh"))
                 for p in PROXY.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_without_a_mesh_the_hooks_do_nothing_and_importing_the_mesh_plugs_it_in():
    code = (
        "from meshway.proxy import meshhooks\n"
        "from meshway.settings import load_settings\n"
        "s = load_settings(env={}, overrides={'mesh_inbound': '10.0.0.5'})\n"
        "snap = {'mesh': {'endpoints': [{'node_id': 'n', 'inbound': ['10.0.0.9:80']}]}}\n"
        "f = lambda: None\n"
        "print(meshhooks.compile_mesh(snap, s) is meshhooks.MESH_OFF, meshhooks.sniffing_factory(f, None, None, 1) is f)\n"
        "import meshway.mesh\n"
        "rt = meshhooks.compile_mesh(snap, s)\n"
        "print(rt.fronts('10.0.0.5', 80), rt.remote.contains('10.0.0.9', 80), meshhooks.sniffing_factory(f, None, None, 1) is f)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["True True", "True True False"]
