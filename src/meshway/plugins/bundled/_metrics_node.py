"""Kong's node-wide metric families, rendered once per scrape by the node (not by each worker,
whose texts the node sums): `kong_datastore_reachable`, `kong_node_info`, and the shared
memory tables as `kong_memory_lua_shared_dict_bytes` / `_total_bytes` (Kong's `ngx.shared`
dicts are meshway's shared counter tables, `<prefix>/shm/<name>.<workers>`).
"""
from __future__ import annotations

import array
import time
from pathlib import Path

from meshway.plugins._shm import ENTRY, HEADER, HEADER_CELLS, MAGIC


def _gauge(lines: list[str], name: str, text: str) -> None:
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} gauge")


def shm_usage(directory: Path, now: float | None = None) -> list[tuple[str, int, int]]:
    """(table name, bytes in live entries, file size) of every shared counter table in `directory`."""
    now = time.time() if now is None else now
    out = []
    for path in sorted(directory.glob("*.*")) if directory.is_dir() else ():
        if path.name.startswith("."):
            continue  # a table being created
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if len(data) < HEADER.size or HEADER.unpack_from(data)[0] != MAGIC:
            continue
        cells = array.array("q", data[HEADER_CELLS * 8:])
        live = sum(1 for i in range(0, len(cells) - ENTRY + 1, ENTRY) if cells[i] and cells[i + 1] > now)
        out.append((path.name.rsplit(".", 1)[0], live * ENTRY * 8, len(data)))
    return out


def render_node_metrics(node_id: str, version: str, datastore_reachable: bool, shm_dir: Path | None) -> str:
    """The node's own families in the text exposition format."""
    lines: list[str] = []
    _gauge(lines, "kong_datastore_reachable",
           "Datastore reachable from Kong, 0 is unreachable")
    lines.append(f"kong_datastore_reachable {int(datastore_reachable)}")
    _gauge(lines, "kong_node_info", "Kong Node metadata information")
    lines.append(f'kong_node_info{{node_id="{node_id}",version="{version}"}} 1')
    tables = shm_usage(shm_dir) if shm_dir is not None else []
    _gauge(lines, "kong_memory_lua_shared_dict_bytes", "Allocated slabs in bytes in a shared_dict")
    for name, used, _ in tables:
        lines.append(f'kong_memory_lua_shared_dict_bytes{{node_id="{node_id}",shared_dict="{name}",kong_subsystem="http"}} {used}')
    _gauge(lines, "kong_memory_lua_shared_dict_total_bytes", "Total capacity in bytes of a shared_dict")
    for name, _, total in tables:
        lines.append(f'kong_memory_lua_shared_dict_total_bytes{{node_id="{node_id}",shared_dict="{name}",kong_subsystem="http"}} {total}')
    return "\n".join(lines) + "\n"
