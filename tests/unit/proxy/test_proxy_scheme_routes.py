"""An http and an https route on the same host (the service-mesh walkthrough): each scheme gets its own."""
from __future__ import annotations

import uuid

from meshway.proxy._pipeline import decide
from meshway.proxy._runtime import compile_runtime


def _snapshot(*protocol_sets):
    services, routes = [], []
    for protocols in protocol_sets:
        sid = str(uuid.uuid4())
        name = "-".join(protocols)
        services.append({"id": sid, "name": name, "protocol": "http", "host": "127.0.0.5", "port": 18000})
        routes.append({"id": str(uuid.uuid4()), "name": name, "protocols": list(protocols), "hosts": ["127.0.0.5"],
                       "service": {"id": sid}, "strip_path": True, "https_redirect_status_code": 426})
    return {"services": services, "routes": routes}


def test_each_scheme_takes_the_route_that_accepts_it_whatever_the_order():
    for order in ((["http"], ["https"]), (["https"], ["http"])):
        runtime = compile_runtime(_snapshot(*order))
        for scheme, port in (("http", 80), ("https", 443)):
            d = decide(runtime, "GET", "127.0.0.5", "/", "", scheme, port=port)
            assert not d.status and d.target.route["name"] == scheme


def test_an_https_only_route_still_answers_426_to_plain_http():
    runtime = compile_runtime(_snapshot(["https"]))
    assert decide(runtime, "GET", "127.0.0.5", "/", "", "http", port=80).status == 426
