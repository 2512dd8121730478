"""What an idle worker holds (issue 17, "idle worker RSS < 30 MB"; bench/README.md, "Idle worker
memory"): a worker spawned by the master reads its arguments without argparse, gives memory back
without ctypes (`_core._heap`), and one without TLS listeners builds no TLS context (the default certificate's, the compiled transport's check,
the kernel TLS probe); the same worker serves TLS with the default certificate once it is given a
TLS listener after start (a standalone worker's `--listen ... ssl`). Each check that looks at
imports or contexts runs in a fresh interpreter: that is what a worker process holds."""
from __future__ import annotations

import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

from meshway.proxy.worker import _parser, parse_args
from tests.fixtures.certs import cert_pair_for_test

_ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("argv", [
    ["--control-fd", "16", "--worker-id", "0", "--conf", "/tmp/p/.meshway_env"],
    ["--control-fd", "7", "--worker-id", "3"],
    ["--control-fd", "-1", "--worker-id", "2", "--conf", "relative/path.conf"],
])
def test_the_masters_form_of_the_arguments_reads_as_argparse_reads_it(argv):
    assert vars(parse_args(argv)) == vars(_parser().parse_args(argv))


@pytest.mark.parametrize("argv", [
    ["--worker-id", "1", "--control-fd", "9"],  # another order
    ["--control-fd=9", "--worker-id", "1"],
    ["--standalone", "--listen", "127.0.0.1:0", "--snapshot", "s.json"],
    ["--control-fd", "9", "--worker-id", "1", "--conf", "a", "--listen", "127.0.0.1:0"],
])
def test_any_other_form_goes_to_argparse(argv):
    assert vars(parse_args(argv)) == vars(_parser().parse_args(argv))


def test_a_bad_number_is_still_argparses_error(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--control-fd", "x", "--worker-id", "0"])
    assert exc.value.code == 2
    assert "--control-fd: invalid int value: 'x'" in capsys.readouterr().err


_WORKER = """
import asyncio, json, socket, ssl, sys, threading
from pathlib import Path
import uvloop
import meshway.node.worker  # what `python -m meshway.node.worker` imports, the mesh plugged in
from meshway.proxy import Worker
from meshway.proxy.netutil import prepare_listener_socket
from meshway.proxy.worker import parse_args
from meshway.settings import load_settings, parse_listen

made = []
_new = ssl.SSLContext.__new__
def counted(cls, *a, **k):
    made.append(cls)
    return _new(cls, *a, **k)
ssl.SSLContext.__new__ = counted

tmp = Path(sys.argv[1])
conf = tmp / "meshway.conf"
conf.write_text(f"prefix = {tmp}\\nproxy_listen = 127.0.0.1:0\\n")
args = parse_args(["--control-fd", "5", "--worker-id", "0", "--conf", str(conf)])
loop = uvloop.new_event_loop()
asyncio.set_event_loop(loop)
worker = Worker(loop, load_settings(args.conf))
snapshot = json.loads(sys.stdin.read())
assert loop.run_until_complete(worker.apply_config(snapshot, None))["op"] == "applied"
plain = parse_listen("--listen", "127.0.0.1:0")[0]
loop.run_until_complete(worker.serve_sockets([(prepare_listener_socket(plain), plain, "proxy")]))
worker.memory.release()  # what the worker runs after a burst of connections closed: malloc_trim
print("plain", len(made), worker.memory.releases, sorted(
    m for m in ("argparse", "gettext", "shutil", "encodings.idna", "bz2", "lzma", "ctypes") if m in sys.modules))

# a TLS listener after start, as a standalone worker's `--listen ADDR ssl`; then a config
spec = parse_listen("--listen", "127.0.0.1:0 ssl")[0]
sock = prepare_listener_socket(spec)
loop.run_until_complete(worker.serve_sockets([(sock, spec, "proxy")]))
assert loop.run_until_complete(worker.apply_config(snapshot, None))["op"] == "applied"

def handshake():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(sock.getsockname(), timeout=10) as s, ctx.wrap_socket(s) as t:
        t.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        head = t.recv(100).split(b"\\r\\n", 1)[0].decode()
        return t.getpeercert(binary_form=True), head

der, head = loop.run_until_complete(asyncio.wait_for(loop.run_in_executor(None, handshake), 20))
pem = (tmp / "ssl" / "default.crt").read_text()
print("tls", der == ssl.PEM_cert_to_DER_cert(pem), head)
"""


def _snapshot() -> str:
    make = ("import json\nfrom meshway.model import parse_declarative\n"
            "print(json.dumps(parse_declarative({'_format_version': '3.0', 'services': [{'name': 's',"
            " 'url': 'http://127.0.0.1:9', 'routes': [{'name': 'r', 'paths': ['/']}]}]})))\n")
    out = subprocess.run([sys.executable, "-c", make], capture_output=True, text=True, cwd=_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_a_worker_without_tls_listeners_holds_no_tls_context_and_serves_tls_when_given_a_listener(tmp_path):
    # the prefix's default certificate, as the master generates it
    cert, key = cert_pair_for_test("default.test")
    (tmp_path / "ssl").mkdir()
    (tmp_path / "ssl" / "default.crt").write_text(cert)
    (tmp_path / "ssl" / "default.key").write_text(key)
    out = subprocess.run([sys.executable, "-c", _WORKER, str(tmp_path)], input=_snapshot(), capture_output=True,
                         text=True, cwd=_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    plain, tls = out.stdout.strip().splitlines()[-2:]
    assert plain == "plain 0 1 []"
    # the default certificate, and the request answered (404: the route's origin is not asked for it)
    assert tls.startswith("tls True HTTP/1.1 "), tls


def test_a_node_with_a_tls_listener_checks_its_default_certificate_with_each_config(tmp_path):
    # settings with a TLS listener: the default contexts are built as a config compiles, as before,
    # so a broken pair rejects the config in the node's check of a write (and in its workers)
    code = ("import sys\nfrom pathlib import Path\n"
            "from meshway.proxy._runtime import check_config\nfrom meshway.settings import load_settings\n"
            "tmp = Path(sys.argv[1])\n(tmp / 'ssl').mkdir()\n"
            "(tmp / 'ssl' / 'default.crt').write_text('not a certificate')\n"
            "(tmp / 'ssl' / 'default.key').write_text('not a key')\n"
            "for listen in ('127.0.0.1:0', '127.0.0.1:0 ssl'):\n"
            "    (tmp / 'meshway.conf').write_text(f'prefix = {tmp}\\nproxy_listen = {listen}\\n')\n"
            "    try:\n        check_config({}, load_settings(str(tmp / 'meshway.conf')))\n"
            "        print(listen, 'accepted')\n"
            "    except Exception as e:\n        print(listen, 'rejected', type(e).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=_ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    plain, tls = out.stdout.strip().splitlines()[-2:]
    assert plain == "127.0.0.1:0 accepted"  # no TLS listener: nothing reads the default pair
    assert tls.startswith("127.0.0.1:0 ssl rejected"), tls

_LATER = """
import asyncio, json, socket, sys, collections
from pathlib import Path
import uvloop
import meshway.node.worker
from meshway.proxy import Worker
from meshway.proxy.netutil import prepare_listener_socket
from meshway.settings import load_settings, parse_listen

tmp = Path(sys.argv[1])
(tmp / "meshway.conf").write_text(f"prefix = {tmp}\\n")
loop = uvloop.new_event_loop()
asyncio.set_event_loop(loop)
worker = Worker(loop, load_settings(str(tmp / "meshway.conf")))
plain, later = json.loads(sys.stdin.read())
assert loop.run_until_complete(worker.apply_config(plain, None))["op"] == "applied"
print("plain", sorted(m for m in ("fractions", "decimal", "pkgutil") if m in sys.modules))
# after start: a config with a weighted upstream and a plugin
assert loop.run_until_complete(worker.apply_config(later, None))["op"] == "applied"
balancer = next(iter(worker.runtime.balancers.values()))
picks = collections.Counter(balancer.select().host for _ in range(400))
spec = parse_listen("--listen", "127.0.0.1:0")[0]
sock = prepare_listener_socket(spec)
loop.run_until_complete(worker.serve_sockets([(sock, spec, "proxy")]))

def get():
    with socket.create_connection(sock.getsockname(), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        return s.recv(100).split(b"\\r\\n", 1)[0].decode()

status = loop.run_until_complete(asyncio.wait_for(loop.run_in_executor(None, get), 20))
print("later", sorted(picks.items()), status)
"""


def test_weights_and_plugins_work_in_a_config_applied_after_a_plain_one():
    # fractions (weights) and pkgutil (the bundled plugins' list) load with the first config that
    # needs them, not with the worker
    make = ("import json\nfrom meshway.model import parse_declarative\n"
            "plain = parse_declarative({'_format_version': '3.0', 'services': [{'name': 's',"
            " 'url': 'http://127.0.0.1:9', 'routes': [{'name': 'r', 'paths': ['/']}]}]})\n"
            "later = parse_declarative({'_format_version': '3.0', 'upstreams': [{'name': 'up', 'targets': ["
            "{'target': '127.0.0.1:9', 'weight': 300}, {'target': '127.0.0.2:9', 'weight': 100}]}],"
            " 'services': [{'name': 's', 'host': 'up', 'routes': [{'name': 'r', 'paths': ['/']}],"
            " 'plugins': [{'name': 'request-termination', 'config': {'status_code': 418}}]}]})\n"
            "print(json.dumps([plain, later]))\n")
    made = subprocess.run([sys.executable, "-c", make], capture_output=True, text=True, cwd=_ROOT, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", _LATER, tmp], input=made.stdout.strip().splitlines()[-1],
                             capture_output=True, text=True, cwd=_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    plain, later = out.stdout.strip().splitlines()[-2:]
    assert plain == "plain []"
    assert later == "later [('127.0.0.1', 300), ('127.0.0.2', 100)] HTTP/1.1 418 I'm a Teapot", later
