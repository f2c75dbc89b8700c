"""Device declarations from the agent config, and what a task that claims them gets.

An agent's config declares its devices (a sensor, a camera, a GPU). Each
declaration names the device resource the agent advertises (``name`` and
``handle``, consumed whole unless ``shared``) and what a Docker task that
claims it receives: host device nodes, bind-mounted volumes and environment
variables. Rules:

- Only a task whose resources claim a device by name gets anything of it
  (docs/resources.md). :func:`grants_for` computes that, purely.
- A claimed device always sets ``EDGERM_DEVICE_<NAME>=<handle>`` in the
  task's environment, so the task learns the handle even when the
  declaration adds nothing else (a simulated sensor, say).
- A claim whose handle differs from the declaration's is refused
  (:class:`DeviceMismatch`): the task was placed against another idea of
  this agent than the one it has.
- :meth:`DeviceDeclaration.from_mapping` parses the config form and raises
  :class:`~edgerm.errors.ConfigError` naming the bad field.

Pure: no I/O, importable by the agent's core and config code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgerm.errors import ConfigError, RuntimeFailure
from edgerm.resources import Device, Resources

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")  # as in edgerm.resources
_PERMISSIONS = re.compile(r"r?w?m?")
_VOLUME_MODES = ("rw", "ro")


@dataclass(frozen=True, slots=True)
class DeviceNode:
    """A host device node passed into the container (``docker run --device``)."""

    host_path: str
    container_path: str = ""  # empty: the same path as on the host
    permissions: str = "rwm"  # cgroup permissions: any of r, w, m in that order

    def __post_init__(self) -> None:
        if not self.host_path.startswith("/"):
            raise ConfigError(f"device node {self.host_path!r}: host path must be absolute")
        if self.container_path and not self.container_path.startswith("/"):
            raise ConfigError(f"device node {self.container_path!r}: container path must be absolute")
        if not self.permissions or not _PERMISSIONS.fullmatch(self.permissions):
            raise ConfigError(f"device node {self.host_path!r}: permissions {self.permissions!r} not in 'rwm'")

    @property
    def target(self) -> str:
        return self.container_path or self.host_path

    def docker_form(self) -> str:
        """``host:container:permissions``, as the Docker API takes it."""
        return f"{self.host_path}:{self.target}:{self.permissions}"


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """A host path bind-mounted into the container."""

    host_path: str
    container_path: str
    mode: str = "rw"  # "rw" or "ro"

    def __post_init__(self) -> None:
        if not self.host_path.startswith("/") or not self.container_path.startswith("/"):
            raise ConfigError(f"volume {self.host_path!r}:{self.container_path!r}: paths must be absolute")
        if self.mode not in _VOLUME_MODES:
            raise ConfigError(f"volume {self.host_path!r}: mode {self.mode!r} is not 'rw' or 'ro'")


@dataclass(frozen=True, slots=True)
class DeviceDeclaration:
    """One device of the agent config: its resource, and what a claiming task gets."""

    name: str
    handle: str
    shared: bool = False
    docker_devices: tuple[DeviceNode, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"device {self.name!r}: not a valid resource name")
        if not self.handle:
            raise ConfigError(f"device {self.name!r}: handle is empty")
        object.__setattr__(self, "env", dict(self.env))

    @property
    def device(self) -> Device:
        return Device(self.handle, self.shared)

    def resources(self) -> Resources:
        """The device as a resource the agent advertises."""
        return Resources(devices={self.name: self.device})

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, object]) -> DeviceDeclaration:
        """Parse the config form of one device::

        camera:
          handle: /dev/video0
          shared: false
          docker_devices: ["/dev/video0:/dev/video0:rw"]   # or {host, container, permissions}
          volumes: ["/var/lib/cam:/data:ro"]               # or {host, container, mode}
          env: {CAMERA_FPS: "15"}
        """
        where = f"device {name!r}"
        known = {"handle", "shared", "docker_devices", "volumes", "env"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
        handle = data.get("handle")
        if not isinstance(handle, str):
            raise ConfigError(f"{where}: 'handle' must be a string")
        shared = data.get("shared", False)
        if not isinstance(shared, bool):
            raise ConfigError(f"{where}: 'shared' must be true or false")
        env = data.get("env", {})
        if not isinstance(env, Mapping) or not all(isinstance(k, str) for k in env):
            raise ConfigError(f"{where}: 'env' must map names to values")
        return cls(
            name=name,
            handle=handle,
            shared=shared,
            docker_devices=tuple(_node(where, item) for item in _items(where, data, "docker_devices")),
            volumes=tuple(_volume(where, item) for item in _items(where, data, "volumes")),
            env={str(k): str(v) for k, v in env.items()},
        )


class DeviceMismatch(RuntimeFailure):
    """A task claims a device with another handle than this agent declares."""


@dataclass(frozen=True, slots=True)
class DeviceGrants:
    """What the claimed devices give one task."""

    nodes: tuple[DeviceNode, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


NO_GRANTS = DeviceGrants()


def env_name(device: str) -> str:
    """``EDGERM_DEVICE_<NAME>``: the variable that carries a claimed device's handle."""
    return "EDGERM_DEVICE_" + re.sub(r"[^A-Z0-9]", "_", device.upper())


def grants_for(claimed: Resources, declared: Iterable[DeviceDeclaration]) -> DeviceGrants:
    """What a task claiming ``claimed.devices`` gets; nothing of unclaimed devices.

    Raises :class:`DeviceMismatch` when a claimed handle differs from the
    declared one.
    """
    if not claimed.devices:
        return NO_GRANTS
    by_name = {d.name: d for d in declared}
    nodes: list[DeviceNode] = []
    volumes: list[VolumeMount] = []
    env: dict[str, str] = {}
    for name, device in sorted(claimed.devices.items()):
        env[env_name(name)] = device.handle
        decl = by_name.get(name)
        if decl is None:
            continue
        if decl.handle != device.handle:
            raise DeviceMismatch(f"device {name!r}: task claims handle {device.handle!r}, agent has {decl.handle!r}")
        nodes.extend(decl.docker_devices)
        volumes.extend(decl.volumes)
        env.update(decl.env)
    return DeviceGrants(tuple(nodes), tuple(volumes), env)


def _items(where: str, data: Mapping[str, object], key: str) -> list[object]:
    value = data.get(key, [])
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: '{key}' must be a list")
    return list(value)


def _node(where: str, item: object) -> DeviceNode:
    if isinstance(item, str):
        parts = item.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ConfigError(f"{where}: device node {item!r} is not host[:container[:permissions]]")
        return DeviceNode(parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "rwm")
    if isinstance(item, Mapping):
        host, container, perms = item.get("host"), item.get("container", ""), item.get("permissions", "rwm")
        if isinstance(host, str) and isinstance(container, str) and isinstance(perms, str):
            return DeviceNode(host, container, perms)
    raise ConfigError(f"{where}: device node {item!r} is not host[:container[:permissions]] or a mapping")


def _volume(where: str, item: object) -> VolumeMount:
    if isinstance(item, str):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{where}: volume {item!r} is not host:container[:mode]")
        return VolumeMount(parts[0], parts[1], parts[2] if len(parts) == 3 else "rw")
    if isinstance(item, Mapping):
        host, container, mode = item.get("host"), item.get("container"), item.get("mode", "rw")
        if isinstance(host, str) and isinstance(container, str) and isinstance(mode, str):
            return VolumeMount(host, container, mode)
    raise ConfigError(f"{where}: volume {item!r} is not host:container[:mode] or a mapping")
