from edgerm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentCall(_message.Message):
    __slots__ = ("agent_id", "type", "register", "heartbeat", "update", "logs")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[AgentCall.Type]
        REGISTER: _ClassVar[AgentCall.Type]
        HEARTBEAT: _ClassVar[AgentCall.Type]
        UPDATE: _ClassVar[AgentCall.Type]
        SUBSCRIBE: _ClassVar[AgentCall.Type]
        LOGS: _ClassVar[AgentCall.Type]
    TYPE_UNSPECIFIED: AgentCall.Type
    REGISTER: AgentCall.Type
    HEARTBEAT: AgentCall.Type
    UPDATE: AgentCall.Type
    SUBSCRIBE: AgentCall.Type
    LOGS: AgentCall.Type
    class Register(_message.Message):
        __slots__ = ("agent", "tasks", "instance_id")
        AGENT_FIELD_NUMBER: _ClassVar[int]
        TASKS_FIELD_NUMBER: _ClassVar[int]
        INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
        agent: _common_pb2.AgentInfo
        tasks: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskStatus]
        instance_id: str
        def __init__(self, agent: _Optional[_Union[_common_pb2.AgentInfo, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_common_pb2.TaskStatus, _Mapping]]] = ..., instance_id: _Optional[str] = ...) -> None: ...
    class Heartbeat(_message.Message):
        __slots__ = ("task_ids",)
        TASK_IDS_FIELD_NUMBER: _ClassVar[int]
        task_ids: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...
    class Update(_message.Message):
        __slots__ = ("status", "more")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        MORE_FIELD_NUMBER: _ClassVar[int]
        status: _common_pb2.TaskStatus
        more: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskStatus]
        def __init__(self, status: _Optional[_Union[_common_pb2.TaskStatus, _Mapping]] = ..., more: _Optional[_Iterable[_Union[_common_pb2.TaskStatus, _Mapping]]] = ...) -> None: ...
    class Logs(_message.Message):
        __slots__ = ("request_id", "task_id", "stream", "offset", "data", "size", "error")
        REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        STREAM_FIELD_NUMBER: _ClassVar[int]
        OFFSET_FIELD_NUMBER: _ClassVar[int]
        DATA_FIELD_NUMBER: _ClassVar[int]
        SIZE_FIELD_NUMBER: _ClassVar[int]
        ERROR_FIELD_NUMBER: _ClassVar[int]
        request_id: str
        task_id: str
        stream: str
        offset: int
        data: bytes
        size: int
        error: str
        def __init__(self, request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., stream: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., size: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    type: AgentCall.Type
    register: AgentCall.Register
    heartbeat: AgentCall.Heartbeat
    update: AgentCall.Update
    logs: AgentCall.Logs
    def __init__(self, agent_id: _Optional[str] = ..., type: _Optional[_Union[AgentCall.Type, str]] = ..., register: _Optional[_Union[AgentCall.Register, _Mapping]] = ..., heartbeat: _Optional[_Union[AgentCall.Heartbeat, _Mapping]] = ..., update: _Optional[_Union[AgentCall.Update, _Mapping]] = ..., logs: _Optional[_Union[AgentCall.Logs, _Mapping]] = ...) -> None: ...

class AgentEvent(_message.Message):
    __slots__ = ("type", "registered", "heartbeat_ack", "acknowledged", "launch", "kill", "error", "send_logs", "logs_received")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[AgentEvent.Type]
        REGISTERED: _ClassVar[AgentEvent.Type]
        HEARTBEAT_ACK: _ClassVar[AgentEvent.Type]
        ACKNOWLEDGED: _ClassVar[AgentEvent.Type]
        LAUNCH: _ClassVar[AgentEvent.Type]
        KILL: _ClassVar[AgentEvent.Type]
        ERROR: _ClassVar[AgentEvent.Type]
        SEND_LOGS: _ClassVar[AgentEvent.Type]
        LOGS_RECEIVED: _ClassVar[AgentEvent.Type]
    TYPE_UNSPECIFIED: AgentEvent.Type
    REGISTERED: AgentEvent.Type
    HEARTBEAT_ACK: AgentEvent.Type
    ACKNOWLEDGED: AgentEvent.Type
    LAUNCH: AgentEvent.Type
    KILL: AgentEvent.Type
    ERROR: AgentEvent.Type
    SEND_LOGS: AgentEvent.Type
    LOGS_RECEIVED: AgentEvent.Type
    class Registered(_message.Message):
        __slots__ = ("agent_id", "master_id", "broker_url")
        AGENT_ID_FIELD_NUMBER: _ClassVar[int]
        MASTER_ID_FIELD_NUMBER: _ClassVar[int]
        BROKER_URL_FIELD_NUMBER: _ClassVar[int]
        agent_id: str
        master_id: str
        broker_url: str
        def __init__(self, agent_id: _Optional[str] = ..., master_id: _Optional[str] = ..., broker_url: _Optional[str] = ...) -> None: ...
    class HeartbeatAck(_message.Message):
        __slots__ = ("commands_pending",)
        COMMANDS_PENDING_FIELD_NUMBER: _ClassVar[int]
        commands_pending: bool
        def __init__(self, commands_pending: _Optional[bool] = ...) -> None: ...
    class Acknowledged(_message.Message):
        __slots__ = ("task_id", "uuid", "more")
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        UUID_FIELD_NUMBER: _ClassVar[int]
        MORE_FIELD_NUMBER: _ClassVar[int]
        task_id: str
        uuid: str
        more: _containers.RepeatedCompositeFieldContainer[AgentEvent.Acknowledged]
        def __init__(self, task_id: _Optional[str] = ..., uuid: _Optional[str] = ..., more: _Optional[_Iterable[_Union[AgentEvent.Acknowledged, _Mapping]]] = ...) -> None: ...
    class Launch(_message.Message):
        __slots__ = ("task",)
        TASK_FIELD_NUMBER: _ClassVar[int]
        task: _common_pb2.TaskInfo
        def __init__(self, task: _Optional[_Union[_common_pb2.TaskInfo, _Mapping]] = ...) -> None: ...
    class Kill(_message.Message):
        __slots__ = ("task_id", "grace_seconds")
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
        task_id: str
        grace_seconds: float
        def __init__(self, task_id: _Optional[str] = ..., grace_seconds: _Optional[float] = ...) -> None: ...
    class SendLogs(_message.Message):
        __slots__ = ("request_id", "task_id", "stream", "offset", "limit")
        REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        STREAM_FIELD_NUMBER: _ClassVar[int]
        OFFSET_FIELD_NUMBER: _ClassVar[int]
        LIMIT_FIELD_NUMBER: _ClassVar[int]
        request_id: str
        task_id: str
        stream: str
        offset: int
        limit: int
        def __init__(self, request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., stream: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...
    class LogsReceived(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SEND_LOGS_FIELD_NUMBER: _ClassVar[int]
    LOGS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    type: AgentEvent.Type
    registered: AgentEvent.Registered
    heartbeat_ack: AgentEvent.HeartbeatAck
    acknowledged: AgentEvent.Acknowledged
    launch: AgentEvent.Launch
    kill: AgentEvent.Kill
    error: _common_pb2.Error
    send_logs: AgentEvent.SendLogs
    logs_received: AgentEvent.LogsReceived
    def __init__(self, type: _Optional[_Union[AgentEvent.Type, str]] = ..., registered: _Optional[_Union[AgentEvent.Registered, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[AgentEvent.HeartbeatAck, _Mapping]] = ..., acknowledged: _Optional[_Union[AgentEvent.Acknowledged, _Mapping]] = ..., launch: _Optional[_Union[AgentEvent.Launch, _Mapping]] = ..., kill: _Optional[_Union[AgentEvent.Kill, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ..., send_logs: _Optional[_Union[AgentEvent.SendLogs, _Mapping]] = ..., logs_received: _Optional[_Union[AgentEvent.LogsReceived, _Mapping]] = ...) -> None: ...
