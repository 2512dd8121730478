"""bot-detection config: Kong's defaults, a bad regex refused on its field, and the rule order."""
from __future__ import annotations

import pytest
from ctx_for_test import make_plugin_for_test

from meshway.plugins import PluginConfigError, validate_plugin_config
from meshway.plugins.bundled.bot_detection import ALLOW, DENY, PASS, PLUGIN as BotDetection


def test_defaults_are_kongs():
    assert validate_plugin_config("bot-detection", {}) == {"allow": [], "deny": []}


@pytest.mark.parametrize("field", ["allow", "deny"])
def test_bad_regex_names_the_field(field):
    with pytest.raises(PluginConfigError) as e:
        validate_plugin_config("bot-detection", {field: ["ok", "[a-"]})
    assert field in e.value.fields["config"]


def test_allow_then_deny_then_the_built_in_rules():
    plugin = make_plugin_for_test(BotDetection, {"allow": ["bingbot"], "deny": ["^curl/"]})
    assert plugin.examine("bingbot/2.0") == ALLOW
    assert plugin.examine("curl/8.5.0") == DENY
    assert plugin.examine("Mozilla/5.0 (compatible; YandexBot/3.0)") == DENY
    assert plugin.examine("Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0") == PASS
