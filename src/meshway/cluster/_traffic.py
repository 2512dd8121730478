"""Hybrid data planes' request counters, reported to their control plane (the dashboard's traffic
page on a control plane, issue 16: "from the nodes' own counters").

Rules:
- A data plane counts its requests in its workers (the prometheus plugin's
  `kong_http_requests_total` and `kong_request_latency_ms` histogram). Every `PERIOD` seconds it
  sends those series to the control plane when they changed since its last report, and once a
  minute anyway (a restarted control plane gets them back), as an optional `traffic` field of a
  `ping`: an older control plane ignores the field and takes the message as a heartbeat, so no
  version has to know the other's (Kong Enterprise ships Vitals over its own telemetry socket;
  we have one socket, and the data plane always dials, so the control plane could not scrape it).
- The field is the Prometheus text, zlib-compressed and base64-encoded (a control message is at
  most 64 KiB; the text compresses about tenfold). A report that would not fit is not sent (one
  log line): the data plane's own `/metrics` (status_listen) still has it.
- The control plane keeps the latest report of each data plane with its record (purged with it),
  inflates it only when asked (`GET /clustering/metrics`, at most `MAX_TEXT` bytes each) and
  gives each sample its data plane's `node_id` label, so that a reader can tell a counter that
  restarted from zero (a data plane restarted) from one that went down.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import zlib
from typing import Awaitable, Callable

log = logging.getLogger("meshway.cluster")
PERIOD = 5.0
RESEND_EVERY = 12  # periods: unchanged series are sent again once a minute
MAX_TEXT = 4 * 1024 * 1024  # inflated; bounds what one report may cost the control plane
FAMILIES = ("kong_http_requests_total{", "kong_request_latency_ms_bucket{")


def request_series(text: str) -> str:
    """The lines of the data plane's /metrics text the traffic page reads."""
    keep = [line for line in text.splitlines() if line.startswith(FAMILIES)]
    return "\n".join(keep) + "\n" if keep else ""


def pack(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 6)).decode("ascii")


def unpack(packed: str) -> str | None:
    """The report's text, or None when it is not one (not base64/zlib, or over MAX_TEXT inflated)."""
    try:
        inflater = zlib.decompressobj()
        out = inflater.decompress(base64.b64decode(packed, validate=True), MAX_TEXT)
    except (binascii.Error, ValueError, zlib.error):
        return None
    if inflater.unconsumed_tail or not inflater.eof:
        return None
    return out.decode("utf-8", "replace")


def render(reports: list[tuple[str, str]]) -> str:
    """Prometheus text of every (node id, packed report): samples labelled with their `node_id`."""
    out: list[str] = []
    read = 0
    for node_id, packed in reports:
        text = unpack(packed)
        if text is None:
            log.warning("data plane %s: its traffic report is not readable; left out", node_id)
            continue
        read += 1
        label = 'node_id="' + node_id.replace("\\", "\\\\").replace('"', '\\"') + '",'
        out += [line.replace("{", "{" + label, 1) for line in text.splitlines() if line.startswith(FAMILIES)]
    out += ["# HELP meshway_cluster_dataplanes_reporting data planes whose request counters are listed here",
            "# TYPE meshway_cluster_dataplanes_reporting gauge", f"meshway_cluster_dataplanes_reporting {read}"]
    return "\n".join(out) + "\n"


async def report(send: Callable[[str], Awaitable[None]], series: Callable[[], Awaitable[str]],
                 config_hash: Callable[[], str]) -> None:
    """A data plane's loop for one session: a `ping` with `traffic` each PERIOD the series changed
    (or RESEND_EVERY periods), until the session ends (the caller cancels it)."""
    from ._protocol import MAX_CONTROL_MESSAGE, encode_message

    sent, quiet, told = "", 0, False
    while True:
        await asyncio.sleep(PERIOD)
        try:
            text = request_series(await series())
        except Exception as e:  # a worker being replaced: try again next period
            log.debug("traffic report: %s", e)
            continue
        quiet += 1
        if not text or (text == sent and quiet < RESEND_EVERY):
            continue
        message = encode_message("ping", config_hash=config_hash(), traffic=pack(text))
        if len(message) > MAX_CONTROL_MESSAGE:
            if not told:
                told = True
                log.warning("request counters: %d bytes compressed, over the %d a control message may hold: not sent "
                            "to the control plane (this node's status_listen /metrics has them)", len(message),
                            MAX_CONTROL_MESSAGE)
            continue
        try:
            await send(message)
        except Exception:  # the session ended (closed, reset): the next one starts its own loop
            return
        sent, quiet = text, 0
