"""What a Docker task becomes: the container spec, its labels and name, and how its end is read.

Pure functions from a :class:`~edgerm.model.TaskInfo` to a
:class:`ContainerSpec` (what :mod:`edgerm.agent.docker_engine` creates), and
from how a container ended to the task's terminal state. Rules:

- Every container carries the labels ``edgerm.agent``, ``edgerm.framework``
  and ``edgerm.task``; the runtime finds, watches and recovers containers by
  them and by nothing else.
- The container name is derived from agent and task ids, so a LAUNCH sent
  twice for one task can never create a second container.
- ``cpus`` becomes ``nano_cpus``; ``mem`` (MiB) becomes ``mem_limit`` and an
  equal ``memswap_limit`` (no swap). Absent scalars set no limit.
- Port mappings must lie within the task's ``ports`` resource: a task never
  binds a host port it was not given. Host and none networks take no
  mappings.
- Environment: ``EDGERM_*`` facts, then the task's own ``env``, then what its
  claimed devices grant (the agent's config has the last word on devices).
- A bad task raises :class:`InvalidDockerTask`; the runtime turns it into
  ``TaskEnded(FAILED, INVALID_TASK)``.

No I/O here: the unit tests check these mappings without an engine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgerm.agent.devices import DeviceGrants, DeviceNode, VolumeMount
from edgerm.errors import RuntimeFailure
from edgerm.ids import AgentId, TaskId
from edgerm.model import DockerSpec, Network, PortMapping, PullPolicy, Reason, TaskInfo, TaskState

LABEL_AGENT = "edgerm.agent"
LABEL_FRAMEWORK = "edgerm.framework"
LABEL_TASK = "edgerm.task"

#: Where the task's private directory (the agent's workdir for it) is mounted.
SANDBOX_PATH = "/edgerm/sandbox"

_MIB = 1024 * 1024
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class InvalidDockerTask(RuntimeFailure):
    """The task cannot be run as a container as described."""


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything needed to create one task's container."""

    task_id: TaskId
    name: str
    image: str
    pull_policy: PullPolicy
    command: tuple[str, ...]  # empty: the image's own command
    env: Mapping[str, str] = field(repr=False)  # may hold the task's secret_env: kept out of logs
    labels: Mapping[str, str]
    network: Network
    ports: tuple[PortMapping, ...] = ()
    host_ip: str = ""  # host address the mapped ports bind to; empty: all
    nano_cpus: int = 0  # 0: no CPU limit
    mem_bytes: int = 0  # 0: no memory limit
    devices: tuple[DeviceNode, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()

    def create_container_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the SDK's ``APIClient.create_container``, less ``host_config``."""
        kwargs: dict[str, object] = {
            "image": self.image,
            "name": self.name,
            "environment": dict(self.env),
            "labels": dict(self.labels),
            "detach": True,
        }
        if self.command:
            kwargs["command"] = list(self.command)
        if self.ports:
            kwargs["ports"] = [(p.container_port, p.protocol) for p in self.ports]
        if self.volumes:
            kwargs["volumes"] = [v.container_path for v in self.volumes]
        return kwargs

    def host_config_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the SDK's ``APIClient.create_host_config``."""
        kwargs: dict[str, object] = {"network_mode": self.network.value.lower()}
        if self.ports:
            kwargs["port_bindings"] = {
                f"{p.container_port}/{p.protocol}": (self.host_ip, p.host_port) if self.host_ip else p.host_port
                for p in self.ports
            }
        if self.nano_cpus:
            kwargs["nano_cpus"] = self.nano_cpus
        if self.mem_bytes:
            kwargs["mem_limit"] = self.mem_bytes
            kwargs["memswap_limit"] = self.mem_bytes
        if self.devices:
            kwargs["devices"] = [d.docker_form() for d in self.devices]
        if self.volumes:
            kwargs["binds"] = {v.host_path: {"bind": v.container_path, "mode": v.mode} for v in self.volumes}
        return kwargs


def labels_for(agent_id: AgentId, task: TaskInfo) -> dict[str, str]:
    return {LABEL_AGENT: agent_id, LABEL_FRAMEWORK: task.framework_id, LABEL_TASK: task.task_id}


def container_name(agent_id: AgentId, task_id: TaskId) -> str:
    """A Docker-safe name, unique per (agent, task): ``edgerm-<task>-<hash>``."""
    digest = hashlib.sha256(f"{agent_id}\0{task_id}".encode()).hexdigest()[:12]
    readable = _NAME_UNSAFE.sub("_", task_id)[:48]
    return f"edgerm-{readable}-{digest}"


def build_spec(
    agent_id: AgentId,
    task: TaskInfo,
    grants: DeviceGrants,
    sandbox: str | None = None,
    host_ip: str = "",
) -> ContainerSpec:
    """The container for ``task``.

    ``sandbox``: the host workdir to mount at :data:`SANDBOX_PATH`, if any;
    ``host_ip``: the host address mapped ports bind to (empty: all).
    """
    docker = task.container
    if not isinstance(docker, DockerSpec):
        raise InvalidDockerTask(f"task {task.task_id} is not a Docker task")
    if not docker.image.strip():
        raise InvalidDockerTask(f"task {task.task_id}: no image")
    ports = _checked_ports(task, docker)
    env: dict[str, str] = {
        "EDGERM_TASK_ID": task.task_id,
        "EDGERM_AGENT_ID": agent_id,
        "EDGERM_FRAMEWORK_ID": task.framework_id,
    }
    volumes = list(grants.volumes)
    if sandbox is not None:
        env["EDGERM_SANDBOX"] = SANDBOX_PATH
        volumes.insert(0, VolumeMount(sandbox, SANDBOX_PATH, "rw"))
    env.update(task.environment())  # env and secret_env
    env.update(grants.env)
    cpus, mem = task.resources.cpus, task.resources.mem
    return ContainerSpec(
        task_id=task.task_id,
        name=container_name(agent_id, task.task_id),
        image=docker.image,
        pull_policy=docker.pull_policy,
        command=tuple(task.args),
        env=env,
        labels=labels_for(agent_id, task),
        network=docker.network,
        ports=ports,
        host_ip=host_ip,
        nano_cpus=round(cpus * 1e9) if cpus > 0 else 0,
        mem_bytes=round(mem * _MIB) if mem > 0 else 0,
        devices=grants.nodes,
        volumes=tuple(volumes),
    )


def _checked_ports(task: TaskInfo, docker: DockerSpec) -> tuple[PortMapping, ...]:
    if not docker.port_mappings:
        return ()
    if docker.network is not Network.BRIDGE:
        network = docker.network.value.lower()
        raise InvalidDockerTask(f"task {task.task_id}: port mappings need the bridge network, not {network}")
    given = task.resources.ranges.get("ports", ())
    for p in docker.port_mappings:
        if p.protocol not in ("tcp", "udp"):
            raise InvalidDockerTask(f"task {task.task_id}: port protocol {p.protocol!r} is not tcp or udp")
        if not 0 < p.container_port < 65536:
            raise InvalidDockerTask(f"task {task.task_id}: container port {p.container_port} out of range")
        if not any(r.begin <= p.host_port <= r.end for r in given):
            raise InvalidDockerTask(f"task {task.task_id}: host port {p.host_port} is not in the task's ports resource")
    return docker.port_mappings


# --------------------------------------------------------------------------
# How a container ended


@dataclass(frozen=True, slots=True)
class Outcome:
    """A task's terminal state, read from how its container ended."""

    state: TaskState
    reason: Reason
    message: str
    exit_code: int


MEMORY_LIMIT_MESSAGE = "memory limit"
_SIGKILLED = 128 + 9


def classify_exit(exit_code: int, *, oom: bool, killed: bool, log_tail: str = "") -> Outcome:
    """Read a container's end: our kill wins, then an OOM kill, then the exit code."""
    if killed:
        return Outcome(TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, f"killed (exit code {exit_code})", exit_code)
    if oom:
        return Outcome(TaskState.FAILED, Reason.MEMORY_LIMIT, MEMORY_LIMIT_MESSAGE, exit_code)
    if exit_code == 0:
        return Outcome(TaskState.FINISHED, Reason.COMMAND_EXITED, "exited with code 0", 0)
    message = f"exited with code {exit_code}"
    if exit_code == _SIGKILLED:
        # Also what an OOM kill looks like when it struck within the first
        # milliseconds, before the engine was watching the container's memory.
        message += " (SIGKILL)"
    if log_tail.strip():
        message += "; last output:\n" + log_tail.rstrip("\n")
    return Outcome(TaskState.FAILED, Reason.COMMAND_EXITED, message, exit_code)


def tail_text(raw: bytes, lines: int, max_chars: int = 2000) -> str:
    """The last ``lines`` lines of a log, at most ``max_chars`` characters."""
    text = raw.decode("utf-8", errors="replace")
    kept = text.rstrip("\n").splitlines()[-lines:] if lines > 0 else []
    out = "\n".join(kept)
    return out[-max_chars:]
