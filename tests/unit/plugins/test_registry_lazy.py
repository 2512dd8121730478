"""The plugin registry lists bundled plugins without importing them; an idle worker stays light."""
import subprocess
import sys

from meshway import plugins


def test_bundled_module_names_match_plugin_names():
    registry = plugins.PluginRegistry()
    for name in registry._modules:
        assert registry[name].name == name


def test_lookup_and_membership():
    registry = plugins.available_plugins()
    assert "key-auth" in registry and "no-such-plugin" not in registry
    assert registry.get("no-such-plugin") is None
    assert registry["cors"].name == "cors"
    assert {"acl", "jwt", "prometheus"} <= set(registry)


def test_worker_import_and_empty_compile_skip_pydantic_and_cryptography():
    code = (
        "import sys, meshway.proxy.worker\n"
        "from meshway.proxy._runtime import compile_runtime\n"
        "from meshway.settings import load_settings\n"
        "compile_runtime({}, load_settings(None))\n"
        "print(sorted(m for m in ('pydantic', 'cryptography') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
