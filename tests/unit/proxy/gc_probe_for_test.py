"""Run by test_config_apply_gc in a fresh interpreter: a real Worker applies configs with every
bundled plugin, alternately, N times; prints what the freezes kept that was garbage (JSON)."""
import asyncio
import collections
import gc
import json
import sys
import tempfile
import weakref
from pathlib import Path

from meshway.model import parse_declarative
from meshway.proxy import Worker
from meshway.settings import load_settings

PLUGINS = [
    {"name": "rate-limiting", "config": {"minute": 5}},
    {"name": "rate-limiting", "config": {"second": 5, "limit_by": "header", "header_name": "x-who"}},
    {"name": "rate-limiting", "config": {"minute": 5, "policy": "redis", "redis": {"host": "127.0.0.1", "port": 9}}},
    {"name": "key-auth"}, {"name": "basic-auth"}, {"name": "jwt"}, {"name": "acl", "config": {"allow": ["a"]}},
    {"name": "ip-restriction", "config": {"deny": ["10.0.0.0/8"]}}, {"name": "cors"}, {"name": "correlation-id"},
    {"name": "request-size-limiting"}, {"name": "request-termination"}, {"name": "request-transformer"},
    {"name": "response-transformer", "config": {"add": {"json": ["a:1"]}}}, {"name": "prometheus"},
    {"name": "http-log", "config": {"http_endpoint": "http://127.0.0.1:9/log"}},
    {"name": "file-log", "config": {"path": "/dev/null"}},
]


def config(variant: int) -> dict:
    services = []
    for i, plugin in enumerate(PLUGINS):
        services.append({"name": f"s{i}", "url": f"http://127.0.0.1:9/{variant}", "plugins": [plugin],
                         "routes": [{"name": f"r{i}", "paths": [f"/p{i}/{variant}"]}]})
    return parse_declarative({"_format_version": "3.0", "services": services})


async def main(applies: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="mwgc-")
    (Path(tmp) / "c.conf").write_text(f"prefix = {tmp}\n")
    worker = Worker(asyncio.get_running_loop(), load_settings(str(Path(tmp) / "c.conf"), env={}))
    snapshots = [config(0), config(1)]
    replaced = []
    for i in range(applies):
        reply = await worker.apply_config(snapshots[i % 2], f"h{i}")
        assert reply["op"] == "applied", reply
        replaced.append(weakref.ref(worker.runtime))
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    ours = collections.Counter(type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("meshway"))
    return {"frozen": frozen, "garbage": len(gc.garbage), "meshway_garbage": dict(ours),
            "replaced_alive": sum(r() is not None for r in replaced[:-1])}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1])))))
