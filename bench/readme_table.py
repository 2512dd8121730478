"""The README's performance table from a run's JSON, so that the table is the run's figures.

    .venv/bin/python bench/readme_table.py [bench/results/latest.json]

One row per scenario: meshway's figure, the reference's, their ratio (and the ratio of CPU time
per request, which holds better than req/s on a shared VM), the CPU time per request (per MB for
streams) of both, and the target's PASS/MISS as `bench/run.sh` judged it (today's targets, applied to the run's figures).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from meshbench import report  # noqa: E402

# (label, scenario, meshway target, reference target, reference label, target prefix)
ROWS = [
    ("HTTP/1.1 keep-alive, full default path (route, X-Forwarded-*, Via, latency headers, access log)",
     "http1", "meshway", "nginx", "nginx", "HTTP/1.1 keep-alive full default path >= 0.75"),
    ("same", "http1", "meshway", "haproxy", "HAProxy", "HTTP/1.1 keep-alive full default path >= 0.90"),
    ("10,000 routes (host + path)", "routes10k", "meshway-10k-routes", "meshway-1-route", "1 route", "10,000 routes"),
    ("key-auth + rate-limiting (local) + prometheus", "plugins", "meshway", "nginx", "nginx", "key-auth"),
    ("HTTPS termination", "https", "meshway", "nginx", "nginx", "HTTPS"),
    ("HTTP/2 over TLS (h2load -c50)", "http2", "meshway", "nginx", "nginx", "HTTP/2"),
    ("1 MiB responses", "large", "meshway", "nginx", "nginx", "1 MiB"),
    ("1 GiB upload, streamed", "upload", "meshway", "nginx", "nginx", None),
    ("TCP passthrough, one 2 GiB stream", "tcp", "meshway", "haproxy", "HAProxy", "TCP passthrough"),
    ("TLS passthrough by SNI", "tls_passthrough", "meshway", "haproxy", "HAProxy", None),
]


def _n(v: float | None, fmt: str = ",.0f") -> str:
    return "" if v is None else format(v, fmt)


def _rate(f: dict) -> str:
    if f.get("rps") and not f.get("mb_per_s", 0) > 50:
        return f"{_n(f['rps'])} req/s"
    return f"{_n(f.get('mb_per_s'))} MB/s" if f.get("mb_per_s") else ""


def _cpu(f: dict) -> str:
    if f.get("cpu_us_per_req"):
        return f"{f['cpu_us_per_req']:.1f}"
    return f"{f['cpu_us_per_mb']:.0f}/MB" if f.get("cpu_us_per_mb") else ""


def _verdict(targets: list[dict], prefix: str | None) -> str:
    for t in targets if prefix else []:
        if t["target"].startswith(prefix):
            op = {">=": ">=", "<=": "<=", "<": "<"}[t["op"]]
            status = "PASS" if t["status"] == "PASS" else f"**{t['status']}**"
            return f"{op} {t['threshold']:g}: {status}"
    return "none"


def _ratio_cell(scn: dict, ref_key: str) -> str:
    ratios = scn.get("ratios", {})
    key = next((k for k in ratios if k.endswith(ref_key) and "by cpu" not in k), None)
    if key is None:
        return ""
    by_cpu = ratios.get(f"{key} by cpu")
    return f"{ratios[key]:.2f}" + (f" ({by_cpu:.2f})" if by_cpu is not None else "")


def rows(result: dict) -> list[list[str]]:
    out, sc = [], result["scenarios"]
    targets = report.judge(sc)  # today's targets, also for an older run's figures
    for label, name, mine, ref, ref_label, prefix in ROWS:
        scn = sc.get(name, {})
        m, r = scn.get("targets", {}).get(mine, {}), scn.get("targets", {}).get(ref, {})
        ref_key = {"routes10k": "10k/1-route", "tcp": "meshway/haproxy"}.get(name, f"meshway/{ref}")
        out.append([label, _rate(m), f"{ref_label} {_rate(r)}", _ratio_cell(scn, ref_key),
                    f"{_cpu(m)} / {_cpu(r)}" if _cpu(m) else "", _verdict(targets, prefix)])
    out += _node_rows(sc, targets)
    return out


def _node_rows(sc: dict, targets: list[dict]) -> list[list[str]]:
    t = lambda name, who: sc.get(name, {}).get("targets", {}).get(who, {})  # noqa: E731
    un_m, un_n = t("unloaded", "meshway"), t("unloaded", "nginx")
    rss_m, rss_n = t("rss", "meshway"), t("rss", "nginx")
    st_m, st_n = t("startup", "meshway"), t("startup", "nginx")
    bu_m, bu_n = t("burst", "meshway"), t("burst", "nginx")
    sw = t("config_swap", "meshway")
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else ""  # noqa: E731
    return [
        ["added latency unloaded (wrk -c1), p50 / p99", f"{_n(un_m.get('added_p50_ms'), '.3f')} / {_n(un_m.get('added_p99_ms'), '.3f')} ms",
         f"nginx {_n(un_n.get('added_p50_ms'), '.3f')} / {_n(un_n.get('added_p99_ms'), '.3f')} ms",
         "p99 " + ratio(un_m.get("added_p99_ms"), un_n.get("added_p99_ms")), f"{_cpu(un_m)} / {_cpu(un_n)}", _verdict(targets, "added p99")],
        ["idle worker RSS", f"{_n(rss_m.get('idle_worker_rss_mib'), '.1f')} MiB", f"nginx worker {_n(rss_n.get('idle_worker_rss_mib'), '.1f')} MiB",
         "", "", _verdict(targets, "idle worker RSS")],
        ["start-up, `meshway start` to first proxied request", f"{_n(st_m.get('first_request_s'), '.2f')} s",
         f"nginx {_n(st_n.get('first_request_s'), '.2f')} s", "", "", _verdict(targets, "first proxied request")],
        ["1,000 new connections at once to a fresh proxy, p99 first answer", f"{_n(bu_m.get('fresh_first_p99_ms'))} ms",
         f"nginx {_n(bu_n.get('fresh_first_p99_ms'))} ms", ratio(bu_m.get("fresh_first_p99_ms"), bu_n.get("fresh_first_p99_ms")),
         "", _verdict(targets, "1,000 new connections")],
        ["config swap of 10,000 routes under load", f"applied in {_n(sw.get('apply_s'), '.1f')} s, stall {_n(sw.get('stall_ms'), '.0f')} ms",
         "", "", "", _verdict(targets, "config swap")],
    ]


def markdown(result: dict) -> str:
    head = ["scenario", "meshway", "reference", "ratio (by CPU)", "CPU µs per request: meshway / reference", "target"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(result)]
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "latest.json"
    result = json.loads(path.read_text())
    m = result.get("machine", {})
    print(f"Run of {result.get('started_at', '?')}: {m.get('cores')}-vCPU {m.get('cpu_model')}, {m.get('os')}, "
          f"Python {m.get('python')}, meshway {m.get('meshway_git')}, load at start {m.get('loadavg_at_start')}")
    print(markdown(result))


if __name__ == "__main__":
    main()
