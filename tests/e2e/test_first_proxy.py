"""The README's first-proxy example, pasted: service, route, key-auth, rate limit, metrics."""
import subprocess

import httpx

from tests.e2e.test_node_lifecycle import _origin_for_test


def _curl(*args: str) -> str:
    return subprocess.run(["curl", "-s", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def test_readme_first_proxy(node_factory):
    origin = _origin_for_test()
    node = node_factory()
    node.start()
    try:
        a = node.admin
        _curl("-X", "POST", f"{a}/services", "-d", "name=httpbin", "-d", f"url=http://127.0.0.1:{origin.port}")
        _curl("-X", "POST", f"{a}/services/httpbin/routes", "-d", "name=httpbin", "-d", "paths[]=/httpbin")
        _eventually_status(node.proxy + "/httpbin/get", 200)
        assert httpx.get(node.proxy + "/httpbin/get").text == "origin saw /get"
        _curl("-X", "POST", f"{a}/services/httpbin/plugins", "-d", "name=key-auth")
        _curl("-X", "POST", f"{a}/consumers", "-d", "username=alice")
        _curl("-X", "POST", f"{a}/consumers/alice/key-auth", "-d", "key=secret")
        _curl("-X", "POST", f"{a}/services/httpbin/plugins", "-d", "name=rate-limiting", "-d", "config.minute=5",
              "-d", "config.policy=local")
        _curl("-X", "POST", f"{a}/plugins", "-d", "name=prometheus", "-d", "config.status_code_metrics=true",
              "-d", "config.latency_metrics=true")
        _eventually_status(node.proxy + "/httpbin/get", 401)
        assert httpx.get(node.proxy + "/httpbin/get").json() == {"message": "No API key found in request"}
        _eventually_status(node.proxy + "/httpbin/get", 200, headers={"apikey": "secret"})
        statuses = []
        for _ in range(8):
            r = httpx.get(node.proxy + "/httpbin/get", headers={"apikey": "secret"})
            statuses.append(r.status_code)
        assert statuses.count(429) >= 1 and 200 in statuses
        assert r.headers["RateLimit-Limit"] == "5" and r.json() == {"message": "API rate limit exceeded"}
        metrics = httpx.get(node.status + "/metrics").text
        assert "# TYPE meshway_http_requests_total counter" in metrics
        assert 'code="429"' in metrics and 'route="httpbin"' in metrics and "meshway_request_latency_ms_bucket" in metrics
    finally:
        origin.stop()


def _eventually_status(url, status, headers=None, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = httpx.get(url, headers=headers).status_code
        if got == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} answered {got}, wanted {status}")
