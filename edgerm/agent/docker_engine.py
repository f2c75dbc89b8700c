"""The blocking boundary to the Docker engine: docker SDK calls, mapped to plain data and typed errors.

:class:`DockerEngine` is the only place edgerm touches the docker SDK. Every
method blocks (the SDK is synchronous), so the runtime calls them from
threads, never from the event loop. Rules:

- SDK and transport exceptions never leave this module: they become
  :class:`EngineError` subclasses (the boundary rule of STYLE.md).
- Answers are frozen dataclasses (:class:`ContainerState`,
  :class:`EngineEvent`), never SDK objects.
- The SDK is imported on first use: importing it costs ~0.15 s, and an
  agent without Docker should not pay that.
- One client per engine, created lazily under a lock; the SDK's connection
  pool is safe to share between threads.

Error tree (all :class:`~edgerm.errors.RuntimeFailure`)::

    EngineError             the engine refused or failed a request
    ├── EngineUnavailable   no engine answers (socket missing, daemon down)
    ├── ImageUnavailable    the image is absent and cannot be pulled
    ├── ContainerGone       no such container (or other object)
    └── ContainerExists     a container of that name exists (``container_id``)
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from edgerm.agent.docker_spec import LABEL_AGENT, LABEL_TASK, ContainerSpec, tail_text
from edgerm.errors import RuntimeFailure
from edgerm.ids import AgentId, TaskId
from edgerm.model import PullPolicy

log = logging.getLogger(__name__)

#: Container states in which the task's process may still run.
LIVE_STATUSES = frozenset({"running", "paused", "restarting"})
#: The events the runtime follows.
WATCHED_ACTIONS = ("start", "die", "oom")


class EngineError(RuntimeFailure):
    """The Docker engine refused or failed a request."""


class EngineUnavailable(EngineError):
    """No Docker engine answers."""


class ImageUnavailable(EngineError):
    """The image is not present and could not be pulled."""


class ContainerGone(EngineError):
    """The container does not exist (any more)."""


class ContainerExists(EngineError):
    """A container with the requested name already exists."""

    def __init__(self, message: str, container_id: str) -> None:
        super().__init__(message)
        self.container_id = container_id


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What ``docker inspect`` says of one container."""

    container_id: str
    name: str
    labels: Mapping[str, str]
    status: str  # created, running, paused, restarting, removing, exited, dead
    exit_code: int
    oom_killed: bool

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def task_id(self) -> TaskId:
        return TaskId(self.labels.get(LABEL_TASK, ""))


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One container event of the engine's events stream."""

    action: str  # start, die or oom
    container_id: str
    task_id: TaskId
    exit_code: int | None  # set on die
    time_nano: int


class Events(Protocol):
    """An open events subscription: iterate it in one thread, ``close()`` it from any."""

    def __iter__(self) -> Iterator[EngineEvent]: ...

    def close(self) -> None: ...


#: Called with each event of an image pull (the engine's JSON objects), from the pulling thread.
PullCallback = Callable[[Mapping[str, object]], None]


class Engine(Protocol):
    """What the runtime needs of a Docker engine; :class:`DockerEngine` is the real one.

    Every method blocks and is called from a thread. Errors are
    :class:`EngineError` subclasses only.
    """

    def ping(self) -> bool: ...

    def close(self) -> None: ...

    def ensure_image(self, image: str, policy: PullPolicy, progress: PullCallback | None = None) -> None:
        """Have ``image`` as ``policy`` says; a pull passes each of its events to ``progress``."""
        ...

    def create_and_start(self, spec: ContainerSpec) -> str: ...

    def inspect(self, container_id: str) -> ContainerState: ...

    def signal(self, container_id: str, sig: str) -> bool: ...

    def logs_tail(self, container_id: str, lines: int) -> str: ...

    def logs(self, container_id: str, stream: str) -> bytes:
        """The whole of a container's ``stream`` (stdout or stderr) so far."""
        ...

    def remove(self, container_id: str) -> None: ...

    def list_labelled(self, agent_id: AgentId) -> list[ContainerState]: ...

    def remove_labelled(self, agent_id: AgentId) -> int: ...

    def events(self, agent_id: AgentId, since_nano: int | None = None) -> Events: ...


def _sdk() -> ModuleType:
    return importlib.import_module("docker")


def _connect(docker: ModuleType, base_url: str | None, timeout: float) -> Any:
    """A client of the engine at ``base_url`` (None: as ``$DOCKER_HOST`` says); EngineUnavailable when
    it does not answer.

    The SDK leaks the socket of a failed connect to a Unix socket (an unclosed socket per attempt: a
    ResourceWarning, and a file descriptor an agent retrying for days would run out of), so a Unix
    socket is tried here first, with a socket closed whatever happens.
    """
    url = base_url or os.environ.get("DOCKER_HOST") or docker.constants.DEFAULT_UNIX_SOCKET
    if url.startswith(("unix://", "http+unix://")):
        path = url.split("://", 1)[1]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(path)
        except OSError as e:
            raise EngineUnavailable(f"docker engine unavailable: {path}: {e.strerror or e}") from None
    try:
        if base_url is None:
            return docker.from_env(timeout=timeout)
        return docker.DockerClient(base_url=base_url, timeout=timeout)
    except docker.errors.DockerException as e:
        raise EngineUnavailable(f"docker engine unavailable: {e}") from None


class EventStream:
    """An open events subscription; iterate it in a thread, ``close()`` it from any thread."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[EngineEvent]:
        requests_exc = importlib.import_module("requests.exceptions")
        urllib3_exc = importlib.import_module("urllib3.exceptions")
        ended = (OSError, ValueError, requests_exc.RequestException, urllib3_exc.HTTPError)
        while True:
            try:
                raw = next(self._stream)
            except StopIteration:
                return
            except ended as e:  # the connection dropped or was closed under us
                log.debug("docker events stream ended: %s", e)
                return
            event = _event(raw)
            if event is not None:
                yield event

    def close(self) -> None:
        try:
            self._stream.close()
        except OSError as e:  # already closed by the other side
            log.debug("closing docker events stream: %s", e)


def _event(raw: object) -> EngineEvent | None:
    if not isinstance(raw, dict) or raw.get("Type") != "container":
        return None
    action = str(raw.get("Action", ""))
    actor = raw.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    if action not in WATCHED_ACTIONS or LABEL_TASK not in attrs:
        return None
    code = attrs.get("exitCode")
    return EngineEvent(
        action=action,
        container_id=str(actor.get("ID", "")),
        task_id=TaskId(attrs[LABEL_TASK]),
        exit_code=int(code) if code is not None and str(code).lstrip("-").isdigit() else None,
        time_nano=int(raw.get("timeNano", 0)),
    )


class DockerEngine:
    """Blocking calls to one Docker engine. Call every method from a thread."""

    def __init__(self, base_url: str | None = None, *, timeout: float = 30.0) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _connect(_sdk(), self._base_url, self._timeout)
            return self._client

    def ping(self) -> bool:
        """True when the engine answers."""
        try:
            with _mapped("ping"):
                return bool(self._get_client().ping())
        except EngineError as e:
            log.info("docker engine does not answer: %s", e)
            return False

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- images -------------------------------------------------------------

    def ensure_image(self, image: str, policy: PullPolicy, progress: PullCallback | None = None) -> None:
        """Make ``image`` present as ``policy`` says; raise :class:`ImageUnavailable` if it cannot be.

        The pull streams its events (``api.pull(stream=True, decode=True)``)
        to ``progress``; an ``error`` event fails the pull.
        """
        client = self._get_client()
        if policy is not PullPolicy.ALWAYS:
            try:
                with _mapped(f"image {image}"):
                    client.images.get(image)
                return
            except ImageUnavailable:
                if policy is PullPolicy.NEVER:
                    raise ImageUnavailable(f"image {image!r} is not present and pull_policy is never") from None
        repository, tag = _split_image(image)
        try:
            with _mapped(f"pulling {image}"):
                for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
                    if not isinstance(event, Mapping):
                        continue
                    if "error" in event:
                        raise EngineError(str(event["error"]))
                    if progress is not None:
                        progress(event)
        except EngineUnavailable:
            raise
        except EngineError as e:
            raise ImageUnavailable(f"image {image!r} is not present and could not be pulled ({e})") from None

    # -- containers ---------------------------------------------------------

    def create_and_start(self, spec: ContainerSpec) -> str:
        """Create and start the task's container; return its id.

        Two engine calls (create, start), nothing more: this is the launch
        path. Raises :class:`ImageUnavailable` when the image is not present
        (no pull here) and :class:`ContainerExists` when the task's container
        already exists. A container left by a failed start is removed at
        once: it holds nothing worth keeping and would confuse recovery.
        """
        api = self._get_client().api
        try:
            with _mapped("creating container", conflict=True):
                host_config = api.create_host_config(**spec.host_config_kwargs())
                created = api.create_container(host_config=host_config, **spec.create_container_kwargs())
        except _Conflict as e:
            raise ContainerExists(str(e), self._id_of(spec.name)) from None
        container_id = str(created["Id"])
        try:
            with _mapped("starting container"):
                api.start(container_id)
        except EngineError:
            self.remove(container_id)
            raise
        return container_id

    def _id_of(self, name: str) -> str:
        with _mapped(f"container {name}"):
            return str(self._get_client().api.inspect_container(name)["Id"])

    def inspect(self, container_id: str) -> ContainerState:
        with _mapped(f"container {container_id[:12]}"):
            attrs = self._get_client().api.inspect_container(container_id)
        return _state(attrs)

    def signal(self, container_id: str, sig: str) -> bool:
        """Send ``sig``; False when the container is not running (any more)."""
        try:
            with _mapped(f"signalling {container_id[:12]}"):
                self._get_client().api.kill(container_id, signal=sig)
        except ContainerGone:
            return False
        except EngineError as e:
            if "is not running" in str(e):
                return False
            raise
        return True

    def logs(self, container_id: str, stream: str) -> bytes:
        """The whole of a container's stdout or stderr so far (for a task's logs through the master)."""
        out = stream == "stdout"
        with _mapped(f"logs of {container_id[:12]}"):
            raw = self._get_client().api.logs(container_id, stdout=out, stderr=not out, stream=False)
        return raw if isinstance(raw, bytes) else str(raw).encode()

    def logs_tail(self, container_id: str, lines: int) -> str:
        """The last ``lines`` lines of stdout and stderr."""
        with _mapped(f"logs of {container_id[:12]}"):
            raw = self._get_client().api.logs(container_id, stdout=True, stderr=True, tail=lines)
        return tail_text(raw if isinstance(raw, bytes) else b"", lines)

    def remove(self, container_id: str) -> None:
        """Remove the container, killing it if it runs; a missing one is fine."""
        try:
            with _mapped(f"removing {container_id[:12]}"):
                self._get_client().api.remove_container(container_id, force=True)
        except ContainerGone:
            return
        except EngineError as e:
            if "already in progress" in str(e):
                return
            raise

    def list_labelled(self, agent_id: AgentId) -> list[ContainerState]:
        """Every container (running or not) labelled as this agent's."""
        with _mapped("listing containers"):
            client = self._get_client()
            found = client.api.containers(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
            out = []
            for summary in found:
                try:
                    out.append(_state(client.api.inspect_container(summary["Id"])))
                except _sdk().errors.NotFound:
                    continue  # removed between list and inspect
        return out

    def remove_labelled(self, agent_id: AgentId) -> int:
        """Remove (killing first) every container of this agent; return how many."""
        with _mapped("listing containers"):
            found = self._get_client().api.containers(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
        for summary in found:
            self.remove(str(summary["Id"]))
        return len(found)

    def events(self, agent_id: AgentId, since_nano: int | None = None) -> EventStream:
        """Subscribe to this agent's container events (replayed from ``since_nano`` if given).

        Returns once the engine has accepted the subscription, so no event
        after this call is missed.
        """
        filters = {"type": ["container"], "event": list(WATCHED_ACTIONS), "label": [f"{LABEL_AGENT}={agent_id}"]}
        since = None if since_nano is None else f"{since_nano // 10**9}.{since_nano % 10**9:09d}"
        with _mapped("subscribing to events"):
            stream = self._get_client().events(decode=True, filters=filters, since=since)
        return EventStream(stream)


class _Conflict(EngineError):
    """A 409 from the engine, when the caller asked to see it apart."""


@contextmanager
def _mapped(what: str, *, conflict: bool = False) -> Iterator[None]:
    """Turn SDK and transport exceptions raised inside into :class:`EngineError`."""
    docker = _sdk()
    requests_exc = importlib.import_module("requests.exceptions")
    try:
        yield
    except docker.errors.ImageNotFound as e:
        raise ImageUnavailable(f"{what}: {_explain(e)}") from None
    except docker.errors.NotFound as e:
        raise ContainerGone(f"{what}: {_explain(e)}") from None
    except docker.errors.APIError as e:
        if conflict and e.status_code == 409:
            raise _Conflict(f"{what}: {_explain(e)}") from None
        raise EngineError(f"{what}: {_explain(e)}") from None
    except (docker.errors.DockerException, requests_exc.RequestException, ConnectionError) as e:
        raise EngineUnavailable(f"{what}: {e}") from None


def _explain(e: BaseException) -> str:
    explanation = getattr(e, "explanation", None)
    return str(explanation) if explanation else str(e)


def _split_image(image: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` into repository and tag (None: ``latest``)."""
    if "@" in image:
        return image, None
    repo, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return image, "latest"


def _state(attrs: Mapping[str, Any]) -> ContainerState:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    return ContainerState(
        container_id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        status=str(state.get("Status", "")),
        exit_code=int(state.get("ExitCode", 0) or 0),
        oom_killed=bool(state.get("OOMKilled", False)),
    )
