"""Lazy package exports (PEP 562): a name is imported from its module on first use.

Packages list ``{name: module}`` and set ``__getattr__ = lazy_getattr(__name__, EXPORTS,
globals())``, so ``import loopwright`` stays fast and loads only what is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing ``exports[name]`` on first use (then cached in
    ``namespace``, the package's globals)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


def lazy_dir(exports: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[], list[str]]:
    """A module ``__dir__`` listing the lazy names with the loaded ones."""

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __dir__
