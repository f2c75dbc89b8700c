"""The agent's configuration: a YAML file, checked strictly, then flags on top.

``load_config(path)`` reads the file documented in docs/agent-config.md (a
commented example is examples/agent.yaml) into an :class:`AgentConfig`.
Rules:

- Every key is known and every value has the right type; anything else
  raises :class:`~edgerm.errors.ConfigError` whose message starts with the
  key path, e.g. ``devices[1].handle: expected a string``.
- Capacity caps (``resources``) only ever lower what the agent measures
  (edgerm.agent.resources); they never raise it.
- Precedence for the master URL: ``--master`` flag > ``EDGERM_MASTER`` >
  config ``master`` > :data:`DEFAULT_MASTER` (:func:`resolve_master`). Other
  flags (``--work-dir``, ``--name``) replace the config value they name.
- Devices reuse :class:`~edgerm.agent.devices.DeviceDeclaration`, so the
  Docker runtime reads exactly what was validated here.

No I/O beyond reading the file; no asyncio.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from edgerm.agent.devices import DeviceDeclaration
from edgerm.errors import ConfigError
from edgerm.resources import Range

DEFAULT_MASTER = "http://127.0.0.1:5050"
MASTER_ENV = "EDGERM_MASTER"
KNOWN_EXECUTORS = frozenset({"wasm", "docker"})
#: Attributes the agent sets itself; user labels may not override them.
RESERVED_ATTRIBUTES = frozenset({"os", "arch", "executors"})
#: URL schemes a master may be reached by (a transport must exist for each).
MASTER_SCHEMES = frozenset({"http", "https", "coap", "coap+tcp"})

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_PORT_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


@dataclass(frozen=True, slots=True)
class ResourceCaps:
    """Upper bounds on what the agent offers; ``None`` means "as measured"."""

    cpus: float | None = None
    mem: float | None = None  # MiB
    disk: float | None = None  # MiB
    ports: tuple[Range, ...] = ()  # offered as the ``ports`` resource; not measured


@dataclass(frozen=True, slots=True)
class WasmLimits:
    """Defaults for WebAssembly tasks that do not state their own."""

    time_limit: float = 60.0  # seconds of wall clock
    memory: float = 64.0  # MiB of linear memory for a task without a ``mem`` resource
    threads: int = 32  # tasks running at once; more wait (still STARTING)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything the agent reads from its config file (all keys optional)."""

    name: str = ""  # hostname to advertise; empty: socket.gethostname()
    master: str = ""  # empty: EDGERM_MASTER or DEFAULT_MASTER
    work_dir: Path | None = None  # None: default_work_dir()
    heartbeat_interval: float = 1.0
    resources: ResourceCaps = ResourceCaps()
    attributes: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[DeviceDeclaration, ...] = ()
    executors: frozenset[str] | None = None  # None: every runtime that is available
    wasm: WasmLimits = WasmLimits()
    max_pending_updates: int = 8192  # status updates kept for the master at most (2 per held task)

    def with_overrides(
        self, *, master: str | None = None, work_dir: Path | None = None, name: str | None = None
    ) -> AgentConfig:
        """This config with command-line flags applied (a ``None`` flag changes nothing)."""
        out = self
        if master is not None:
            out = replace(out, master=_check_master("--master", master))
        if work_dir is not None:
            out = replace(out, work_dir=work_dir)
        if name is not None:
            out = replace(out, name=name)
        return out


def load_config(path: Path) -> AgentConfig:
    """Read and validate a YAML config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        return parse_config({} if data is None else data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_config(data: object) -> AgentConfig:
    """Validate an already-parsed YAML document."""
    top = _mapping("(top level)", data)
    _no_unknown(
        "",
        top,
        {
            "name",
            "master",
            "work_dir",
            "heartbeat_interval",
            "resources",
            "attributes",
            "devices",
            "executors",
            "wasm",
            "max_pending_updates",
        },
    )
    config = AgentConfig()
    if "name" in top:
        config = replace(config, name=_string("name", top["name"]))
    if "master" in top:
        config = replace(config, master=_check_master("master", _string("master", top["master"])))
    if "work_dir" in top:
        config = replace(config, work_dir=Path(_string("work_dir", top["work_dir"])).expanduser())
    if "heartbeat_interval" in top:
        config = replace(config, heartbeat_interval=_positive("heartbeat_interval", top["heartbeat_interval"]))
    if "resources" in top:
        config = replace(config, resources=_caps(top["resources"]))
    if "attributes" in top:
        config = replace(config, attributes=_attributes(top["attributes"]))
    if "devices" in top:
        config = replace(config, devices=_devices(top["devices"]))
    if "executors" in top:
        config = replace(config, executors=_executors(top["executors"]))
    if "wasm" in top:
        config = replace(config, wasm=_wasm(top["wasm"]))
    if "max_pending_updates" in top:
        pending = top["max_pending_updates"]
        if not isinstance(pending, int) or isinstance(pending, bool) or not 2 <= pending <= 1_000_000:
            raise ConfigError("max_pending_updates: expected a whole number from 2 to 1000000")
        config = replace(config, max_pending_updates=pending)
    return config


def resolve_master(flag: str | None, env: Mapping[str, str], config: AgentConfig) -> str:
    """The master URL: flag, then ``EDGERM_MASTER``, then the config, then the default."""
    if flag:
        return _check_master("--master", flag)
    if env.get(MASTER_ENV):
        return _check_master(MASTER_ENV, env[MASTER_ENV])
    return config.master or DEFAULT_MASTER


def default_work_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/edgerm-agent``, else ``~/.local/state/edgerm-agent``."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgerm-agent"


# -- sections ---------------------------------------------------------------------


def _caps(data: object) -> ResourceCaps:
    section = _mapping("resources", data)
    _no_unknown("resources", section, {"cpus", "mem", "disk", "ports"})
    return ResourceCaps(
        cpus=_positive("resources.cpus", section["cpus"]) if "cpus" in section else None,
        mem=_positive("resources.mem", section["mem"]) if "mem" in section else None,
        disk=_positive("resources.disk", section["disk"]) if "disk" in section else None,
        ports=_ports(section["ports"]) if "ports" in section else (),
    )


def _ports(data: object) -> tuple[Range, ...]:
    items = _list("resources.ports", data)
    out: list[Range] = []
    for i, item in enumerate(items):
        where = f"resources.ports[{i}]"
        if isinstance(item, int) and not isinstance(item, bool):
            begin = end = item
        elif isinstance(item, str) and (m := _PORT_RANGE.fullmatch(item)):
            begin = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else begin
        else:
            raise ConfigError(f"{where}: expected a port or a range like '8000-8100'")
        if not 0 < begin <= end < 65536:
            raise ConfigError(f"{where}: expected ports between 1 and 65535, lowest first")
        out.append(Range(begin, end))
    return tuple(out)


def _attributes(data: object) -> dict[str, str]:
    section = _mapping("attributes", data)
    out: dict[str, str] = {}
    for key, value in section.items():
        where = f"attributes.{key}"
        if not _LABEL.fullmatch(key):
            raise ConfigError(f"{where}: not a valid attribute name")
        if key in RESERVED_ATTRIBUTES:
            raise ConfigError(f"{where}: set by the agent itself, cannot be configured")
        out[key] = _string(where, value, hint=" (quote numbers)")
    return out


def _devices(data: object) -> tuple[DeviceDeclaration, ...]:
    items = _list("devices", data)
    out: list[DeviceDeclaration] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"devices[{i}]"
        entry = _mapping(where, item)
        _no_unknown(where, entry, {"name", "handle", "shared", "docker_devices", "volumes", "env"})
        if "name" not in entry:
            raise ConfigError(f"{where}.name: required")
        name = _string(f"{where}.name", entry["name"])
        if name in seen:
            raise ConfigError(f"{where}.name: device {name!r} declared twice")
        seen.add(name)
        if "handle" not in entry:
            raise ConfigError(f"{where}.handle: required")
        _string(f"{where}.handle", entry["handle"])
        if "shared" in entry:
            _bool(f"{where}.shared", entry["shared"])
        for key in ("docker_devices", "volumes"):
            if key in entry:
                _list(f"{where}.{key}", entry[key])
        if "env" in entry:
            env = _mapping(f"{where}.env", entry["env"])
            for k, v in env.items():
                _string(f"{where}.env.{k}", v, hint=" (quote numbers)")
        rest = {k: v for k, v in entry.items() if k != "name"}
        try:
            out.append(DeviceDeclaration.from_mapping(name, rest))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return tuple(out)


def _executors(data: object) -> frozenset[str]:
    items = _list("executors", data)
    out: set[str] = set()
    for i, item in enumerate(items):
        name = _string(f"executors[{i}]", item)
        if name not in KNOWN_EXECUTORS:
            raise ConfigError(
                f"executors[{i}]: unknown executor {name!r} (known: {', '.join(sorted(KNOWN_EXECUTORS))})"
            )
        out.add(name)
    return frozenset(out)


def _wasm(data: object) -> WasmLimits:
    section = _mapping("wasm", data)
    _no_unknown("wasm", section, {"time_limit", "memory", "threads"})
    limits = WasmLimits()
    if "time_limit" in section:
        limits = replace(limits, time_limit=_positive("wasm.time_limit", section["time_limit"]))
    if "memory" in section:
        limits = replace(limits, memory=_positive("wasm.memory", section["memory"]))
    if "threads" in section:
        threads = section["threads"]
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError("wasm.threads: expected a whole number >= 1")
        limits = replace(limits, threads=threads)
    return limits


# -- value checks -----------------------------------------------------------------


def _check_master(where: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in MASTER_SCHEMES or not parts.hostname:
        raise ConfigError(f"{where}: expected a URL like {DEFAULT_MASTER}, got {url!r}")
    return url.rstrip("/")


def _mapping(where: str, value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: key {key!r} is not a string")
    return value


def _list(where: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list")
    return value


def _no_unknown(where: str, section: Mapping[str, object], known: set[str]) -> None:
    for key in section:
        if key not in known:
            path = f"{where}.{key}" if where else key
            raise ConfigError(f"{path}: unknown key (known: {', '.join(sorted(known))})")


def _string(where: str, value: object, hint: str = "") -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string{hint}")
    return value


def _bool(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    return value


def _positive(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{where}: expected a number > 0")
    return float(value)
