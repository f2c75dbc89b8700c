"""Helpers that build ``TaskInfo``s from offers, so a framework is short.

Rules:

- Each builder gives the task a fresh id (:func:`edgerm.ids.new_id`) and
  places it on the offer's agent; it does not check that the resources fit
  the offer (the master validates; :func:`fits` checks beforehand).
- Resources are given as a ``Resources`` or its text form
  (``"cpus:0.1;mem:32"``); a bad text raises ``ValueError`` naming the part.
- :func:`load_module` reads a WASI module: ``.wat`` text is compiled with
  ``wasmtime.wat2wasm`` (imported only then), anything starting with the
  wasm magic is taken as is. Problems raise ``ConfigError`` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

from edgerm.errors import ConfigError
from edgerm.ids import TaskId, new_id
from edgerm.model import DockerSpec, Network, Offer, PortMapping, PullPolicy, RestartPolicy, TaskInfo, WasmSpec
from edgerm.resources import Resources

_WASM_MAGIC = b"\0asm"

ModuleSource = bytes | str | PathLike[str]


def load_module(path: str | PathLike[str]) -> bytes:
    """The binary of a WASI module stored as ``.wat`` text or ``.wasm``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read module: {e.strerror or e}") from None
    if data.startswith(_WASM_MAGIC):
        return data
    if p.suffix not in (".wat", ".wast", ""):
        raise ConfigError(f"{p}: neither a .wasm binary nor .wat text")
    import wasmtime  # lazily: only text modules need the compiler

    try:
        return bytes(wasmtime.wat2wasm(data.decode("utf-8")))
    except (wasmtime.WasmtimeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: invalid WAT: {e}") from None


def as_resources(resources: Resources | str) -> Resources:
    """``resources`` itself, or parsed from its text form."""
    return resources if isinstance(resources, Resources) else Resources.parse(resources)


def supports(offer: Offer, executor: str) -> bool:
    """Whether the offer's agent advertises ``executor`` (``wasm``, ``docker``)."""
    executors = offer.attributes.get("executors", frozenset())
    return executor in (executors if isinstance(executors, frozenset) else {executors})


def fits(offer: Offer, resources: Resources | str) -> bool:
    """Whether ``resources`` fit within what the offer holds."""
    return as_resources(resources) <= offer.resources


def wasm_task(
    offer: Offer,
    name: str,
    module: ModuleSource,
    resources: Resources | str = "cpus:0.1;mem:32",
    args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    time_limit: float = 0.0,
    secret_env: Mapping[str, str] | None = None,
    restart_policy: RestartPolicy = RestartPolicy.NEVER,
) -> TaskInfo:
    """A WASI task on the offer's agent.

    ``module`` is the module's bytes, or a path to a ``.wat``/``.wasm`` file
    (read on every call: load it once with :func:`load_module` when
    launching many tasks). ``time_limit`` 0 means the agent's default.
    ``secret_env`` joins the task's environment but is never shown in the
    master's state, logs, metrics or the CLI (docs/security.md).
    ``restart_policy`` ON_AGENT_RESTART: if the agent process dies, the
    restarted agent runs the task again (docs/agent-reliability.md); NEVER:
    it reports it FAILED with reason AGENT_RESTARTED.
    """
    binary = module if isinstance(module, bytes) else load_module(module)
    if not binary:
        raise ConfigError(f"task {name}: empty module")
    return TaskInfo(
        task_id=TaskId(new_id()),
        name=name,
        agent_id=offer.agent_id,
        resources=as_resources(resources),
        container=WasmSpec(module=binary, time_limit=time_limit),
        args=tuple(args),
        env=dict(env or {}),
        secret_env=dict(secret_env or {}),
        restart_policy=restart_policy,
    )


def docker_task(
    offer: Offer,
    name: str,
    image: str,
    resources: Resources | str = "cpus:0.5;mem:128",
    args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    network: Network = Network.BRIDGE,
    ports: Iterable[PortMapping] = (),
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT,
    kill_grace: float = 3.0,
    secret_env: Mapping[str, str] | None = None,
    restart_policy: RestartPolicy = RestartPolicy.NEVER,
) -> TaskInfo:
    """A Docker task on the offer's agent; ``args`` replace the image's command (``secret_env``: as wasm_task).

    A container outlives an agent restart and is re-attached; ``restart_policy``
    ON_AGENT_RESTART matters only if it vanished meanwhile (it is started again).
    """
    if not image:
        raise ConfigError(f"task {name}: empty image name")
    return TaskInfo(
        task_id=TaskId(new_id()),
        name=name,
        agent_id=offer.agent_id,
        resources=as_resources(resources),
        container=DockerSpec(image=image, network=network, port_mappings=tuple(ports), pull_policy=pull_policy),
        args=tuple(args),
        env=dict(env or {}),
        kill_grace=kill_grace,
        secret_env=dict(secret_env or {}),
        restart_policy=restart_policy,
    )
