"""Rates and percentiles of the traffic page, from two samples of the node's counters."""
from meshway.ui._traffic import TrafficHistory, parse_metrics, quantile

TEXT = """\
# TYPE kong_http_requests_total counter
kong_http_requests_total{service="s",route="r",code="200",source="service",workspace="default",consumer=""} {ok}
kong_http_requests_total{service="s",route="r",code="503",source="kong",workspace="default",consumer=""} {bad}
kong_request_latency_ms_bucket{service="s",route="r",workspace="default",le="10.0"} {fast}
kong_request_latency_ms_bucket{service="s",route="r",workspace="default",le="100.0"} {all}
kong_request_latency_ms_bucket{service="s",route="r",workspace="default",le="+Inf"} {all}
kong_upstream_latency_ms_bucket{service="s",route="r",workspace="default",le="+Inf"} 999
"""


def _text(ok, bad, fast):
    return TEXT.replace("{ok}", str(ok)).replace("{bad}", str(bad)).replace("{fast}", str(fast)).replace(
        "{all}", str(ok + bad))


def test_rates_classes_and_percentiles_are_differences_of_two_samples():
    history = TrafficHistory()
    history.add(100.0, parse_metrics(_text(ok=10, bad=0, fast=10)))
    history.add(110.0, parse_metrics(_text(ok=100, bad=10, fast=55)))  # +90 ok, +10 bad; 45 of 100 under 10 ms
    (row,), span = history.rows(60)
    assert span == 10.0
    assert (row["service"], row["route"], row["total"], row["rate"]) == ("s", "r", 100, 10.0)
    assert row["classes"] == {"2xx": 90, "3xx": 0, "4xx": 0, "5xx": 10} and row["errors"] == 10.0
    assert row["latency"][0.5] == 10 + 90 * (50 - 45) / 55  # linear in the (10, 100] bucket, as Prometheus
    assert row["latency"][0.99] == 10 + 90 * (99 - 45) / 55


def test_quantile_edges():
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {float("inf"): 0}) is None
    assert quantile(0.99, {1.0: 0, 5.0: 0, float("inf"): 4}) == 5.0  # all above the last bound: that bound
    assert quantile(0.5, {1.0: 4, float("inf"): 4}) == 0.5


def test_a_window_uses_the_oldest_sample_inside_it_and_old_samples_are_dropped():
    history = TrafficHistory()
    for t, n in ((0, 0), (400, 100), (590, 190), (650, 250)):
        history.add(float(t), parse_metrics(_text(ok=n, bad=0, fast=n)))
    assert history.samples[0][0] == 400  # older than 10 minutes before the newest: gone
    (row,), span = history.rows(60)
    assert (span, row["total"], row["rate"]) == (60.0, 60, 1.0)
    assert history.rows(300)[1] == 250.0  # only as far back as samples go


def test_data_planes_are_summed_and_one_that_restarted_counts_from_zero():
    def two(ok_a, ok_b):
        return "".join(_text(ok=ok, bad=0, fast=ok).replace("{service=", f'{{node_id="{n}",service=')
                       for n, ok in (("a", ok_a), ("b", ok_b)))

    history = TrafficHistory()
    history.add(0.0, parse_metrics(two(100, 50)))
    history.add(10.0, parse_metrics(two(130, 5)))  # a: +30; b restarted: 5 since
    (row,), _ = history.rows(60)
    assert (row["total"], row["classes"]["2xx"], row["ever"], row["rate"]) == (35, 35, 135, 3.5)
