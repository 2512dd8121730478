"""A hybrid data plane's request counters on their way to the control plane: packed into a ping
that any control plane accepts, kept with its record, and rendered per data plane."""
import asyncio
import base64
import json
import zlib

from meshway.cluster import _traffic
from meshway.cluster._protocol import decode_message
from meshway.cluster._registry import DataPlaneRecord, Registry

METRICS = """\
# HELP kong_http_requests_total HTTP status codes
# TYPE kong_http_requests_total counter
kong_http_requests_total{service="s",route="r",code="200",source="service",workspace="default",consumer=""} 7
kong_request_latency_ms_bucket{service="s",route="r",workspace="default",le="+Inf"} 7
kong_upstream_latency_ms_bucket{service="s",route="r",workspace="default",le="+Inf"} 7
kong_nginx_connections_total{node_id="x",subsystem="http",state="active"} 3
"""


def _record(node_id: str) -> DataPlaneRecord:
    return DataPlaneRecord(id=node_id, ip="127.0.0.1", hostname="h", version="0.1.0", labels={}, config_hash="0" * 32,
                           cert_expiry=None)


def test_only_the_request_series_travel_and_come_back_labelled_with_their_data_plane():
    text = _traffic.request_series(METRICS)
    assert text.splitlines() == METRICS.splitlines()[2:4]
    registry = Registry()
    registry.hello(_record("dp-1"))
    registry.seen("dp-1", "1" * 32, _traffic.pack(text))
    registry.hello(_record("dp-1"))  # reconnected: its last report stays until the next one
    rendered = _traffic.render(registry.traffic()).splitlines()
    assert rendered[0] == ('kong_http_requests_total{node_id="dp-1",service="s",route="r",code="200",source="service",'
                           'workspace="default",consumer=""} 7')
    assert rendered[1].startswith('kong_request_latency_ms_bucket{node_id="dp-1",service="s"')
    assert rendered[-1] == "meshway_cluster_dataplanes_reporting 1"


def test_a_report_that_is_not_one_or_inflates_too_far_is_left_out():
    bomb = base64.b64encode(zlib.compress(b"k" * (_traffic.MAX_TEXT + 1))).decode()
    assert _traffic.unpack(bomb) is None
    assert _traffic.unpack("not base64!") is None
    assert _traffic.unpack(base64.b64encode(b"not zlib").decode()) is None
    out = _traffic.render([("bad", "not base64!"), ("good", _traffic.pack("kong_http_requests_total{a=\"b\"} 1\n"))])
    assert out.splitlines()[0] == 'kong_http_requests_total{node_id="good",a="b"} 1'
    assert out.splitlines()[-1] == "meshway_cluster_dataplanes_reporting 1"


def test_the_report_is_a_ping_sent_when_the_counters_change(monkeypatch):
    monkeypatch.setattr(_traffic, "PERIOD", 0)
    texts = iter([METRICS, METRICS, METRICS.replace("} 7", "} 9", 1), ""])
    sent: list[str] = []

    async def send(message: str) -> None:
        sent.append(message)
        if len(sent) == 2:
            raise ConnectionError("closed")  # the session ended: the loop stops

    async def series() -> str:
        return next(texts)

    asyncio.run(_traffic.report(send, series, lambda: "a" * 32))
    first, second = (decode_message(m) for m in sent)  # messages every control plane accepts: a ping
    assert first["type"] == "ping" and first["config_hash"] == "a" * 32
    assert "} 7" in _traffic.unpack(first["traffic"]) and "} 9" in _traffic.unpack(second["traffic"])
    assert set(json.loads(sent[0])) == {"type", "config_hash", "traffic"}
