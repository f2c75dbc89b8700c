"""A module imported on first attribute access, so a process pays for a heavy library only when it uses it.

    if TYPE_CHECKING:
        import wasmtime
    else:
        wasmtime = lazy_module("wasmtime")

An idle agent that never runs a WebAssembly task then never loads wasmtime (about 6 MB of RSS).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name``; the first attribute read imports it (an ImportError surfaces there)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (imported)' if self._module is not None else ''}>"


def lazy_module(name: str) -> Any:
    return LazyModule(name)
