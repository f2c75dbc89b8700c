"""What this agent is: its measured capacity, its attributes, its lasting id.

- :func:`measure` samples the machine with psutil's non-blocking calls
  (never ``cpu_percent(interval=...)``): usable cores, total memory, free
  disk under the work dir. About 0.2 ms; the service still calls it from a
  thread because a disk query on a stuck mount can hang.
- :func:`capacity` caps the measurement by the config: a cap only ever lowers
  a value (docs/resources.md). Devices and ``ports`` come from the config.
- :func:`build_agent_info` adds the attributes: ``os``, ``arch``,
  ``executors`` (a set, as the service found them available), and the
  user's labels (``domain`` among them).
- :func:`load_agent_id` keeps the id in ``work_dir/agent_id`` so a
  restarted agent re-registers as itself.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.errors import ConfigError
from edgerm.ids import AgentId
from edgerm.model import AgentInfo, AttrValue
from edgerm.resources import Device, Resources

log = logging.getLogger(__name__)

MIB = 1024 * 1024
AGENT_ID_FILE = "agent_id"
_AGENT_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One sample of the machine: cores, memory and free disk (MiB)."""

    cpus: float
    mem: float
    disk: float


def measure(work_dir: Path) -> Measurement:
    """Sample usable cores, total memory and free disk of ``work_dir``."""
    try:
        cores = len(os.sched_getaffinity(0))  # honours taskset and cpusets
    except AttributeError:  # not on Linux
        cores = psutil.cpu_count(logical=True) or 1
    mem = psutil.virtual_memory().total // MIB
    disk = psutil.disk_usage(str(work_dir)).free // MIB
    return Measurement(cpus=float(cores), mem=float(mem), disk=float(disk))


def capacity(measured: Measurement, caps: ResourceCaps) -> Resources:
    """The measurement lowered by the config's caps, plus configured ``ports``."""
    scalars: dict[str, float] = {}
    for name, have, cap in (
        ("cpus", measured.cpus, caps.cpus),
        ("mem", measured.mem, caps.mem),
        ("disk", measured.disk, caps.disk),
    ):
        if cap is not None and cap > have:
            log.warning("resources.%s: configured %g is above the measured %g; offering %g", name, cap, have, have)
        scalars[name] = have if cap is None else min(have, cap)
    ranges = {"ports": caps.ports} if caps.ports else {}
    return Resources(scalars=scalars, ranges=ranges)


def build_agent_info(
    agent_id: AgentId,
    config: AgentConfig,
    measured: Measurement,
    executors: frozenset[str],
) -> AgentInfo:
    """The ``AgentInfo`` this agent registers with."""
    devices = {d.name: Device(d.handle, d.shared) for d in config.devices}
    resources = capacity(measured, config.resources) + Resources(devices=devices)
    attributes: dict[str, AttrValue] = dict(config.attributes)
    attributes["os"] = platform.system().lower() or "unknown"
    attributes["arch"] = platform.machine() or "unknown"
    attributes["executors"] = executors
    return AgentInfo(
        id=agent_id,
        hostname=config.name or socket.gethostname(),
        resources=resources,
        attributes=attributes,
        heartbeat_interval=config.heartbeat_interval,
    )


def load_agent_id(work_dir: Path) -> AgentId:
    """The id kept in ``work_dir/agent_id``; created (uuid4 hex) on first start."""
    path = work_dir / AGENT_ID_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the agent id: {e}") from None
    if text:
        if not _AGENT_ID.fullmatch(text):
            raise ConfigError(f"{path}: {text[:40]!r} is not a valid agent id; delete the file to get a new one")
        return AgentId(text)
    agent_id = uuid.uuid4().hex
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{AGENT_ID_FILE}.{os.getpid()}")
    tmp.write_text(agent_id + "\n", encoding="ascii")
    os.replace(tmp, path)  # atomic: a crash never leaves half an id
    return AgentId(agent_id)
