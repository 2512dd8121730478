"""Transparent proxy: the host's iptables rules that send an app's traffic through its data plane.

`meshway install|uninstall transparent-proxy` with Kuma's flags, defaults, chain names and rules;
see `_rules` for the rules and `_saved` for how uninstall finds exactly what install added.
"""
from ._config import Settings, TproxyError, default_values, load_sources, merge, set_path, validate
from ._rules import CHAIN_PREFIX, COMMENT_PREFIX, CUSTOM_CHAINS, Family, render
from ._setup import ABOUT_TO_APPLY, INSTALLED, UNINSTALLED, install, uninstall

__all__ = [
    "ABOUT_TO_APPLY", "CHAIN_PREFIX", "COMMENT_PREFIX", "CUSTOM_CHAINS", "Family", "INSTALLED", "Settings",
    "TproxyError", "UNINSTALLED", "default_values", "install", "load_sources", "merge", "render", "set_path",
    "uninstall", "validate",
]
