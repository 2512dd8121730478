"""The zone's name: Consul's `datacenter` setting (default `dc1`)."""
from __future__ import annotations

import pytest

from meshway.settings import SettingsError, load_settings


def test_default_is_consuls_dc1():
    assert load_settings(env={}).datacenter == "dc1"


def test_from_the_environment_lower_cased_as_consul():
    assert load_settings(env={"MESHWAY_DATACENTER": "OnPrem"}).datacenter == "onprem"


@pytest.mark.parametrize("value, fragment", [("", "datacenter: cannot be empty"),
                                             ("on prem", "datacenter: invalid value 'on prem'"),
                                             ("a" * 64, "datacenter: invalid value")])
def test_names_that_cannot_be_an_sni_label_are_refused(value, fragment):
    with pytest.raises(SettingsError) as e:
        load_settings(env={"MESHWAY_DATACENTER": value})
    assert fragment in str(e.value)
