"""The dataflow env contract: what a task's environment tells the operator host.

A dataflow operator instance is an ordinary task whose env carries
``EDGERM_DF_*`` keys (docs/dataflow.md). :func:`parse_operator` turns that env
into an :class:`OperatorConfig` or raises :class:`~edgerm.errors.ConfigError`
naming the bad key; nothing is defaulted silently except what the contract
gives a default. Also here: the topic names, the broker URL form, and
:func:`with_broker`, which the agent service uses to hand a dataflow task the
broker the master named at registration.

Pure: no I/O, no asyncio; imported by the agent service without loading MQTT.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from edgerm.dataflow_keys import (
    BATCH,
    BATCH_MS,
    BROKER,
    BROKER_CA,
    BROKER_PASSWORD,
    BROKER_USERNAME,
    CONTENT_TYPE,
    DAG,
    DEVICE,
    INPUTS,
    OPERATOR,
    OUTPUT,
    PERIOD,
    QUEUE,
    REPLICA,
    ROLE,
    RUN,
    SINK,
    claim_topic,
    state_topic,
    stats_topic,
)
from edgerm.errors import ConfigError
from edgerm.model import TaskInfo
from edgerm.resources import Resources

DEFAULT_PERIOD = 0.1  # seconds between readings
DEFAULT_BATCH = 1000  # records per micro-batch at most (adaptive batching: only what piles up)
DEFAULT_BATCH_MS = 50.0  # longest wait before a partial batch is flushed
DEFAULT_QUEUE = 64  # input queue bound, in batches
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}

#: Topic names: an operator's output, and each instance's stats.
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")  # dag and operator names: no '/', '+', '#' or spaces
_CLIENT_ID = re.compile(r"[^A-Za-z0-9_.\-]")
_RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")  # as in edgerm.resources


class Role(enum.Enum):
    SOURCE = "source"
    OPERATOR = "operator"
    SINK = "sink"


class SinkKind(enum.Enum):
    CONSOLE = "console"  # publish to the output topic (the framework prints it)
    FILE = "file"  # append to a file on the agent
    HTTP = "http"  # POST each batch (text/plain)


@dataclass(frozen=True, slots=True)
class SinkSpec:
    kind: SinkKind = SinkKind.CONSOLE
    target: str = ""  # the file path or the URL


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the MQTT broker listens (``mqtt://host:port``, or ``mqtts://`` for MQTT over TLS)."""

    host: str
    port: int
    tls: bool = False
    ca: str | None = None  # the CA file that verifies an mqtts broker (None: the system's trust store)
    username: str | None = field(default=None, repr=False)  # the task's login (EDGERM_BROKER_USERNAME)
    password: str | None = field(default=None, repr=False)  # kept out of logs and reprs

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    """One operator instance, as its task's env describes it."""

    dag: str
    operator: str
    role: Role
    output: str
    broker: Broker
    inputs: tuple[str, ...] = ()
    index: int = 0
    replicas: int = 1
    device: str = ""  # sources: the device resource name (or a handle, see resolve_device)
    period: float = DEFAULT_PERIOD
    batch: int = DEFAULT_BATCH
    batch_ms: float = DEFAULT_BATCH_MS
    queue: int = DEFAULT_QUEUE
    sink: SinkSpec = SinkSpec()
    run: str = ""  # EDGERM_DF_RUN (the framework id): sessions and checkpoints are per run
    content_type: str = ""  # EDGERM_DF_CONTENT_TYPE: of a cmd+bytes: source's records

    @property
    def client_id(self) -> str:
        """The instance slot's MQTT client id: stable across moves, so a replacement takes over the session.

        ``edgerm-<dag>-<operator>.<i>-<hash>``: readable, and the hash of (run, dag, operator, i) keeps slots
        of different runs apart and an id cut to 64 characters unique.
        """
        key = f"{self.run}/{self.dag}/{self.operator}/{self.index}/{self.replicas}"
        digest = hashlib.blake2s(key.encode(), digest_size=6).hexdigest()
        readable = _CLIENT_ID.sub("_", f"edgerm-{self.dag}-{self.operator}.{self.index}")[:48]
        return f"{readable}-{digest}"

    @property
    def state_topic(self) -> str:
        return state_topic(self.dag, self.operator, self.index)

    @property
    def claim_topic(self) -> str:
        return claim_topic(self.dag, self.operator, self.index)

    @property
    def probe_topic(self) -> str:
        """Where an instance's reader sends itself the probe that ends a read of retained messages."""
        return f"{claim_topic(self.dag, self.operator, self.index)}/probe"

    @property
    def source_id(self) -> str:
        """The ``src`` of the records a source instance produces: ``<operator>.<i>``."""
        return f"{self.operator}.{self.index}"

    @property
    def stats_topic(self) -> str:
        return stats_topic(self.dag, self.operator, self.index)


def is_dataflow(env: Mapping[str, str]) -> bool:
    """Whether a task's env makes it a dataflow operator instance."""
    return ROLE in env


def parse_broker(url: str) -> Broker:
    """``mqtt://host[:port]`` (port 1883 by default); raises ConfigError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{BROKER}: {url!r} is not a URL: {e}") from None
    if parts.scheme not in MQTT_SCHEMES:
        raise ConfigError(f"{BROKER}: {url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"{BROKER}: {url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{BROKER}: {url!r}: only mqtt://host:port is understood")
    default = MQTT_SCHEMES[parts.scheme]
    return Broker(parts.hostname, port if port is not None else default, tls=parts.scheme == "mqtts")


def with_broker(task: TaskInfo, broker_url: str, ca: str | None = None) -> TaskInfo:
    """A dataflow task with ``EDGERM_BROKER`` (the master's broker), ``EDGERM_DF_RUN`` (its framework id) and,
    for an ``mqtts://`` broker, ``EDGERM_BROKER_CA`` (``ca``, the agent's own) filled in where the task does
    not set them; any other task as it is."""
    if not is_dataflow(task.env):
        return task
    extra: dict[str, str] = {}
    if broker_url and not task.env.get(BROKER):
        extra[BROKER] = broker_url
    if ca and (extra.get(BROKER) or task.env.get(BROKER, "")).startswith("mqtts://") and not task.env.get(BROKER_CA):
        extra[BROKER_CA] = ca
    if task.framework_id and not task.env.get(RUN):
        extra[RUN] = task.framework_id
    return replace(task, env={**task.env, **extra}) if extra else task


def parse_operator(env: Mapping[str, str]) -> OperatorConfig:
    """The operator instance an env describes; raises ConfigError naming the first bad key."""
    role_text = _required(env, ROLE)
    try:
        role = Role(role_text)
    except ValueError:
        raise ConfigError(f"{ROLE}: {role_text!r} is not source, operator or sink") from None
    dag = _name(env, DAG)
    operator = _name(env, OPERATOR)
    output = _topic(_required(env, OUTPUT), OUTPUT)
    inputs: tuple[str, ...] = ()
    if role is not Role.SOURCE:
        raw = [t.strip() for t in _required(env, INPUTS).split(",")]
        inputs = tuple(_topic(t, INPUTS) for t in raw if t)
        if not inputs:
            raise ConfigError(f"{INPUTS}: names no topic")
    index, replicas = _replica(env.get(REPLICA, "0/1"))
    device = ""
    if role is Role.SOURCE:
        device = _required(env, DEVICE)
    sink = SinkSpec()
    if role is Role.SINK:
        sink = parse_sink(env.get(SINK, "console"))
    broker_url = env.get(BROKER, "")
    if not broker_url:
        raise ConfigError(f"{BROKER}: no MQTT broker (the master named none and the task sets none)")
    return OperatorConfig(
        dag=dag,
        operator=operator,
        role=role,
        output=output,
        broker=replace(
            parse_broker(broker_url),
            username=env.get(BROKER_USERNAME) or None,
            password=env.get(BROKER_PASSWORD) or None,
            ca=env.get(BROKER_CA) or None,
        ),
        inputs=inputs,
        index=index,
        replicas=replicas,
        device=device,
        period=_number(env, PERIOD, DEFAULT_PERIOD, minimum=0.001),
        batch=int(_number(env, BATCH, DEFAULT_BATCH, minimum=1, whole=True)),
        batch_ms=_number(env, BATCH_MS, DEFAULT_BATCH_MS, minimum=0.0),
        queue=int(_number(env, QUEUE, DEFAULT_QUEUE, minimum=1, whole=True)),
        sink=sink,
        run=env.get(RUN, "").strip(),
        content_type=env.get(CONTENT_TYPE, "").strip(),
    )


def parse_sink(text: str) -> SinkSpec:
    """``console``, ``file:/abs/path`` or an ``http(s)://`` URL."""
    if text == "console":
        return SinkSpec()
    if text.startswith("file:"):
        path = text[len("file:") :]
        if not path.startswith("/"):
            raise ConfigError(f"{SINK}: {text!r}: the file path must be absolute")
        return SinkSpec(SinkKind.FILE, path)
    if text.startswith(("http://", "https://")):
        if not urlsplit(text).hostname:
            raise ConfigError(f"{SINK}: {text!r} names no host")
        return SinkSpec(SinkKind.HTTP, text)
    raise ConfigError(f"{SINK}: {text!r} is not console, file:/path or an http(s):// URL")


def resolve_device(config: OperatorConfig, claimed: Resources, declared: Mapping[str, str]) -> str:
    """The handle a source reads (``sim:sine``, ``file:/path``, ``cmd:...``).

    ``EDGERM_DF_DEVICE`` names a device resource: its handle comes from the
    task's claim, else from the agent's declarations. A value that cannot be
    a resource name (it holds a ``:``) is taken as the handle itself.
    """
    name = config.device
    if name in claimed.devices:
        return claimed.devices[name].handle
    if name in declared:
        return declared[name]
    if not _RESOURCE_NAME.fullmatch(name):
        return name
    raise ConfigError(f"{DEVICE}: the task claims no device {name!r} and this agent declares none")


# -- helpers -----------------------------------------------------------------------


def _required(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "").strip()
    if not value:
        raise ConfigError(f"{key}: missing")
    return value


def _name(env: Mapping[str, str], key: str) -> str:
    value = _required(env, key)
    if not _NAME.fullmatch(value):
        raise ConfigError(f"{key}: {value!r} may hold only letters, digits, '_', '.' and '-'")
    return value


def _topic(topic: str, key: str) -> str:
    if not topic or any(c in topic for c in "+# ") or topic.startswith("/"):
        raise ConfigError(f"{key}: {topic!r} is not a topic name (no wildcards, spaces or leading '/')")
    return topic


def _replica(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ConfigError(f"{REPLICA}: {text!r} is not i/n") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise ConfigError(f"{REPLICA}: {text!r}: need 0 <= i < n")
    return i, n


def _number(env: Mapping[str, str], key: str, default: float, *, minimum: float, whole: bool = False) -> float:
    text = env.get(key, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not a number") from None
    if not value >= minimum or value != value or value == float("inf"):
        raise ConfigError(f"{key}: {text!r} must be at least {minimum:g}")
    if whole and value != int(value):
        raise ConfigError(f"{key}: {text!r} must be a whole number")
    return value
