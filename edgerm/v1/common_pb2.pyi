from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STAGING: _ClassVar[TaskState]
    TASK_STARTING: _ClassVar[TaskState]
    TASK_RUNNING: _ClassVar[TaskState]
    TASK_KILLING: _ClassVar[TaskState]
    TASK_FINISHED: _ClassVar[TaskState]
    TASK_FAILED: _ClassVar[TaskState]
    TASK_KILLED: _ClassVar[TaskState]
    TASK_LOST: _ClassVar[TaskState]
    TASK_ERROR: _ClassVar[TaskState]
    TASK_DROPPED: _ClassVar[TaskState]
    TASK_UNKNOWN: _ClassVar[TaskState]
    TASK_UNREACHABLE: _ClassVar[TaskState]

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_COMMAND_EXITED: _ClassVar[Reason]
    REASON_TRAP: _ClassVar[Reason]
    REASON_TIME_LIMIT: _ClassVar[Reason]
    REASON_MEMORY_LIMIT: _ClassVar[Reason]
    REASON_KILLED_BY_FRAMEWORK: _ClassVar[Reason]
    REASON_AGENT_LOST: _ClassVar[Reason]
    REASON_AGENT_RESTARTED: _ClassVar[Reason]
    REASON_INVALID_TASK: _ClassVar[Reason]
    REASON_EXECUTOR_UNAVAILABLE: _ClassVar[Reason]
    REASON_IMAGE_UNAVAILABLE: _ClassVar[Reason]
    REASON_RUNTIME_ERROR: _ClassVar[Reason]
    REASON_RECONCILIATION: _ClassVar[Reason]
    REASON_FRAMEWORK_REMOVED: _ClassVar[Reason]
    REASON_AGENT_UNREACHABLE: _ClassVar[Reason]
    REASON_AGENT_REREGISTERED: _ClassVar[Reason]
    REASON_FRAMEWORK_FAILOVER_TIMEOUT: _ClassVar[Reason]
    REASON_LIMIT_EXCEEDED: _ClassVar[Reason]

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_UNSPECIFIED: _ClassVar[Source]
    SOURCE_AGENT: _ClassVar[Source]
    SOURCE_MASTER: _ClassVar[Source]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STAGING: TaskState
TASK_STARTING: TaskState
TASK_RUNNING: TaskState
TASK_KILLING: TaskState
TASK_FINISHED: TaskState
TASK_FAILED: TaskState
TASK_KILLED: TaskState
TASK_LOST: TaskState
TASK_ERROR: TaskState
TASK_DROPPED: TaskState
TASK_UNKNOWN: TaskState
TASK_UNREACHABLE: TaskState
REASON_UNSPECIFIED: Reason
REASON_COMMAND_EXITED: Reason
REASON_TRAP: Reason
REASON_TIME_LIMIT: Reason
REASON_MEMORY_LIMIT: Reason
REASON_KILLED_BY_FRAMEWORK: Reason
REASON_AGENT_LOST: Reason
REASON_AGENT_RESTARTED: Reason
REASON_INVALID_TASK: Reason
REASON_EXECUTOR_UNAVAILABLE: Reason
REASON_IMAGE_UNAVAILABLE: Reason
REASON_RUNTIME_ERROR: Reason
REASON_RECONCILIATION: Reason
REASON_FRAMEWORK_REMOVED: Reason
REASON_AGENT_UNREACHABLE: Reason
REASON_AGENT_REREGISTERED: Reason
REASON_FRAMEWORK_FAILOVER_TIMEOUT: Reason
REASON_LIMIT_EXCEEDED: Reason
SOURCE_UNSPECIFIED: Source
SOURCE_AGENT: Source
SOURCE_MASTER: Source

class Range(_message.Message):
    __slots__ = ("begin", "end")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    begin: int
    end: int
    def __init__(self, begin: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("handle", "shared")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    handle: str
    shared: bool
    def __init__(self, handle: _Optional[str] = ..., shared: _Optional[bool] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("name", "type", "scalar", "ranges", "set", "device")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[Resource.Type]
        SCALAR: _ClassVar[Resource.Type]
        RANGES: _ClassVar[Resource.Type]
        SET: _ClassVar[Resource.Type]
        DEVICE: _ClassVar[Resource.Type]
    TYPE_UNSPECIFIED: Resource.Type
    SCALAR: Resource.Type
    RANGES: Resource.Type
    SET: Resource.Type
    DEVICE: Resource.Type
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SCALAR_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: Resource.Type
    scalar: float
    ranges: _containers.RepeatedCompositeFieldContainer[Range]
    set: _containers.RepeatedScalarFieldContainer[str]
    device: Device
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[Resource.Type, str]] = ..., scalar: _Optional[float] = ..., ranges: _Optional[_Iterable[_Union[Range, _Mapping]]] = ..., set: _Optional[_Iterable[str]] = ..., device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("name", "text", "set")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    name: str
    text: str
    set: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., text: _Optional[str] = ..., set: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("id", "hostname", "resources", "attributes", "heartbeat_interval_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    hostname: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    heartbeat_interval_seconds: float
    def __init__(self, id: _Optional[str] = ..., hostname: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., heartbeat_interval_seconds: _Optional[float] = ...) -> None: ...

class FrameworkInfo(_message.Message):
    __slots__ = ("id", "name", "failover_timeout_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    failover_timeout_seconds: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., failover_timeout_seconds: _Optional[float] = ...) -> None: ...

class WasmInfo(_message.Message):
    __slots__ = ("module", "module_sha256", "time_limit_seconds")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    MODULE_SHA256_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    module: bytes
    module_sha256: str
    time_limit_seconds: float
    def __init__(self, module: _Optional[bytes] = ..., module_sha256: _Optional[str] = ..., time_limit_seconds: _Optional[float] = ...) -> None: ...

class DockerInfo(_message.Message):
    __slots__ = ("image", "network", "port_mappings", "pull_policy")
    class Network(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NETWORK_UNSPECIFIED: _ClassVar[DockerInfo.Network]
        BRIDGE: _ClassVar[DockerInfo.Network]
        HOST: _ClassVar[DockerInfo.Network]
        NONE: _ClassVar[DockerInfo.Network]
    NETWORK_UNSPECIFIED: DockerInfo.Network
    BRIDGE: DockerInfo.Network
    HOST: DockerInfo.Network
    NONE: DockerInfo.Network
    class PullPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PULL_POLICY_UNSPECIFIED: _ClassVar[DockerInfo.PullPolicy]
        IF_NOT_PRESENT: _ClassVar[DockerInfo.PullPolicy]
        ALWAYS: _ClassVar[DockerInfo.PullPolicy]
        NEVER: _ClassVar[DockerInfo.PullPolicy]
    PULL_POLICY_UNSPECIFIED: DockerInfo.PullPolicy
    IF_NOT_PRESENT: DockerInfo.PullPolicy
    ALWAYS: DockerInfo.PullPolicy
    NEVER: DockerInfo.PullPolicy
    class PortMapping(_message.Message):
        __slots__ = ("host_port", "container_port", "protocol")
        HOST_PORT_FIELD_NUMBER: _ClassVar[int]
        CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
        PROTOCOL_FIELD_NUMBER: _ClassVar[int]
        host_port: int
        container_port: int
        protocol: str
        def __init__(self, host_port: _Optional[int] = ..., container_port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PORT_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    PULL_POLICY_FIELD_NUMBER: _ClassVar[int]
    image: str
    network: DockerInfo.Network
    port_mappings: _containers.RepeatedCompositeFieldContainer[DockerInfo.PortMapping]
    pull_policy: DockerInfo.PullPolicy
    def __init__(self, image: _Optional[str] = ..., network: _Optional[_Union[DockerInfo.Network, str]] = ..., port_mappings: _Optional[_Iterable[_Union[DockerInfo.PortMapping, _Mapping]]] = ..., pull_policy: _Optional[_Union[DockerInfo.PullPolicy, str]] = ...) -> None: ...

class ContainerInfo(_message.Message):
    __slots__ = ("wasm", "docker")
    WASM_FIELD_NUMBER: _ClassVar[int]
    DOCKER_FIELD_NUMBER: _ClassVar[int]
    wasm: WasmInfo
    docker: DockerInfo
    def __init__(self, wasm: _Optional[_Union[WasmInfo, _Mapping]] = ..., docker: _Optional[_Union[DockerInfo, _Mapping]] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("task_id", "name", "agent_id", "resources", "container", "args", "env", "kill_grace_seconds", "framework_id", "restart_policy", "secret_env", "labels")
    class RestartPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RESTART_POLICY_UNSPECIFIED: _ClassVar[TaskInfo.RestartPolicy]
        NEVER: _ClassVar[TaskInfo.RestartPolicy]
        ON_AGENT_RESTART: _ClassVar[TaskInfo.RestartPolicy]
    RESTART_POLICY_UNSPECIFIED: TaskInfo.RestartPolicy
    NEVER: TaskInfo.RestartPolicy
    ON_AGENT_RESTART: TaskInfo.RestartPolicy
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    KILL_GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    name: str
    agent_id: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    container: ContainerInfo
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    kill_grace_seconds: float
    framework_id: str
    restart_policy: TaskInfo.RestartPolicy
    secret_env: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, task_id: _Optional[str] = ..., name: _Optional[str] = ..., agent_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., container: _Optional[_Union[ContainerInfo, _Mapping]] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., kill_grace_seconds: _Optional[float] = ..., framework_id: _Optional[str] = ..., restart_policy: _Optional[_Union[TaskInfo.RestartPolicy, str]] = ..., secret_env: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_id", "agent_id", "state", "reason", "message", "uuid", "timestamp", "source", "exit_code")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    agent_id: str
    state: TaskState
    reason: Reason
    message: str
    uuid: str
    timestamp: float
    source: Source
    exit_code: int
    def __init__(self, task_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., uuid: _Optional[str] = ..., timestamp: _Optional[float] = ..., source: _Optional[_Union[Source, str]] = ..., exit_code: _Optional[int] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("id", "framework_id", "agent_id", "hostname", "resources", "attributes", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    framework_id: str
    agent_id: str
    hostname: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    expires_at: float
    def __init__(self, id: _Optional[str] = ..., framework_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., expires_at: _Optional[float] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CODE_UNSPECIFIED: _ClassVar[Error.Code]
        MALFORMED: _ClassVar[Error.Code]
        UNKNOWN_CALL: _ClassVar[Error.Code]
        TOO_LARGE: _ClassVar[Error.Code]
        NOT_SUBSCRIBED: _ClassVar[Error.Code]
        UNKNOWN_AGENT: _ClassVar[Error.Code]
        UNKNOWN_OFFER: _ClassVar[Error.Code]
        OFFER_EXPIRED: _ClassVar[Error.Code]
        OFFER_NOT_YOURS: _ClassVar[Error.Code]
        INSUFFICIENT_RESOURCES: _ClassVar[Error.Code]
        INVALID_TASK: _ClassVar[Error.Code]
        UNKNOWN_TASK: _ClassVar[Error.Code]
        CONFLICT: _ClassVar[Error.Code]
        UNAVAILABLE: _ClassVar[Error.Code]
        UNAUTHENTICATED: _ClassVar[Error.Code]
        FORBIDDEN: _ClassVar[Error.Code]
        LIMIT_EXCEEDED: _ClassVar[Error.Code]
    CODE_UNSPECIFIED: Error.Code
    MALFORMED: Error.Code
    UNKNOWN_CALL: Error.Code
    TOO_LARGE: Error.Code
    NOT_SUBSCRIBED: Error.Code
    UNKNOWN_AGENT: Error.Code
    UNKNOWN_OFFER: Error.Code
    OFFER_EXPIRED: Error.Code
    OFFER_NOT_YOURS: Error.Code
    INSUFFICIENT_RESOURCES: Error.Code
    INVALID_TASK: Error.Code
    UNKNOWN_TASK: Error.Code
    CONFLICT: Error.Code
    UNAVAILABLE: Error.Code
    UNAUTHENTICATED: Error.Code
    FORBIDDEN: Error.Code
    LIMIT_EXCEEDED: Error.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: Error.Code
    message: str
    def __init__(self, code: _Optional[_Union[Error.Code, str]] = ..., message: _Optional[str] = ...) -> None: ...
