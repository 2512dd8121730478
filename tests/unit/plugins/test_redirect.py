"""redirect config: Kong's defaults and bad values refused on their field."""
from __future__ import annotations

import pytest

from meshway.plugins import PluginConfigError, validate_plugin_config


def test_defaults_are_kongs():
    assert validate_plugin_config("redirect", {"location": "https://example.test"}) == {
        "status_code": 301, "location": "https://example.test", "keep_incoming_path": False}


@pytest.mark.parametrize("config, field", [({}, "location"), ({"location": "/relative"}, "location"),
                                           ({"location": "https://x.test", "status_code": 600}, "status_code"),
                                           ({"location": "https://x.test", "keep_incoming_path": "sure"},
                                            "keep_incoming_path")])
def test_bad_config_names_the_field(config, field):
    with pytest.raises(PluginConfigError) as e:
        validate_plugin_config("redirect", config)
    assert field in e.value.fields["config"]
