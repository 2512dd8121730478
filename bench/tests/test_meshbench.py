"""Unit tests of the harness's pure parts: `.venv/bin/pytest bench/tests -q` (no load, no processes)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshbench import meshway as mw  # noqa: E402
from meshbench import report  # noqa: E402
from meshbench.load import LoadError, Target, _h2_ms, _wrk_figures, interleave, median_figures  # noqa: E402
from meshbench.procs import cpu_ticks, descendants, free_port  # noqa: E402


def test_h2load_units_to_ms():
    assert _h2_ms("250us") == 0.25
    assert _h2_ms("1.50ms") == 1.5
    assert _h2_ms("2s") == 2000
    assert _h2_ms("junk") != _h2_ms("junk")  # nan


def test_wrk_figures_from_lua_summary():
    raw = {"requests": 1000, "duration_us": 2_000_000, "bytes": 5000, "connect": 0, "read": 1, "write": 0,
           "status": 2, "timeout": 0, "p50": 900, "p90": 1500, "p99": 3000, "max": 9000, "mean": 1000.0}
    fig = _wrk_figures(raw)
    assert fig["rps"] == 500.0 and fig["p99_ms"] == 3.0 and fig["socket_errors"] == 1 and fig["non_2xx"] == 2


def test_median_is_per_figure():
    runs = [{"rps": 1.0, "p99_ms": 9.0}, {"rps": 3.0, "p99_ms": 1.0}, {"rps": 2.0, "p99_ms": 5.0}]
    med = median_figures(runs)
    assert med["rps"] == 2.0 and med["p99_ms"] == 5.0 and med["rps_all"] == [1.0, 3.0, 2.0]


def test_interleave_keeps_errors_per_target_and_alternates():
    order = []

    def run(t: Target) -> dict:
        order.append(t.name)
        if t.name == "bad":
            raise LoadError("boom")
        return {"rps": 10.0}

    res = interleave([Target("a"), Target("bad"), Target("b"), Target("gone", error="no binary")], 2, run)
    assert order == ["a", "bad", "b", "a", "b"]
    assert res["a"]["rps"] == 10.0 and "boom" in res["bad"]["error"] and res["gone"] == {"error": "no binary"}


def test_targets_pass_miss_and_na():
    scenarios = {"http1": {"ratios": {"meshway/nginx": 0.8, "meshway/haproxy": 0.5}, "targets": {}},
                 "unloaded": {"targets": {"meshway": {"added_p99_ms": 0.2}, "nginx": {"added_p99_ms": 0.1}}},
                 "rss": {"targets": {"meshway": {"idle_worker_rss_mib": 27.0}}},
                 "startup": {"targets": {"meshway": {"first_request_s": 0.35}}},
                 "burst": {"targets": {"meshway": {"fresh_first_p99_ms": 150.0}, "nginx": {"fresh_first_p99_ms": 80.0}}}}
    got = {t["target"]: t["status"] for t in report.judge(scenarios)}
    assert got["HTTP/1.1 keep-alive full default path >= 0.75 of nginx"] == "PASS"
    assert got["HTTP/1.1 keep-alive full default path >= 0.90 of HAProxy"] == "MISS"
    assert got["added p99 unloaded <= nginx's added p99"] == "MISS"
    assert got["idle worker RSS < 30 MB"] == "PASS"  # 27 MiB = 28.3 MB
    assert got["first proxied request within 0.3 s of `meshway start`"] == "MISS"
    assert got["1,000 new connections: p99 first answer <= 2x nginx's"] == "PASS"
    assert got["HTTPS >= 0.75 of nginx"] == "n/a"


def test_table_shows_errors_and_warnings():
    result = {"scenarios": {"http1": {"targets": {"meshway": {"error": "meshway start rc=1"},
                                                  "nginx": {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0,
                                                            "proxy_core_foreign_pct": 50.0}},
                                      "ratios": {}},
                            "tcp": {"error": "RuntimeError: x"}},
              "targets": report.judge({})}
    text = report.table(result)
    assert "error: meshway start rc=1" in text and "error: RuntimeError: x" in text and "warning" in text


def test_many_routes_each_has_host_and_path():
    svc = mw.many_routes(8080, 3)
    assert [r["hosts"][0] for r in svc["routes"]] == ["r0.bench.test", "r1.bench.test", "r2.bench.test"]
    assert svc["routes"][2]["paths"] == ["/r2"] and svc["url"] == "http://127.0.0.1:8080"


def test_proc_accounting_reads_ourselves():
    assert cpu_ticks([os.getpid()]) >= 0
    assert os.getpid() not in descendants([os.getpid()])
    assert 0 < free_port() < 65536


def test_mesh_added_latency_is_sidecars_minus_direct():
    from meshbench.scenarios_mesh import added

    res = {"direct": {"p50_ms": 0.1, "p99_ms": 1.0}, "two-sidecars": {"p50_ms": 0.6, "p99_ms": 3.5},
           "broken": {"error": "boom"}}
    added(res, "direct", "two-sidecars")
    added(res, "direct", "broken")
    assert res["two-sidecars"]["added_p50_ms"] == 0.5 and res["two-sidecars"]["added_p99_ms"] == 2.5
    assert res["broken"] == {"error": "boom"}


def test_readme_table_has_cpu_per_request_beside_the_reference_and_todays_verdict():
    import readme_table
    result = {"scenarios": {"http1": {"targets": {"meshway": {"rps": 40000.0, "cpu_us_per_req": 25.0},
                                                  "nginx": {"rps": 50000.0, "cpu_us_per_req": 20.0},
                                                  "haproxy": {"rps": 50000.0, "cpu_us_per_req": 20.0}},
                                      "ratios": {"meshway/nginx": 0.8, "meshway/nginx by cpu": 0.8,
                                                 "meshway/haproxy": 0.8, "meshway/haproxy by cpu": 0.8}}}}
    table = readme_table.markdown(result)
    first, second = table.splitlines()[2:4]
    assert "40,000 req/s" in first and "nginx 50,000 req/s" in first and "25.0 / 20.0" in first
    assert first.endswith(">= 0.75: PASS |") and second.endswith(">= 0.9: **MISS** |")


def test_profile_counts_shortens_callgrind_paths_and_keeps_the_top_functions():
    import profile_counts
    annotated = "\n".join([
        "--------", "Ir  file:function", "--------",
        "13,214,004 (38.87%)  /tmp/python-build.2026/Python-3.11.7/Python/ceval.c:_PyEval_EvalFrameDefault'2 [/x/libpython3.11.so]",
        " 1,504,000 ( 4.42%)  third_party/llhttp/src/llhttp.c:llhttp__internal__run [/x/_h1parse.so]",
        "   749,223 ( 2.20%)  /tmp/python-build.2026/Python-3.11.7/Objects/obmalloc.c:_PyObject_Free [/x/libpython3.11.so]"])
    top = profile_counts._top_functions(annotated, 2).splitlines()
    assert top[2] == "13,214,004 (38.87%)  cpython/Python/ceval.c:_PyEval_EvalFrameDefault'2"
    assert top[3].endswith("llhttp.c:llhttp__internal__run") and len(top) == 4
