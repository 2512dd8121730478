"""StatsD lines for one request, as Kong's statsd plugin names them.

Kong's metric names (prefix `kong` by default, scope `service.<name_or_host>` with dots as `_`):
`<prefix>.<scope>.request.count:1|c`, `.latency:<ms>|ms`, `.upstream_latency`, `.kong_latency`,
`.request.size`, `.response.size`, `.status.<code>`, `.user.uniques:<id>|s`,
`.user.<id>.request.count`, `.user.<id>.status.<code>`, `.workspace.<ws>.status.<code>`, and
`<prefix>.route.<route_id>.user.<id>.status.<code>`. With `tag_style`, the scope moves to tags
(service, route, node, status...) in dogstatsd, influxdb, librato or signalfx syntax, and the
per-user/per-status metrics are skipped, as in Kong.
"""
from __future__ import annotations

import socket
from typing import Any, Callable, Mapping

STAT_TYPES = {"gauge": "g", "counter": "c", "timer": "ms", "histogram": "h", "meter": "m", "set": "s"}
HOSTNAME = socket.gethostname().replace(".", "_")
# meshway has one workspace; Kong's is named `default` (its id is a uuid we do not have).
WORKSPACE = "default"

CONSUMER_IDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "consumer_id": lambda c: c.get("id"), "custom_id": lambda c: c.get("custom_id"),
    "username": lambda c: c.get("username")}
SERVICE_IDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "service_id": lambda s: s.get("id"), "service_name": lambda s: s.get("name"),
    "service_host": lambda s: s.get("host"),
    "service_name_or_host": lambda s: s.get("name") or s.get("host")}

# Metrics that are one value of the request: the stat's name and the value's source.
SIMPLE = {"request_count": "request.count", "latency": "latency", "upstream_latency": "upstream_latency",
          "kong_latency": "kong_latency", "request_size": "request.size", "response_size": "response.size"}


def message(prefix: str, stat: str, value: Any, kind: str, rate: float | None,
            tags: Mapping[str, Any] | None = None, style: str | None = None) -> str:
    """One StatsD line, Kong's create_statsd_message."""
    suffix = f"|@{rate:g}" if rate is not None and rate != 1 else ""
    if style is None or tags is None:
        return f"{prefix}.{stat}:{value}|{kind}{suffix}"
    if style == "dogstatsd":
        return f"{prefix}.{stat}:{value}|{kind}{suffix}|#" + ",".join(f"{k}:{v}" for k, v in tags.items())
    pairs = ",".join(f"{k}={v}" for k, v in tags.items())
    if style == "influxdb":
        return f"{prefix}.{stat},{pairs}:{value}|{kind}{suffix}"
    if style == "librato":
        return f"{prefix}.{stat}#{pairs}:{value}|{kind}{suffix}"
    return f"{prefix}.{stat}[{pairs}]:{value}|{kind}{suffix}"  # signalfx


def scope(service: Mapping[str, Any] | None, identifier: str) -> str:
    if service is None:
        return "global.unmatched"
    name = SERVICE_IDS[identifier](service)
    return "service." + (str(name).replace(".", "_") if name else "unnamed")


def simple_value(name: str, ctx: Any) -> Any:
    if name == "request_count":
        return 1
    if name == "request_size":
        return ctx.request_size
    if name == "response_size":
        return ctx.response_size
    return ctx.latencies.get({"latency": "request", "upstream_latency": "proxy", "kong_latency": "kong"}[name])


def tags_for(conf: Any, metric: Any, ctx: Any, status: int) -> dict[str, Any] | None:
    """Kong's get_tags: None (no stat at all) when the request has no service."""
    service_id = SERVICE_IDS[metric.service_identifier or conf.service_identifier_default](ctx.service) \
        if ctx.service else None
    if not service_id:
        return None
    tags: dict[str, Any] = {"service": service_id}
    if ctx.route:
        tags["route"] = ctx.route.get("name") or ctx.route.get("id")
    tags["workspace"] = WORKSPACE
    consumer = CONSUMER_IDS[metric.consumer_identifier or conf.consumer_identifier_default](ctx.consumer) \
        if ctx.consumer else None
    if consumer is not None:
        tags["consumer"] = consumer
    tags["node"] = HOSTNAME
    tags["status"] = status
    return tags


def lines(conf: Any, prefix: str, ctx: Any, status: int) -> list[str]:
    """Every StatsD line this request yields under `conf.metrics`."""
    out: list[str] = []
    style = conf.tag_style
    for metric in conf.metrics:
        kind, rate = STAT_TYPES[metric.stat_type], metric.sample_rate
        if metric.name in SIMPLE:
            value = simple_value(metric.name, ctx)
            if value is None or value == -1:
                continue
            if style:
                tags = tags_for(conf, metric, ctx, status)
                if tags is not None:
                    out.append(message(prefix, SIMPLE[metric.name], value, kind, rate, tags, style))
            else:
                name = scope(ctx.service, metric.service_identifier or conf.service_identifier_default)
                out.append(message(prefix, f"{name}.{SIMPLE[metric.name]}", value, kind, rate))
            continue
        if style:
            continue  # Kong skips the per-user/per-status metrics in tag mode
        per_request(out, conf, prefix, metric, kind, rate, ctx, status)
    return out


def per_request(out: list[str], conf: Any, prefix: str, metric: Any, kind: str, rate: float | None,
                ctx: Any, status: int) -> None:
    name = scope(ctx.service, metric.service_identifier or conf.service_identifier_default)
    consumer = CONSUMER_IDS[metric.consumer_identifier or conf.consumer_identifier_default](ctx.consumer) \
        if ctx.consumer else None
    if metric.name == "status_count":
        out.append(message(prefix, f"{name}.status.{status}", 1, kind, rate))
    elif metric.name == "status_count_per_workspace":
        out.append(message(prefix, f"{name}.workspace.{WORKSPACE}.status.{status}", 1, kind, rate))
    elif consumer is None:
        return  # the remaining metrics are per consumer
    elif metric.name == "unique_users":
        out.append(message(prefix, f"{name}.user.uniques", consumer, "s", None))
    elif metric.name == "request_per_user":
        out.append(message(prefix, f"{name}.user.{consumer}.request.count", 1, kind, rate))
    elif metric.name == "status_count_per_user":
        out.append(message(prefix, f"{name}.user.{consumer}.status.{status}", 1, kind, rate))
    elif metric.name == "status_count_per_user_per_route" and ctx.route and ctx.route.get("id"):
        out.append(message(prefix, f"route.{ctx.route['id']}.user.{consumer}.status.{status}", 1, kind, rate))
    # shdict_usage: Kong reports nginx shared dicts' free space, which meshway does not have.
