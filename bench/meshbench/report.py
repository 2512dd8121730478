"""The issue's targets (PASS/MISS), the stdout table and the JSON files."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent.parent / "results"
FOREIGN_WARN_PCT = 10.0
MB = 1e6  # the issue says "30 MB": decimal megabytes, the stricter reading


def _ratio(scn: str, key: str) -> Callable[[dict], float | None]:
    get = lambda s: s.get(scn, {}).get("ratios", {}).get(key)  # noqa: E731
    get.by_cpu = lambda s: s.get(scn, {}).get("ratios", {}).get(f"{key} by cpu")  # type: ignore[attr-defined]
    return get


def _fig(scn: str, target: str, key: str, scale: float = 1.0) -> Callable[[dict], float | None]:
    def get(s: dict) -> float | None:
        v = s.get(scn, {}).get("targets", {}).get(target, {}).get(key)
        return None if v is None else round(v * scale, 3)
    return get


def _added_p99(s: dict) -> float | None:
    t = s.get("unloaded", {}).get("targets", {})
    m, n = t.get("meshway", {}).get("added_p99_ms"), t.get("nginx", {}).get("added_p99_ms")
    if m is None or n is None or n <= 0:
        return None
    return round(m / n, 3)


def _burst_p99(s: dict) -> float | None:
    t = s.get("burst", {}).get("targets", {})
    m, n = t.get("meshway", {}).get("fresh_first_p99_ms"), t.get("nginx", {}).get("fresh_first_p99_ms")
    return round(m / n, 3) if m and n else None


# (description, scenario, value getter, comparison, threshold): issue 17's targets, then the two
# of issue 6 that issue 17 does not restate (TCP passthrough, config swap)
TARGETS = [
    ("HTTP/1.1 keep-alive full default path >= 0.75 of nginx", "http1", _ratio("http1", "meshway/nginx"), ">=", 0.75),
    ("HTTP/1.1 keep-alive full default path >= 0.90 of HAProxy", "http1", _ratio("http1", "meshway/haproxy"), ">=", 0.90),
    ("key-auth + rate-limiting + prometheus >= 0.55 of nginx", "plugins", _ratio("plugins", "meshway/nginx"), ">=", 0.55),
    ("HTTPS >= 0.75 of nginx", "https", _ratio("https", "meshway/nginx"), ">=", 0.75),
    ("HTTP/2 >= 0.50 of nginx", "http2", _ratio("http2", "meshway/nginx"), ">=", 0.50),
    ("1 MiB responses >= 0.90 of nginx", "large", _ratio("large", "meshway/nginx"), ">=", 0.90),
    ("10,000 routes >= 0.95 of the 1-route meshway figure", "routes10k", _ratio("routes10k", "10k/1-route"), ">=", 0.95),
    ("idle worker RSS < 30 MB", "rss", _fig("rss", "meshway", "idle_worker_rss_mib", 2**20 / MB), "<", 30.0),
    ("added p99 unloaded <= nginx's added p99", "unloaded", _added_p99, "<=", 1.0),
    ("first proxied request within 0.3 s of `meshway start`", "startup", _fig("startup", "meshway", "first_request_s"), "<=", 0.3),
    ("1,000 new connections: p99 first answer <= 2x nginx's", "burst", _burst_p99, "<=", 2.0),
    ("TCP passthrough >= 1.0 of HAProxy default buffers", "tcp", _ratio("tcp", "meshway/haproxy"), ">=", 1.0),
    ("config swap (10,000 routes) stall < 50 ms", "config_swap", _fig("config_swap", "meshway", "stall_ms"), "<", 50.0),
]

_OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}


def judge(scenarios: dict) -> list[dict]:
    out = []
    for desc, scn, get, op, threshold in TARGETS:
        value = get(scenarios)
        status = "n/a" if value is None else ("PASS" if _OPS[op](value, threshold) else "MISS")
        row = {"target": desc, "value": value, "op": op, "threshold": threshold, "status": status,
               "noisy": foreign_load(scenarios.get(scn, {})) > FOREIGN_WARN_PCT}
        if hasattr(get, "by_cpu"):
            row["by_cpu"] = get.by_cpu(scenarios)  # context only: PASS/MISS is on req/s as the issue says
        out.append(row)
    return out


def foreign_load(scn: dict) -> float:
    """The largest share of the proxy core other processes took during any run of a scenario."""
    vals = [f.get("proxy_core_foreign_pct") or 0 for f in scn.get("targets", {}).values()]
    return max(vals, default=0)


_SKIP = {"runs", "rps_all", "requests", "rps", "mb_per_s", "p50_ms", "p99_ms", "cpu_us_per_req",
         "cpu_us_per_mb", "p90_ms", "mean_ms", "min_ms", "bytes", "cpu0_busy_pct", "cpu1_busy_pct",
         "cpu0_steal_pct", "cpu1_steal_pct", "proxy_core_foreign_pct", "socket_errors", "non_2xx", "failed", "errored"}


def _cells(fig: dict) -> list[str]:
    if "error" in fig:
        return ["ERROR", "", "", "", "error: " + fig["error"].replace("\n", " ")[:300]]
    rate = f"{fig['rps']:,.0f} req/s" if fig.get("rps") else (f"{fig['mb_per_s']:,.0f} MB/s" if fig.get("mb_per_s") else "")
    if fig.get("rps") and fig.get("mb_per_s") and fig["mb_per_s"] > 50:
        rate += f" {fig['mb_per_s']:,.0f} MB/s"
    p50 = _num(fig.get("p50_ms"))
    p99 = _num(fig.get("p99_ms")) if "p99_ms" in fig else (f"mean {_num(fig.get('mean_ms'))}" if "mean_ms" in fig else "")
    cpu = f"{fig['cpu_us_per_req']:.1f}/req" if fig.get("cpu_us_per_req") else (
        f"{fig['cpu_us_per_mb']:.0f}/MB" if fig.get("cpu_us_per_mb") else "")
    other = " ".join(f"{k}={_num(v)}" for k, v in fig.items() if k not in _SKIP and v is not None)
    return [rate, p50, p99, cpu, other]


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def table(result: dict) -> str:
    """The human view: one row per scenario x target, ratios and targets underneath."""
    head = ["scenario", "target", "rate", "p50 ms", "p99 ms", "CPU us", "other"]
    rows = []
    for name, scn in result["scenarios"].items():
        if "error" in scn:
            rows.append([name, "-", "ERROR", "", "", "", "error: " + scn["error"][:300]])
            continue
        for tname, fig in scn["targets"].items():
            rows.append([name, tname, *_cells(fig)])
        ratios = ", ".join(f"{k} {v}" for k, v in scn.get("ratios", {}).items() if v is not None)
        if ratios:
            rows.append(["", "ratios", "", "", "", "", ratios])
        foreign = foreign_load(scn)
        if foreign > FOREIGN_WARN_PCT:
            rows.append(["", "warning", "", "", "", "", f"other processes used up to {foreign:.0f}% "
                         f"of the proxy core (core 1) during this scenario: figures are noisy"])
    widths = [max(len(str(r[i])) for r in [head, *rows]) if i < 6 else 0 for i in range(7)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "-" * min(140, max(len(x) for x in lines)))
    lines += ["", "Targets:"]
    for t in result["targets"]:
        cpu = f"; by CPU/req {t['by_cpu']}" if t.get("by_cpu") is not None else ""
        noisy = "  [noisy: core 1 shared]" if t.get("noisy") else ""
        lines.append(f"  {t['status']:4}  {t['target']}  (value {t['value']}, needs {t['op']} {t['threshold']}{cpu}){noisy}")
    return "\n".join(lines)


def write_json(result: dict) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2, sort_keys=False, default=str)
    latest, copy = RESULTS / "latest.json", RESULTS / f"bench-{stamp}.json"
    latest.write_text(text)
    copy.write_text(text)
    return latest, copy
