"""What a node's processes import on the way to their first proxied request (issue 17, item 6):
the master imports no hybrid-mode client/server, PKI or HTTP server stack before it spawns its
workers (uvicorn and starlette load when it adds its own servers, after the workers started),
and a worker whose config names its targets by address never loads the DNS client; a config
with a hostname target loads it and resolves the name. Each check runs in a fresh interpreter,
so what it sees is what a node process imports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_master_imports_no_server_or_hybrid_stack_before_spawning_workers():
    code = ("import sys, meshway.node.master\n"
            "print(sorted(m for m in ('uvicorn', 'starlette', 'websockets', 'meshway.cluster.client',"
            " 'meshway.cluster.server', 'meshway.pki', 'meshway.node._status') if m in sys.modules))\n")
    assert _run(code) == "[]"


def test_the_start_command_imports_no_asyncio_before_spawning_the_master():
    # what `meshway start` imports before it spawns the master (meshway.cli._node._start)
    code = ("import sys, meshway.cli\n"
            "from meshway.node import running_pid, run_node, spawn_node\n"
            "from meshway.node._prefix import record_settings\n"
            "print(sorted(m for m in ('asyncio', 'uvloop', 'meshway.node.master') if m in sys.modules))\n")
    assert _run(code) == "[]"


def test_the_master_binds_and_writes_its_node_id_without_the_data_plane_or_cryptography(tmp_path):
    # what the master runs before it launches its workers: bind (netutil) and, on a first start,
    # a new node id; the data plane and cryptography load later (the workers' start overlaps them)
    code = ("import sys, socket, meshway.node.master\n"
            "from meshway.cluster._identity import load_node_id\n"
            "from meshway.proxy.netutil import prepare_listener_socket\n"
            "from meshway.settings import parse_listen\n"
            "sock = prepare_listener_socket(parse_listen('proxy_listen', '127.0.0.1:0')[0])\n"
            f"node_id = load_node_id({str(tmp_path)!r})\n"
            "print(sorted(m for m in ('cryptography', 'meshway.proxy._runtime', 'meshway.proxy._state', 'meshway.model',"
            " 'yaml', 'pydantic') if m in sys.modules), sock.getsockname()[1] > 0, len(node_id))\n")
    assert _run(code) == "[] True 36"
    assert (tmp_path / "node_id").read_text().strip()


_WORKER = """
import asyncio, sys, tempfile
from pathlib import Path
from meshway.model import parse_declarative
from meshway.proxy import Worker
from meshway.settings import load_settings

tmp = Path(tempfile.mkdtemp())
(tmp / "meshway.conf").write_text(f"prefix = {tmp}\\n")
loop = asyncio.new_event_loop()
worker = Worker(loop, load_settings(str(tmp / "meshway.conf")))
for host in sys.argv[1:]:
    doc = {"_format_version": "3.0", "upstreams": [{"name": "up", "targets": [{"target": f"{host}:9"}]}],
           "services": [{"name": "s", "host": "up", "routes": [{"name": "r", "paths": ["/"]}]}]}
    reply = loop.run_until_complete(worker.apply_config(parse_declarative(doc), None))
    assert reply["op"] == "applied", reply
    loaded = sorted(m for m in ("dnslib", "meshway.proxy.balancer._dnsresolver") if m in sys.modules)
    targets = [a.peer.host for b in worker.runtime.balancers.values() for t in b.targets for a in t.addresses]
    print(host, loaded, targets)
"""


def test_a_worker_loads_the_dns_client_only_for_a_config_with_a_hostname():
    out = subprocess.run([sys.executable, "-c", _WORKER, "127.0.0.1", "localhost"], capture_output=True, text=True,
                         cwd=_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    by_address, by_name = out.stdout.strip().splitlines()[-2:]
    assert by_address.startswith("127.0.0.1 []")
    assert by_name.startswith("localhost ['dnslib', 'meshway.proxy.balancer._dnsresolver']")
    assert "127.0.0.1" in by_name.split("]", 1)[1]  # and the name was resolved with it


_LEAN_WORKER = """
import asyncio, json, sys
from pathlib import Path
import meshway.node.worker  # what `python -m meshway.node.worker` imports, the mesh plugged in
from meshway.proxy import Worker
from meshway.settings import load_settings

tmp = Path(sys.argv[1])
(tmp / "meshway.conf").write_text(f"prefix = {tmp}\\n")
loop = asyncio.new_event_loop()
worker = Worker(loop, load_settings(str(tmp / "meshway.conf")))
reply = loop.run_until_complete(worker.apply_config(json.loads(sys.stdin.read()), None))
assert reply["op"] == "applied", reply
print(sorted(m for m in ("meshway.proxy.stream", "meshway.node._daemon", "meshway.node._prefix", "shutil", "tempfile",
                         "secrets", "uuid", "bz2", "lzma", "meshway.model", "pydantic") if m in sys.modules))
"""


def test_a_worker_running_an_http_config_leaves_out_what_it_does_not_use(tmp_path):
    # the snapshot as the master sends it (the model runs in the master, not in this process)
    make = ("import json\nfrom meshway.model import parse_declarative\n"
            "print(json.dumps(parse_declarative({'_format_version': '3.0', 'services': [{'name': 's',"
            " 'url': 'http://127.0.0.1:9', 'routes': [{'name': 'r', 'paths': ['/']}]}]})))\n")
    snapshot = _run(make)
    out = subprocess.run([sys.executable, "-c", _LEAN_WORKER, str(tmp_path)], input=snapshot, capture_output=True, text=True,
                         cwd=_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_worker_process_freezes_what_its_imports_made_and_collects_garbage_after():
    # `python -m meshway.node.worker` runs its imports with the collector off, then freezes their
    # objects (its later full collections skip them) and turns it back on before it serves
    code = ("import gc, runpy, sys\n"
            "import meshway.proxy.worker as w\n"
            "w.main = lambda: print(gc.isenabled(), gc.get_freeze_count() > 10000)\n"
            "runpy.run_module('meshway.node.worker', run_name='__main__')\n")
    assert _run(code) == "True True"
