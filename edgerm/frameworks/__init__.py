"""edgerm.frameworks: write a framework by subclassing ``Framework`` and
start it with ``run`` (see README.md in this package)."""

from edgerm.frameworks.base import Framework
from edgerm.frameworks.driver import FrameworkDriver, RecordingDriver, Stopped
from edgerm.frameworks.http_driver import HttpDriver
from edgerm.frameworks.run import run, run_sync
from edgerm.frameworks.tasks import docker_task, fits, load_module, supports, wasm_task

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
