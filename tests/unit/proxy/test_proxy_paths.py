"""Kong's path_handling v0/v1 joining, and the upstream target built from a match."""
from __future__ import annotations

import pytest

from meshway.proxy import upstream_path

# (service path, route path, request path, strip_path, v0 result, v1 result), from Kong's table.
TABLE = [
    ("/s", "/fv0", "/fv0req", False, "/s/fv0req", "/sfv0req"),
    ("/s", "/fv0", "/fv0req", True, "/s/req", "/sreq"),
    ("/s", "/fv0", "/fv0/req", True, "/s/req", "/s/req"),
    ("/s", "/fv0/", "/fv0/req", True, "/s/req", "/sreq"),
    ("/s", "/fv0", "/fv0", True, "/s", "/s"),
    ("/s", "/fv0", "/fv0/", True, "/s/", "/s/"),
    ("/s/", "/fv0", "/fv0", True, "/s", "/s/"),
    ("/s/", "/fv0", "/fv0/", True, "/s/", "/s/"),
    ("/s/", "/fv0", "/fv0req", True, "/s/req", "/s/req"),
    ("/s/", "/fv0", "/fv0/req", False, "/s/fv0/req", "/s/fv0/req"),
    ("/", "/fv0", "/fv0/req", True, "/req", "/req"),
    ("/", "/fv0", "/fv0", True, "/", "/"),
    (None, "/x", "/x/y", False, "/x/y", "/x/y"),
]


@pytest.mark.parametrize("base,route,req,strip,v0,v1", TABLE)
def test_kong_path_handling(base, route, req, strip, v0, v1):
    postfix = req[len(route):] if strip else req
    assert upstream_path(base, req, postfix, strip, "v0") == v0
    assert upstream_path(base, req, postfix, strip, "v1") == v1
