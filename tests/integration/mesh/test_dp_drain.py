"""SIGTERM drains: a request in flight through a data plane that is told to stop still gets its
answer, while the data plane deregisters at once (Kuma: kuma-dp drains Envoy on SIGTERM)."""
from __future__ import annotations

import select
import signal
import subprocess
import sys
import threading

import httpx

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import CLIENT, WEB, Cp, Dp, dps, wait_until  # noqa: F401

SLOW_APP = """
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            print("in /slow", flush=True)
            time.sleep(3)
        body = b"done " + self.path.encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_sigterm_lets_a_request_in_flight_finish(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    app_port, web_port, outbound = free_port(), free_port(), free_port()
    app = subprocess.Popen([sys.executable, "-c", SLOW_APP, str(app_port)], stdout=subprocess.PIPE, text=True)
    try:
        web = Dp(cp, tmp_path, "web", WEB, "name=web", "address=127.0.0.1", f"port={web_port}",
                 f"app_port={app_port}")  # the app runs on its own: stopping the data plane leaves it up
        client = Dp(cp, tmp_path, "client", CLIENT, f"outbound={outbound}")
        dps.extend((web, client))
        for dp in (web, client):
            wait_until(dp.ready, timeout=40, what="data plane ready")
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{outbound}/fast", timeout=3).text == "done /fast",
                   timeout=30, what="client -> web")
        answer: dict = {}

        def slow() -> None:
            try:
                r = httpx.get(f"http://127.0.0.1:{outbound}/slow", timeout=20)
                answer.update(status=r.status_code, text=r.text)
            except httpx.HTTPError as e:
                answer.update(error=repr(e))

        t = threading.Thread(target=slow)
        t.start()
        # the request is in the app (not only sent) when the data plane is told to stop
        assert select.select([app.stdout], [], [], 30)[0] and app.stdout.readline() == "in /slow\n"
        web.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "web" not in cp.dataplanes(), timeout=5, what="web deregistered at once")
        t.join(30)
        assert answer == {"status": 200, "text": "done /slow"}
        assert web.proc.wait(30) == 0
    finally:
        app.kill()
        app.wait()
