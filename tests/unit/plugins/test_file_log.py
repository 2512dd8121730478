"""file-log: one JSON line per request in a real file, reopen, and errors that do not raise."""
from __future__ import annotations

import json

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test, run_phase_for_test
from pydantic import ValidationError

from meshway.plugins.bundled.file_log import PLUGIN as FileLog


def logged(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writes_one_json_line_per_request(tmp_path):
    path = tmp_path / "access.log"
    p = make_plugin_for_test(FileLog, {"path": str(path)})
    for uri in ("/a", "/b"):
        ctx = CtxForTest(path=uri)
        ctx.fields = {"request": {"uri": uri}, "response": {"status": 200}, "latencies": {"request": 1}}
        run_phase_for_test(p, "log", ctx)
    assert [e["request"]["uri"] for e in logged(path)] == ["/a", "/b"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_reopen_follows_a_rotated_file(tmp_path):
    path = tmp_path / "access.log"
    p = make_plugin_for_test(FileLog, {"path": str(path), "reopen": True})
    run_phase_for_test(p, "log", CtxForTest(path="/1"))
    path.rename(tmp_path / "access.log.1")
    run_phase_for_test(p, "log", CtxForTest(path="/2"))
    assert [e["request"]["uri"] for e in logged(path)] == ["/2"]


def test_unwritable_path_does_not_raise(tmp_path, caplog):
    p = make_plugin_for_test(FileLog, {"path": str(tmp_path / "missing-dir" / "x.log")})
    run_phase_for_test(p, "log", CtxForTest())
    assert "cannot write" in caplog.text


def test_invalid_path():
    with pytest.raises(ValidationError):
        FileLog.Config.model_validate({"path": "/tmp/a;rm -rf"})
