"""statsd: Kong's defaults, bad values refused on their field, Kong's four tag syntaxes, and the
TCP mode (newline-separated metrics to a real TCP server)."""
from __future__ import annotations

import asyncio

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled import _statsd
from meshway.plugins.bundled.statsd import PLUGIN as Statsd


def test_defaults_are_kongs():
    config = validate_plugin_config("statsd", {})
    assert (config["host"], config["port"], config["prefix"], config["udp_packet_size"]) == ("localhost", 8125, "kong", 0)
    assert [m["name"] for m in config["metrics"]][:4] == ["request_count", "latency", "request_size", "status_count"]
    assert len(config["metrics"]) == 13
    assert (config["consumer_identifier_default"], config["service_identifier_default"]) == ("custom_id", "service_name_or_host")


@pytest.mark.parametrize("config, field", [
    ({"port": 70000}, "port"), ({"host": "a b"}, "host"), ({"allow_status_codes": ["200"]}, "allow_status_codes"),
    ({"metrics": [{"name": "request_count", "stat_type": "gauge"}]}, "metrics"),
    ({"metrics": [{"name": "latency", "stat_type": "timer", "sample_rate": 0}]}, "metrics"),
    ({"udp_packet_size": 70000}, "udp_packet_size"), ({"tag_style": "x"}, "tag_style"),
    ({"consumer_identifier_default": "email"}, "consumer_identifier_default")])
def test_bad_config_names_the_field(config, field):
    with pytest.raises(PluginConfigError) as e:
        validate_plugin_config("statsd", config)
    assert field in str(e.value.fields)


@pytest.mark.parametrize("style, line", [
    (None, "kong.latency:5|ms|@0.5"),
    ("dogstatsd", "kong.latency:5|ms|@0.5|#service:s,status:200"),
    ("influxdb", "kong.latency,service=s,status=200:5|ms|@0.5"),
    ("librato", "kong.latency#service=s,status=200:5|ms|@0.5"),
    ("signalfx", "kong.latency[service=s,status=200]:5|ms|@0.5")])
def test_tag_syntaxes_are_kongs(style, line):
    assert _statsd.message("kong", "latency", 5, "ms", 0.5, {"service": "s", "status": 200}, style) == line


def test_tcp_mode_sends_newline_separated_metrics_to_a_real_server():
    async def run():
        got = asyncio.Queue()

        async def serve(reader, writer):
            while line := await reader.readline():
                await got.put(line.decode().rstrip("\n"))

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        plugin = make_plugin_for_test(Statsd, {"host": "127.0.0.1", "port": port, "use_tcp": True, "metrics": [
            {"name": "request_count", "stat_type": "counter", "sample_rate": 1},
            {"name": "status_count", "stat_type": "counter", "sample_rate": 1}]})
        ctx = CtxForTest(path="/")
        ctx.response_status, ctx.service = 201, {"name": "svc", "host": "h"}
        plugin.log(ctx)
        lines = [await asyncio.wait_for(got.get(), 5) for _ in range(2)]
        server.close()
        return lines

    assert asyncio.run(run()) == ["kong.service.svc.request.count:1|c", "kong.service.svc.status.201:1|c"]
