"""The README's "A first proxy" block, run as a script: no sleeps, every command right after the
previous one, and every answer its comments promise (proxied 200, 401 without a key, 200 with
RateLimit-* headers, 429 on the 6th request of the minute, metrics)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers.node import clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
MARK = "@@@ "


def readme_block_for_test() -> list[str]:
    """The lines of the first ```sh block under "### A first proxy"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### A first proxy", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def _commands(lines: list[str]) -> list[tuple[str, str]]:
    """(command, its trailing comment) for each line that runs something."""
    out = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command, _, comment = line.partition("  # ")
        out.append((command.strip(), comment.strip()))
    return out


def _script(lines: list[str], admin: int, proxy: int, origin: int, pidfile: Path) -> str:
    """The block with this node's ports; the origin also writes a pid file, so the test can stop it."""
    venv_bin = str(Path(sys.executable).parent)
    text = "\n".join(lines)
    text = text.replace("$PWD/.venv/bin", venv_bin).replace(".venv/bin", venv_bin)
    text = text.replace("localhost:8001", f"localhost:{admin}").replace("localhost:8000", f"localhost:{proxy}")
    text = text.replace("127.0.0.1:9000", f"127.0.0.1:{origin}").replace("--daemon", f"--daemon --pid {pidfile}")
    # before each command, a marker line: the output is cut into one answer per command
    return f"trap 'printf \"\\n{MARK}%s\\n\" \"$BASH_COMMAND\"' DEBUG\n{text}\n"


def _answers(output: str) -> list[str]:
    parts = output.split("\n" + MARK)[1:]
    return [p.split("\n", 1)[1] if "\n" in p else "" for p in parts]


def _status(answer: str) -> int:
    return int(re.match(r"HTTP/[\d.]+ (\d{3})", answer).group(1))


def _wait_for_a_fresh_minute() -> None:
    # rate-limiting counts per calendar minute: the block and the 6th request must share one
    if time.gmtime().tm_sec > 40:
        time.sleep(61 - time.gmtime().tm_sec)


def test_readme_first_proxy_runs_as_a_script(node_factory, tmp_path):
    lines = readme_block_for_test()
    assert not any("sleep" in line for line in lines)
    commands = _commands(lines)
    node = node_factory(workers="2")
    node.start()
    origin_port, pidfile = free_port(), tmp_path / "gunicorn.pid"
    script = _script(lines, node.admin_port, node.proxy_port, origin_port, pidfile)
    _wait_for_a_fresh_minute()
    try:
        run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env=clean_env(PIP_NO_INDEX="1"))
        assert run.returncode == 0, run.stderr
        answers = _answers(run.stdout)
        assert len(answers) == len(commands), run.stdout
        keyed = _check_answers(commands, answers)
        for _ in range(5 - keyed):  # up to the 5th request of the minute: still allowed
            assert httpx.get(node.proxy + "/httpbin/get", headers={"apikey": "secret"}).status_code == 200
        sixth = httpx.get(node.proxy + "/httpbin/get", headers={"apikey": "secret"})
        assert sixth.status_code == 429 and sixth.json() == {"message": "API rate limit exceeded"}
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def _check_answers(commands: list[tuple[str, str]], answers: list[str]) -> int:
    """Check each answer against the command's comment; returns how many keyed requests were made."""
    keyed = 0
    for (command, comment), answer in zip(commands, answers):
        if command.startswith("curl -s -X POST"):
            assert "id" in json.loads(answer), (command, answer)  # every write succeeded
        if "apikey: secret" in command:
            keyed += 1
        if comment == "proxied":
            assert json.loads(answer)["url"].endswith("/get"), answer  # httpbin's own answer
        elif comment.startswith("401"):
            assert _status(answer) == 401 and "No API key found in request" in answer, answer
        elif comment.startswith("200, with RateLimit-* headers"):
            assert _status(answer) == 200, answer
            head = answer.split("\r\n\r\n", 1)[0].lower()
            for name in ("ratelimit-limit: 5", "ratelimit-remaining: ", "ratelimit-reset: "):
                assert name in head, answer
        elif "_http_requests_total" in comment:
            family = re.search(r"\w+_http_requests_total", comment).group(0)
            assert re.search(rf'^{family}{{.*code="200".*}} \d', answer, re.M), answer
            assert re.search(r"^\w+_latency\w*_bucket\{", answer, re.M), answer
    return keyed
