"""edgerm.frameworks: write a framework by subclassing ``Framework`` and
start it with ``run`` (see README.md in this package).

``HttpDriver``, ``run`` and ``run_sync`` are imported on first use: a
framework class and its tests (with ``RecordingDriver``) load no aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgerm.frameworks.base import Framework
from edgerm.frameworks.driver import FrameworkDriver, RecordingDriver, Stopped
from edgerm.frameworks.tasks import docker_task, fits, load_module, supports, wasm_task

if TYPE_CHECKING:
    from edgerm.frameworks.http_driver import HttpDriver
    from edgerm.frameworks.run import run, run_sync

_LAZY = {
    "HttpDriver": "edgerm.frameworks.http_driver",
    "run": "edgerm.frameworks.run",
    "run_sync": "edgerm.frameworks.run",
}

__all__ = [
    "Framework",
    "FrameworkDriver",
    "HttpDriver",
    "RecordingDriver",
    "Stopped",
    "docker_task",
    "fits",
    "load_module",
    "run",
    "run_sync",
    "supports",
    "wasm_task",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
