"""Module attributes loaded on first use (PEP 562), for packages whose heavy parts most
processes never touch: a proxy worker without mesh or streams, the CLI process of `meshway start`.

    __getattr__ = lazy_attributes(__name__, globals(), {"Name": ".module", ...})

The first lookup of `Name` imports `module` (relative to the package), stores the value in the
package's globals (later lookups skip the hook) and returns it.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, namespace: dict[str, Any], table: Mapping[str, str]) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
