"""syslog: Kong's defaults, bad values refused on their field, and the datagrams it writes to a
real unix datagram socket (PRI from facility and status class, the log_level threshold)."""
from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from ctx_for_test import CtxForTest, make_plugin_for_test

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled import syslog


def test_defaults_are_kongs():
    config = validate_plugin_config("syslog", {})
    assert config == {"log_level": "info", "successful_severity": "info", "client_errors_severity": "info",
                      "server_errors_severity": "info", "facility": "user", "custom_fields_by_lua": None}


@pytest.mark.parametrize("config, field", [({"log_level": "loud"}, "log_level"), ({"facility": "local9"}, "facility"),
                                           ({"server_errors_severity": 3}, "server_errors_severity")])
def test_bad_config_names_the_field(config, field):
    with pytest.raises(PluginConfigError) as e:
        validate_plugin_config("syslog", config)
    assert field in str(e.value.fields)


def test_datagrams_carry_priority_tag_and_json(tmp_path, monkeypatch):
    path = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(5)
    monkeypatch.setattr(syslog, "SYSLOG_SOCKET", path)
    monkeypatch.setattr(syslog, "_QUEUE", [])
    plugin = make_plugin_for_test(syslog.PLUGIN, {"log_level": "warning", "facility": "local3",
                                                  "client_errors_severity": "warning",
                                                  "server_errors_severity": "crit"})

    async def run():
        for status in (200, 404, 503):
            ctx = CtxForTest(path=f"/{status}")
            ctx.response_status = status
            ctx.fields = {"request": {"uri": f"/{status}"}, "response": {"status": status}}
            plugin.log(ctx)
        await plugin.queue.task

    asyncio.run(run())
    got = [receiver.recv(65536).decode() for _ in range(2)]
    # 200 is logged at info, below log_level warning: not sent. local3 = 19: 19*8+4, 19*8+2.
    pattern = re.compile(r"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d kong\[\d+\]: (\{.*\})$")
    parsed = [pattern.match(line).groups() for line in got]
    assert [(int(pri), json.loads(body)["request"]["uri"]) for pri, body in parsed] == [(156, "/404"), (154, "/503")]
