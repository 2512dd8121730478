"""Every command of docs/guides/*.md is run by a test: each ```sh block of a guide lies in a part
that a guide test reads and runs (a whole guide, or the part between its test's markers).

A new guide, or a new block outside its guide's tested part, fails here until a test runs it.
"""
import re
from pathlib import Path

from tests.integration.mesh import test_mesh_security_guide
from tests.netns import test_transparent_proxy_guide, test_transparent_proxying_guide

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "guides"
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
WHOLE = re.compile(r"(.*)", re.S)
TESTED_PARTS = {  # guide -> the parts its tests run
    "hybrid-mode.md": (WHOLE,),  # tests/netns/test_hybrid_guide.py
    "service-mesh.md": (WHOLE,),  # tests/netns/test_service_mesh_guide.py
    "dashboard.md": (WHOLE,),  # tests/ui/test_dashboard_guide.py
    "kubernetes.md": (WHOLE,),  # tests/k8s/test_kubernetes_guide_kmock_emulated_apiserver.py (both parts)
    "multi-zone.md": (WHOLE,),  # tests/netns/test_multi_zone_guide.py (every step, on its host)
    "mesh-security.md": (test_mesh_security_guide.PART,),
    "mesh-high-availability.md": (WHOLE,),  # tests/netns/test_mesh_ha_guide.py (every block, in a namespace)
    "transparent-proxy.md": (test_transparent_proxy_guide.PART, test_transparent_proxying_guide.PART),
    "multi-zone.md": (WHOLE,),  # tests/netns/test_multi_zone_guide.py (every block, on its hosts)
}


def test_every_sh_block_of_every_guide_is_in_a_tested_part():
    assert sorted(p.name for p in GUIDES.glob("*.md")) == sorted(TESTED_PARTS), "a guide no test runs"
    for name, parts in TESTED_PARTS.items():
        text = (GUIDES / name).read_text()
        tested = [block for part in parts for block in BLOCK.findall(part.search(text).group(1))]
        untested = [block for block in BLOCK.findall(text) if block not in tested]
        assert not untested, f"{name}: blocks no test runs: {untested}"
