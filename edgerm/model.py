"""Internal domain types: agents, frameworks, tasks, statuses, offers.

Frozen dataclasses that the cores, services and frameworks use. They mirror
``proto/edgerm/v1/common.proto``; :mod:`edgerm.wire` converts both ways.
Generated protobuf classes never appear outside the wire layer.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.resources import EMPTY, Resources

#: An attribute's value: text (``os=linux``) or a set (``executors={wasm,docker}``).
AttrValue = str | frozenset[str]
Attributes = Mapping[str, AttrValue]


class TaskState(enum.Enum):
    """Mesos task states; names match ``edgerm.v1.TaskState`` minus ``TASK_``."""

    STAGING = "STAGING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    KILLING = "KILLING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"
    ERROR = "ERROR"
    DROPPED = "DROPPED"
    UNKNOWN = "UNKNOWN"
    UNREACHABLE = "UNREACHABLE"  # not terminal: the agent may come back

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.LOST,
        TaskState.ERROR,
        TaskState.DROPPED,
        TaskState.UNKNOWN,
    }
)


class Reason(enum.Enum):
    """Why a task reached its state; names match ``edgerm.v1.Reason`` minus ``REASON_``."""

    UNSPECIFIED = "UNSPECIFIED"
    COMMAND_EXITED = "COMMAND_EXITED"
    TRAP = "TRAP"
    TIME_LIMIT = "TIME_LIMIT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    KILLED_BY_FRAMEWORK = "KILLED_BY_FRAMEWORK"
    AGENT_LOST = "AGENT_LOST"
    AGENT_RESTARTED = "AGENT_RESTARTED"
    INVALID_TASK = "INVALID_TASK"
    EXECUTOR_UNAVAILABLE = "EXECUTOR_UNAVAILABLE"
    IMAGE_UNAVAILABLE = "IMAGE_UNAVAILABLE"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    RECONCILIATION = "RECONCILIATION"
    FRAMEWORK_REMOVED = "FRAMEWORK_REMOVED"
    AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
    AGENT_REREGISTERED = "AGENT_REREGISTERED"
    FRAMEWORK_FAILOVER_TIMEOUT = "FRAMEWORK_FAILOVER_TIMEOUT"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"


class Source(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    AGENT = "AGENT"
    MASTER = "MASTER"


class Network(enum.Enum):
    BRIDGE = "BRIDGE"
    HOST = "HOST"
    NONE = "NONE"


class RestartPolicy(enum.Enum):
    """What an agent does with a task that died with the agent process."""

    NEVER = "NEVER"  # report it FAILED with reason AGENT_RESTARTED
    ON_AGENT_RESTART = "ON_AGENT_RESTART"  # relaunch it from the agent's work dir


class PullPolicy(enum.Enum):
    IF_NOT_PRESENT = "IF_NOT_PRESENT"
    ALWAYS = "ALWAYS"
    NEVER = "NEVER"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent is: its total capacity, attributes and heartbeat interval."""

    id: AgentId
    hostname: str
    resources: Resources = EMPTY
    attributes: Attributes = field(default_factory=dict)
    heartbeat_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class FrameworkInfo:
    """Who a framework is. ``failover_timeout``: seconds its tasks outlive a
    closed event stream (0 = the master's default)."""

    id: FrameworkId
    name: str
    failover_timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class WasmSpec:
    """A WASI command module, inline (``module``) or by content hash."""

    module: bytes = b""
    module_sha256: str = ""
    time_limit: float = 0.0  # seconds; 0 = the agent's default

    @property
    def sha256(self) -> str:
        """The module's content hash (computed from the bytes when inline)."""
        return hashlib.sha256(self.module).hexdigest() if self.module else self.module_sha256


@dataclass(frozen=True, slots=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str = "tcp"


@dataclass(frozen=True, slots=True)
class DockerSpec:
    image: str
    network: Network = Network.BRIDGE
    port_mappings: tuple[PortMapping, ...] = ()
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT


Container = WasmSpec | DockerSpec


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task to run: what, where, with which resources."""

    task_id: TaskId
    name: str
    agent_id: AgentId
    resources: Resources
    container: Container
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    kill_grace: float = 3.0
    framework_id: FrameworkId = FrameworkId("")
    restart_policy: RestartPolicy = RestartPolicy.NEVER
    secret_env: Mapping[str, str] = field(default_factory=dict)  # never shown in state, logs or the CLI
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def executor(self) -> str:
        """``wasm`` or ``docker``: the value an agent's ``executors`` must hold."""
        return "wasm" if isinstance(self.container, WasmSpec) else "docker"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One state change of a task. ``uuid`` set means it must be acknowledged."""

    task_id: TaskId
    agent_id: AgentId
    state: TaskState
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    uuid: str = ""
    timestamp: float = 0.0
    source: Source = Source.AGENT
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class Offer:
    """An agent's free resources, exclusive to one framework until answered."""

    id: OfferId
    framework_id: FrameworkId
    agent_id: AgentId
    hostname: str
    resources: Resources
    attributes: Attributes = field(default_factory=dict)
    expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Filters:
    """Decline filters: do not re-offer that agent to me for ``refuse_seconds``."""

    refuse_seconds: float = 5.0
