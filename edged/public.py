"""How a package offers its public API: names listed once, each imported from its module on first use.

Every package's `__init__` maps its public names to the modules that define them (`EXPORTS`) and gets its
`__getattr__` (PEP 562) from `lazy_exports`; for type checkers the same names are imported under
`TYPE_CHECKING`. Importing a package therefore loads nothing it does not need (Presidio and spaCy, onnxruntime,
llama.cpp, paho, cryptography load when a part that uses them is built), and code outside a package uses only
the names in its `__all__` (tests/test_architecture.py checks both).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """The `__getattr__` of `package`: `exports` maps each public name to its module, relative to the package."""

    def attribute(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return attribute
