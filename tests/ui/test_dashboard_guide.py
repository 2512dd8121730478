"""docs/guides/dashboard.md: every `sh` command as written, in a network namespace of its own (the
guide's fixed ports 8000-8002 and 9000), and its browser steps in chromium started in that
namespace (playwright speaks to it over a pipe, so the browser needs no route out)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.netns.conftest import netns  # noqa: F401  (fixture)
from tests.ui.conftest import CHROMIUM, ConsoleErrors_for_test

pytestmark = [pytest.mark.netns]
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "dashboard.md"
GUI = "http://127.0.0.1:8002"


def guide_blocks_for_test() -> list[list[str]]:
    return [[line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)]


def _run(ns, command: str, scratch: Path, env: dict) -> str:
    command = command.replace("/scratch", str(scratch)).replace("--daemon", f"--daemon --pid {scratch}/gunicorn.pid")
    result = subprocess.run(ns.argv("bash", "-c", command), cwd=scratch, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def ns_browser(netns, tmp_path, playwright_session):  # noqa: F811
    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {netns.name} {CHROMIUM} \"$@\"\n")
    wrapper.chmod(0o755)
    browser = playwright_session.chromium.launch(executable_path=str(wrapper), headless=True)
    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.console_errors = ConsoleErrors_for_test()
    page.console_errors.watch(page)
    yield page
    browser.close()


def test_every_command_and_browser_step_of_the_dashboard_guide(netns, ns_browser):  # noqa: F811
    page = ns_browser
    scratch = Path(tempfile.mkdtemp(prefix="meshway-gui-guide-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    start, proxy, html, tokens, stop = guide_blocks_for_test()
    try:
        assert "dashboard: http://127.0.0.1:8002/" in _run(netns, start[0], scratch, env)
        _run(netns, start[1] + f" && curl -s --retry 20 --retry-connrefused -o /dev/null 127.0.0.1:9000/get", scratch, env)

        page.goto(GUI + "/")
        page.get_by_role("link", name="Gateway services").first.click()
        page.wait_for_load_state()
        page.get_by_role("link", name="New gateway service").click()
        page.wait_for_load_state()
        page.fill("#field-name", "httpbin")
        page.fill("#field-url", "htp://127.0.0.1:9000")  # the guide's "try" refusal first
        page.get_by_role("button", name="Create").click()
        page.wait_for_load_state()
        assert "invalid url scheme 'htp'" in page.locator("#error-url").inner_text()
        page.fill("#field-url", "http://127.0.0.1:9000")
        page.get_by_role("button", name="Create").click()
        page.wait_for_load_state()
        page.get_by_role("link", name="Add route").click()
        page.wait_for_load_state()
        page.fill("#field-name", "httpbin")
        page.fill("#field-paths", "/httpbin")
        page.get_by_role("button", name="Create").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Route httpbin"

        proxied = _run(netns, proxy[0], scratch, env)
        assert '"X-Forwarded-Prefix": "/httpbin"' in proxied and '"url": "http://127.0.0.1:9000/get"' in proxied
        assert "httpbin" in _run(netns, html[0], scratch, env)

        for command in tokens[:-1]:
            _run(netns, command, scratch, env)
        assert _run(netns, tokens[-1], scratch, env).strip() == "303 http://localhost:8002/login?next=/services"
        page.goto(GUI + "/services")
        assert "/login" in page.url
        page.fill("#field-token", (scratch / "token").read_text().strip())
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        assert page.locator("table.entities tbody tr", has_text="httpbin").count() == 1
        assert page.console_errors == []

        assert "meshway stopped" in _run(netns, stop[0], scratch, env)
    finally:
        subprocess.run(netns.argv("bash", "-c", f"meshway stop -p {scratch}/node"), env=env, capture_output=True,
                       timeout=60)
        pid = scratch / "gunicorn.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGTERM)
