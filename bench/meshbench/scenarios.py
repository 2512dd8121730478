"""The scenario registry, in run order; `--only` names come from here."""
from __future__ import annotations

from . import scenarios_http as h
from . import scenarios_mesh as m
from . import scenarios_node as n
from . import scenarios_stream as s
from . import scenarios_zones as z

SCENARIOS = {
    "http1": h.http1,
    "routes10k": h.routes10k,
    "plugins": h.plugins,
    "https": h.https,
    "http2": h.http2,
    "large": h.large,
    "upload": h.upload,
    "unloaded": h.unloaded,
    "tcp": s.tcp,
    "tls_passthrough": s.tls_passthrough,
    "rss": n.rss,
    "startup": n.startup,
    "burst": n.burst,
    "config_swap": n.config_swap,
    "mesh": m.mesh,
    "zones": z.zones,
}
