"""The reference processes: the nginx origin, the upload/TCP sinks, nginx and HAProxy as proxies.

Configs are generated into a per-process temp dir; ports are picked free at runtime.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .procs import CORE_LOAD, CORE_PROXY, Proc, clean_env, free_port, wait_port

BENCH_DIR = Path(__file__).resolve().parent.parent
BODY_1M = 1024 * 1024

_NGINX_MAIN = """
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
{stream}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
{http}
}}
"""

_ORIGIN_HTTP = """
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /1m {{ alias {dir}/1m.bin; default_type application/octet-stream; }}
    location / {{ default_type text/plain; return 200 "hello"; }}
  }}
"""

_PROXY_HTTP = """
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 128; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    {tls_listen}
    client_max_body_size 0;
    location /upload {{
      proxy_pass http://127.0.0.1:{upload}; proxy_http_version 1.1; proxy_request_buffering off;
    }}
    location / {{
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
    }}
  }}
"""


def _nginx(name: str, workdir: Path, http: str, core: str, stream: str = "") -> Proc:
    d = workdir / name
    for sub in ("", "body", "proxy", "fcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read files in our 0700 temp dir
    conf = d / "nginx.conf"
    conf.write_text(_NGINX_MAIN.format(user=user, dir=d, http=http, stream=stream))
    return Proc(name, ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf), "-g", "daemon off;"],
                d / "stdout.log", core)


def _started(proc: Proc, port: int) -> Proc:
    if not wait_port(port, 10):
        proc.stop()
        raise RuntimeError(f"{proc.name} did not listen on {port}: {proc.tail()}")
    return proc


def start_origin(workdir: Path) -> tuple[Proc, int]:
    """nginx origin on the load core: 5-byte 'hello' on every path, 1 MiB at /1m."""
    d = workdir / "origin"
    d.mkdir(parents=True, exist_ok=True)
    (d / "1m.bin").write_bytes(os.urandom(BODY_1M))
    port = free_port()
    proc = _nginx("origin", workdir, _ORIGIN_HTTP.format(port=port, dir=d), CORE_LOAD)
    return _started(proc, port), port


def start_sink(workdir: Path, mode: str, *args: str) -> tuple[Proc, int]:
    """A Python sink (`meshbench.sinks`) on the load core; it prints its port first."""
    env = clean_env({"PYTHONPATH": str(BENCH_DIR)})
    proc = Proc(f"sink-{mode}", [sys.executable, "-m", "meshbench.sinks", mode, *args],
                workdir / f"sink-{mode}.log", CORE_LOAD, env=env, stdout_pipe=True)
    line = proc.read_line(10)
    if not line.isdigit():
        proc.stop()
        raise RuntimeError(f"sink {mode} did not start: {proc.tail()}")
    return proc, int(line)


def start_nginx_proxy(workdir: Path, origin: int, upload: int, tls: tuple[Path, Path] | None = None,
                      name: str = "nginx") -> tuple[Proc, int, int | None]:
    """nginx, 1 worker, proxy_pass + upstream keepalive; optional `ssl http2` listener."""
    port = free_port()
    tls_port = free_port() if tls else None
    tls_listen = ""
    if tls:
        tls_listen = (f"listen 127.0.0.1:{tls_port} ssl http2; ssl_certificate {tls[0]}; "
                      f"ssl_certificate_key {tls[1]}; ssl_session_cache shared:SSL:10m;")
    http = _PROXY_HTTP.format(port=port, origin=origin, upload=upload, tls_listen=tls_listen)
    proc = _started(_nginx(name, workdir, http, CORE_PROXY), port)
    return proc, port, tls_port


_HAPROXY_GLOBAL = """
global
  nbthread 1
  maxconn 8000
  {tune}
defaults
  timeout connect 5s
  timeout client 120s
  timeout server 120s
"""

_HAPROXY_HTTP = """
frontend fe_http
  mode http
  bind 127.0.0.1:{port}
  option http-keep-alive
  default_backend be_http
backend be_http
  mode http
  http-reuse always
  server origin 127.0.0.1:{origin}
"""

_HAPROXY_TCP = """
frontend fe_tcp
  mode tcp
  bind 127.0.0.1:{port}
  default_backend be_tcp
backend be_tcp
  mode tcp
  server sink 127.0.0.1:{sink}
frontend fe_tls
  mode tcp
  bind 127.0.0.1:{tls_port}
  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req_ssl_hello_type 1 }}
  use_backend be_tls if {{ req_ssl_sni -i pass.bench.test }}
backend be_tls
  mode tcp
  server tlssink 127.0.0.1:{tls_sink}
"""


def start_haproxy(workdir: Path, name: str, body: str, port: int, bufsize: int | None = None) -> Proc:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    tune = f"tune.bufsize {bufsize}" if bufsize else ""
    cfg = d / "haproxy.cfg"
    cfg.write_text(_HAPROXY_GLOBAL.format(tune=tune) + body)
    proc = Proc(name, ["haproxy", "-db", "-f", str(cfg)], d / "haproxy.log", CORE_PROXY)
    return _started(proc, port)


def start_haproxy_http(workdir: Path, origin: int) -> tuple[Proc, int]:
    port = free_port()
    return start_haproxy(workdir, "haproxy", _HAPROXY_HTTP.format(port=port, origin=origin), port), port


def start_haproxy_tcp(workdir: Path, name: str, sink: int, tls_sink: int, bufsize: int | None) -> tuple[Proc, int, int]:
    port, tls_port = free_port(), free_port()
    body = _HAPROXY_TCP.format(port=port, sink=sink, tls_port=tls_port, tls_sink=tls_sink)
    return start_haproxy(workdir, name, body, port, bufsize), port, tls_port


_APP_NGINX = """
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
{listens}
    location / {{ default_type text/plain; return 200 "{body}"; }}
  }}
}}
"""


def write_app_nginx(d: Path, listens: list[str], body: str) -> Path:
    """The app of the netns scenarios (mesh, zones): nginx, 1 worker, `body` on every path, its
    temp dirs under `d`; returns the nginx.conf written there."""
    for sub in ("", "body", "proxy", "fcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    lines = "\n".join(f"    listen {listen} backlog=4096;" for listen in listens)
    conf.write_text(_APP_NGINX.format(dir=d, listens=lines, body=body))
    return conf
