"""What an operator variant runs: its executor resolved into a task container.

- ``wasm: builtin:<name>`` names a module shipped with edgerm
  (:mod:`edgerm.dataflow_ops`: sensor, map, filter, aggregate, sink);
- ``wasm: <path>`` a ``.wasm`` or ``.wat`` file, relative to the DAG file;
- ``wasm: sha256:<hex>`` a module the agents (or the master) already hold;
- ``docker: <image>`` a Docker image. Docker operators do their own MQTT I/O,
  so they run with host networking to reach a broker on the agent's loopback.

Rules: each module file is read once per :class:`ModuleResolver` (a DAG's
instances share it). Problems raise ``ConfigError`` naming the module;
:func:`module_problem` answers the same question without raising, for
offline validation.
"""

from __future__ import annotations

from pathlib import Path

from edgerm.dataflow_ops import BUILTINS, PREFIX, is_builtin, load_builtin
from edgerm.errors import ConfigError
from edgerm.frameworks.tasks import load_module
from edgerm.model import Container, DockerSpec, Network, WasmSpec
from edgerm.scheduler.dag import Dag, DockerExecutor, Executor, WasmExecutor


def builtin_names() -> list[str]:
    """The builtin operator modules (``edgerm.dataflow_ops``)."""
    return list(BUILTINS)


def module_file(dag: Dag, executor: WasmExecutor) -> Path | None:
    """The file a wasm executor names (``None`` for a builtin or a sha256 reference)."""
    if executor.sha256 or is_builtin(executor.module):
        return None
    return Path(dag.module_path(executor))


def module_problem(dag: Dag, executor: Executor) -> str | None:
    """Why the executor's module cannot be found, or ``None`` when it can (or is not a file)."""
    if not isinstance(executor, WasmExecutor) or executor.sha256:
        return None
    if is_builtin(executor.module):
        if executor.module[len(PREFIX) :] in BUILTINS:
            return None
        return f"unknown builtin module {executor.module!r} (builtins: {', '.join(BUILTINS)})"
    path = module_file(dag, executor)
    if path is None or path.is_file():
        return None
    return f"module file {str(path)!r} not found"


class ModuleResolver:
    """Turns executors into task containers, reading each module file once."""

    def __init__(self, dag: Dag) -> None:
        self._dag = dag
        self._cache: dict[str, bytes] = {}

    def container(self, executor: Executor) -> Container:
        """The container for ``executor``; ``ConfigError`` if its module is missing or invalid."""
        if isinstance(executor, DockerExecutor):
            return DockerSpec(image=executor.image, network=Network.HOST)
        if executor.sha256:
            return WasmSpec(module_sha256=executor.sha256)
        binary = self._cache.get(executor.module)
        if binary is None:
            problem = module_problem(self._dag, executor)
            if problem is not None:
                raise ConfigError(problem)
            path = module_file(self._dag, executor)
            binary = load_module(path) if path is not None else load_builtin(executor.module)
            self._cache[executor.module] = binary
        return WasmSpec(module=binary)
