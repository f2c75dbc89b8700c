"""DockerRuntime: Docker tasks behind the agent's ``Runtime`` protocol.

Pipeline of one task::

    launch ─ grants_for, build_spec (pure) ─ create_and_start ──────────────► TaskStarted
                                    └ image missing: ensure_image (pull policy), create again
    events thread: engine events stream ─► loop ─ start / oom / die ─► TaskEnded
    kill ─ SIGTERM ─ grace ─ SIGKILL ─ die ─► TaskEnded(KILLED)
    recover ─ list labelled containers ─► RecoveredTask per container; live ones watched again

Rules:

- Every docker SDK call runs in a thread (``asyncio.to_thread``), never on the
  event loop. The events stream is read by one dedicated thread per runtime
  and handed to the loop with ``call_soon_threadsafe``; task ends are learnt
  from it, never by polling.
- The subscription is open before any container is created or listed, so no
  ``die`` can slip between; if the stream drops, the thread re-subscribes
  (replaying from the last event seen) and the runtime re-inspects every live
  task, since a restarted engine forgets its events.
- Exactly one ``TaskEnded`` per launched task, and ``TaskStarted`` (if any)
  before it. A task's own failure, a missing image or an engine error is a
  ``TaskEnded(FAILED)`` with a reason, never an exception out of ``launch``.
- ``close()`` only stops watching: containers keep running so a restarted
  agent can ``recover()`` them. Killing everything is ``kill_all()``, for an
  agent that leaves for good and for test teardown.
- Containers are found by label (``edgerm.agent`` = this agent's id) and have
  a name derived from agent and task ids, so a task never runs twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

from edgerm.agent.devices import DeviceDeclaration, grants_for
from edgerm.agent.docker_engine import (
    ContainerExists,
    ContainerGone,
    ContainerState,
    DockerEngine,
    Engine,
    EngineError,
    EngineEvent,
    EngineUnavailable,
    ImageUnavailable,
)
from edgerm.agent.docker_events import EventPump
from edgerm.agent.docker_spec import ContainerSpec, Outcome, build_spec, classify_exit, container_name
from edgerm.agent.pull_progress import PullProgress, Throttle
from edgerm.agent.runtime import RecoveredTask, ReportCallback, TaskEnded, TaskProgress, TaskStarted
from edgerm.errors import RuntimeFailure
from edgerm.ids import AgentId, TaskId
from edgerm.messages import MAX_LOG_CHUNK
from edgerm.model import PullPolicy, Reason, TaskInfo, TaskState
from edgerm.promtext import SLOW_BUCKETS, Histogram

log = logging.getLogger(__name__)

#: Seconds between two progress reports of an image pull (a STARTING status each).
PROGRESS_INTERVAL = 1.0


class _Watch:
    """What the runtime knows of one task. Touched only on the event loop."""

    __slots__ = ("container_id", "done", "dying", "ended", "killing", "oom", "ready", "report", "started", "task_id")

    def __init__(self, task_id: TaskId, report: ReportCallback, container_id: str = "") -> None:
        self.task_id = task_id
        self.report = report
        self.container_id = container_id
        self.started = False  # TaskStarted was reported
        self.dying = False  # its end is being read; TaskEnded follows
        self.ended = False  # TaskEnded was reported
        self.killing = False  # kill() was asked for
        self.oom = False  # the engine reported an OOM kill
        self.ready = asyncio.Event()  # launch has created the container or given up
        self.done = asyncio.Event()  # TaskEnded was reported


class DockerRuntime:
    """Runs tasks as Docker containers; see the module docstring for its rules."""

    executor = "docker"

    def __init__(
        self,
        agent_id: AgentId,
        devices: Iterable[DeviceDeclaration] = (),
        *,
        engine: Engine | None = None,
        log_lines: int = 20,
        mount_workdir: bool = True,
        port_host_ip: str = "",
        ping_timeout: float = 5.0,
        settle_timeout: float = 10.0,
    ) -> None:
        """``engine``: the Docker engine to use (default: from the environment, as ``docker`` does).

        ``log_lines``: how many last lines of output a FAILED status carries.
        ``mount_workdir``: bind the task's workdir at ``/edgerm/sandbox``.
        ``port_host_ip``: the host address port mappings bind to (empty: all).
        ``settle_timeout``: how long to wait for the engine to report a
        SIGKILLed container's end before inspecting it instead.
        """
        self._agent_id = agent_id
        self._devices = tuple(devices)
        self._engine: Engine = engine if engine is not None else DockerEngine()
        self._log_lines = log_lines
        self._mount_workdir = mount_workdir
        self._port_host_ip = port_host_ip
        self._ping_timeout = ping_timeout
        self._settle_timeout = settle_timeout
        self._watches: dict[TaskId, _Watch] = {}
        self._pump: EventPump | None = None
        self._pump_lock = asyncio.Lock()
        self._buffer: list[EngineEvent] | None = None  # events held while recover() lists containers
        self._background: set[asyncio.Task[None]] = set()
        #: Time to get a missing (or ``always``) image, by outcome: read by the agent's /metrics.
        self.pull_seconds = Histogram(
            "edgerm_agent_image_pull_seconds", "Time to get a Docker image, by outcome.", ("outcome",), SLOW_BUCKETS
        )

    @property
    def agent_id(self) -> AgentId:
        return self._agent_id

    # -- Runtime protocol ---------------------------------------------------

    async def available(self) -> bool:
        """True when the Docker engine answers a ping within ``ping_timeout``."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._engine.ping), self._ping_timeout)
        except TimeoutError:
            return False

    async def launch(self, task: TaskInfo, workdir: Path, report: ReportCallback) -> None:
        """Start the task's container; a second launch of a known task does nothing."""
        if task.task_id in self._watches:
            log.info("task %s is already known to the docker runtime; launch ignored", task.task_id)
            return
        watch = _Watch(task.task_id, report)
        self._watches[task.task_id] = watch
        try:
            await self._launch(watch, task, workdir)
        finally:
            watch.ready.set()

    async def kill(self, task_id: TaskId, grace: float) -> None:
        """SIGTERM, up to ``grace`` seconds, SIGKILL; returns once the task has ended (or the engine failed)."""
        watch = self._watches.get(task_id)
        if watch is None or watch.ended:
            return
        watch.killing = True
        await watch.ready.wait()
        if watch.ended or not watch.container_id:
            return
        cid = watch.container_id
        try:
            if not watch.dying:
                if not await asyncio.to_thread(self._engine.signal, cid, "SIGTERM" if grace > 0 else "SIGKILL"):
                    watch.killing = False  # it had ended on its own before our signal: report how
                    await self._resync(watch)
                elif grace > 0:
                    try:
                        await asyncio.wait_for(watch.done.wait(), grace)
                        return
                    except TimeoutError:
                        await asyncio.to_thread(self._engine.signal, cid, "SIGKILL")
        except EngineError as e:
            log.warning("killing task %s: %s", task_id, e)
        try:
            await asyncio.wait_for(watch.done.wait(), self._settle_timeout)
        except TimeoutError:
            await self._resync(watch)

    async def recover(self, report: ReportCallback) -> list[RecoveredTask]:
        """Find this agent's labelled containers, report their true states, watch the live ones."""
        self._buffer = []
        found: dict[TaskId, RecoveredTask] = {}
        try:
            await self._ensure_watching()
            states = await asyncio.to_thread(self._engine.list_labelled, self._agent_id)
            for state in states:
                if state.task_id and state.task_id not in self._watches:
                    found[state.task_id] = await self._adopt_recovered(state, report)
            # Events that arrived meanwhile: apply them to what we just found, so
            # the returned states are current and report() is not called for them.
            while self._buffer:
                batch, self._buffer = self._buffer, []
                for event in batch:
                    await self._replay(event, found)
        except EngineError as e:
            log.warning("cannot recover docker tasks: %s", e)
        finally:
            pending, self._buffer = self._buffer or [], None
            for event in pending:
                self._on_event(event)
        return list(found.values())

    async def cleanup(self, task_id: TaskId) -> None:
        """Remove a finished task's container (by name when this runtime never saw the task)."""
        watch = self._watches.get(task_id)
        if watch is not None and not watch.ended:
            log.warning("cleanup of task %s ignored: it has not ended", task_id)
            return
        self._watches.pop(task_id, None)
        target = watch.container_id if watch is not None and watch.container_id else None
        try:
            await asyncio.to_thread(self._engine.remove, target or container_name(self._agent_id, task_id))
        except EngineError as e:
            log.warning("removing the container of task %s: %s", task_id, e)

    async def read_log(self, task_id: TaskId, stream: str, offset: int, limit: int) -> tuple[int, bytes, int] | None:
        """(start, data, size) of a held task's container output; None when this runtime has no container for it."""
        watch = self._watches.get(task_id)
        if watch is None or not watch.container_id:
            return None
        try:
            data = await asyncio.to_thread(self._engine.logs, watch.container_id, stream)
        except ContainerGone:
            return None
        size = len(data)
        start = max(0, size + offset) if offset < 0 else min(offset, size)
        return start, data[start : start + max(0, min(limit, MAX_LOG_CHUNK))], size

    async def close(self) -> None:
        """Stop watching and release the engine connection. Containers keep running (see ``kill_all``)."""
        pump, self._pump = self._pump, None
        if pump is not None:
            await asyncio.to_thread(pump.stop)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._watches.clear()
        await asyncio.to_thread(self._engine.close)

    # -- beyond the protocol ------------------------------------------------

    async def kill_all(self, grace: float = 0.0) -> int:
        """Kill every live task (``grace`` as in ``kill``), then remove every container of this agent.

        Watched tasks report ``TaskEnded(KILLED)``. Returns how many
        containers were removed.
        """
        live = [w for w in self._watches.values() if not w.ended]
        if grace > 0:
            await asyncio.gather(*(self.kill(w.task_id, grace) for w in live))
        for watch in live:
            watch.killing = True
        removed = await asyncio.to_thread(self._engine.remove_labelled, self._agent_id)
        for watch in live:
            if not watch.ended:
                try:
                    await asyncio.wait_for(watch.done.wait(), self._settle_timeout)
                except TimeoutError:
                    await self._resync(watch)
        for task_id in [t for t, w in self._watches.items() if w.ended]:
            del self._watches[task_id]
        return removed

    # -- launching ----------------------------------------------------------

    async def _launch(self, watch: _Watch, task: TaskInfo, workdir: Path) -> None:
        try:
            grants = grants_for(task.resources, self._devices)
            sandbox = _absolute(workdir) if self._mount_workdir else None
            spec = build_spec(self._agent_id, task, grants, sandbox, self._port_host_ip)
        except RuntimeFailure as e:
            self._end(watch, Outcome(TaskState.FAILED, Reason.INVALID_TASK, str(e), 0), ran=False)
            return
        try:
            await self._ensure_watching()
            container_id = await self._create(watch, spec)
            if container_id is None:
                self._end(watch, _killed_before_start(), ran=False)
                return
        except ImageUnavailable as e:
            self._end(watch, Outcome(TaskState.FAILED, Reason.IMAGE_UNAVAILABLE, str(e), 0), ran=False)
            return
        except ContainerExists as e:
            await self._adopt_existing(watch, e.container_id)
            return
        except EngineUnavailable as e:
            self._end(watch, Outcome(TaskState.FAILED, Reason.EXECUTOR_UNAVAILABLE, str(e), 0), ran=False)
            return
        except EngineError as e:
            self._end(watch, Outcome(TaskState.FAILED, Reason.RUNTIME_ERROR, str(e), 0), ran=False)
            return
        watch.container_id = container_id
        self._mark_started(watch)

    async def _create(self, watch: _Watch, spec: ContainerSpec) -> str | None:
        """Create and start the container as the pull policy says; None if killed first.

        ``if-not-present`` and ``never`` go straight to create (one round trip
        less on the launch path) and look at the image only when create says
        it is missing. A leftover container of the task that never started is
        replaced once.
        """
        pulled = spec.pull_policy is PullPolicy.ALWAYS
        if pulled:
            await self._ensure_image(watch, spec)
        replaced = False
        while not watch.killing:
            try:
                return await asyncio.to_thread(self._engine.create_and_start, spec)
            except ImageUnavailable:
                if pulled:
                    raise
                # Pulls, or raises with a clear message (``never``, no registry).
                await self._ensure_image(watch, spec)
                pulled = True
            except ContainerExists as e:
                state = await asyncio.to_thread(self._engine.inspect, e.container_id)
                if replaced or state.status != "created":
                    raise
                await asyncio.to_thread(self._engine.remove, e.container_id)
                replaced = True
        return None

    async def _ensure_image(self, watch: _Watch, spec: ContainerSpec) -> None:
        """Have the image (pulling it as the policy says), timed for ``pull_seconds``.

        While it is pulled, the task reports its progress (layers and bytes)
        as a STARTING message at most every :data:`PROGRESS_INTERVAL` seconds.
        """
        progress, throttle = PullProgress(spec.image), Throttle(PROGRESS_INTERVAL)

        def on_event(event: Mapping[str, object]) -> None:  # in the pulling thread
            progress.feed(event)
            if throttle.ready(time.monotonic()):
                watch.report(TaskProgress(watch.task_id, progress.summary()))

        started = time.monotonic()
        outcome = "failed"
        log.info("task %s: getting image %s (pull policy %s)", watch.task_id, spec.image, spec.pull_policy.value)
        try:
            await asyncio.to_thread(self._engine.ensure_image, spec.image, spec.pull_policy, on_event)
            outcome = "ok"
        finally:
            took = time.monotonic() - started
            self.pull_seconds.observe(took, outcome)
        if progress.layers:
            log.info("task %s: pulled %s in %.1f s (%s)", watch.task_id, spec.image, took, progress.summary())

    async def _adopt_existing(self, watch: _Watch, container_id: str) -> None:
        """A LAUNCH for a task whose container already exists: watch it instead of running it twice."""
        watch.container_id = container_id
        try:
            state = await asyncio.to_thread(self._engine.inspect, container_id)
        except EngineError as e:
            self._end(watch, Outcome(TaskState.FAILED, Reason.RUNTIME_ERROR, str(e), 0), ran=False)
            return
        if state.live:
            self._mark_started(watch)
        else:
            await self._finish_from_state(watch, state)

    # -- events -------------------------------------------------------------

    async def _ensure_watching(self) -> None:
        async with self._pump_lock:
            if self._pump is not None and self._pump.alive:
                return
            restarted = self._pump is not None
            pump = EventPump(
                self._engine, self._agent_id, asyncio.get_running_loop(), self._on_event, self._on_resubscribed
            )
            await asyncio.to_thread(pump.start)
            self._pump = pump
        if restarted:
            self._on_resubscribed()

    def _on_event(self, event: EngineEvent) -> None:
        log.debug("docker %s of task %s (exit code %s)", event.action, event.task_id, event.exit_code)
        if self._buffer is not None:
            self._buffer.append(event)
            return
        watch = self._watches.get(event.task_id)
        if watch is None or watch.ended:
            return
        if watch.container_id and event.container_id != watch.container_id:
            return  # an earlier container of the same task id
        if not watch.container_id:
            watch.container_id = event.container_id  # create_and_start has not returned yet
        if event.action == "start":
            self._mark_started(watch)
        elif event.action == "oom":
            watch.oom = True
        elif event.action == "die":
            self._spawn(self._finish(watch, event.exit_code))

    def _on_resubscribed(self) -> None:
        """The stream was re-opened: ends may have been missed, so look at every live task."""
        for watch in list(self._watches.values()):
            if not watch.ended and not watch.dying and watch.container_id:
                self._spawn(self._resync(watch))

    async def _replay(self, event: EngineEvent, found: dict[TaskId, RecoveredTask]) -> None:
        """Apply an event held during recovery; ends of just-recovered tasks go into ``found``."""
        watch = self._watches.get(event.task_id)
        recovered = found.get(event.task_id)
        if watch is None or recovered is None or recovered.state is not TaskState.RUNNING:
            self._on_event_now(event)
            return
        if event.container_id != watch.container_id:
            return
        if event.action == "oom":
            watch.oom = True
        elif event.action == "die" and not watch.dying:
            watch.dying = True
            outcome = await self._outcome(watch, event.exit_code)
            watch.ended = True
            watch.done.set()
            found[event.task_id] = RecoveredTask(
                event.task_id, outcome.state, outcome.reason, outcome.message, outcome.exit_code
            )

    def _on_event_now(self, event: EngineEvent) -> None:
        held, self._buffer = self._buffer, None
        try:
            self._on_event(event)
        finally:
            self._buffer = held

    # -- ends ---------------------------------------------------------------

    async def _finish(self, watch: _Watch, exit_code: int | None) -> None:
        if watch.dying or watch.ended:
            return
        watch.dying = True
        self._end(watch, await self._outcome(watch, exit_code), ran=True)

    async def _outcome(self, watch: _Watch, exit_code: int | None) -> Outcome:
        """Read how a container that died ended: kill, OOM, or exit code (with its last output)."""
        oom, tail = watch.oom, ""
        if exit_code != 0 and not watch.killing:
            try:
                state = await asyncio.to_thread(self._engine.inspect, watch.container_id)
                oom = oom or state.oom_killed
                if not state.live:
                    exit_code = state.exit_code
            except EngineError as e:
                log.debug("inspecting the container of task %s: %s", watch.task_id, e)
            if not oom and exit_code != 0:
                tail = await self._tail(watch)
        code = exit_code if exit_code is not None else -1
        return classify_exit(code, oom=oom, killed=watch.killing, log_tail=tail)

    async def _finish_from_state(self, watch: _Watch, state: ContainerState) -> None:
        if watch.dying or watch.ended:
            return
        watch.dying = True
        outcome = await self._outcome_of_state(watch, state)
        self._end(watch, outcome, ran=state.status != "created")

    async def _outcome_of_state(self, watch: _Watch, state: ContainerState) -> Outcome:
        if state.status == "created":
            message = "the container was created but never started (agent restarted during launch)"
            return Outcome(TaskState.FAILED, Reason.AGENT_RESTARTED, message, 0)
        oom = state.oom_killed or watch.oom
        tail = "" if oom or watch.killing or state.exit_code == 0 else await self._tail(watch)
        return classify_exit(state.exit_code, oom=oom, killed=watch.killing, log_tail=tail)

    async def _tail(self, watch: _Watch) -> str:
        try:
            return await asyncio.to_thread(self._engine.logs_tail, watch.container_id, self._log_lines)
        except EngineError as e:
            log.debug("reading the log of task %s: %s", watch.task_id, e)
            return ""

    async def _resync(self, watch: _Watch) -> None:
        """Inspect a task whose end may have been missed, and end it if its container has."""
        if watch.ended or watch.dying:
            return
        try:
            state = await asyncio.to_thread(self._engine.inspect, watch.container_id)
        except ContainerGone:
            if not (watch.ended or watch.dying):
                if watch.killing:
                    outcome = Outcome(TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "killed (container removed)", 0)
                else:
                    outcome = Outcome(TaskState.FAILED, Reason.RUNTIME_ERROR, "the container disappeared", 0)
                self._end(watch, outcome, ran=True)
            return
        except EngineError as e:
            log.warning("inspecting the container of task %s: %s", watch.task_id, e)
            return
        if not state.live:
            await self._finish_from_state(watch, state)

    async def _adopt_recovered(self, state: ContainerState, report: ReportCallback) -> RecoveredTask:
        watch = _Watch(state.task_id, report, state.container_id)
        watch.ready.set()
        self._watches[state.task_id] = watch
        if state.live:
            watch.started = True
            return RecoveredTask(state.task_id, TaskState.RUNNING)
        watch.dying = True
        outcome = await self._outcome_of_state(watch, state)
        watch.started = watch.ended = True
        watch.done.set()
        return RecoveredTask(state.task_id, outcome.state, outcome.reason, outcome.message, outcome.exit_code)

    def _mark_started(self, watch: _Watch) -> None:
        if not watch.started and not watch.ended:
            watch.started = True
            watch.report(TaskStarted(watch.task_id))

    def _end(self, watch: _Watch, outcome: Outcome, *, ran: bool) -> None:
        if watch.ended:
            return
        if ran:
            self._mark_started(watch)  # it did run: RUNNING comes before its end
        watch.ended = watch.dying = True
        watch.done.set()
        watch.ready.set()
        watch.report(TaskEnded(watch.task_id, outcome.state, outcome.reason, outcome.message, outcome.exit_code))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("docker runtime background step failed", exc_info=task.exception())


def _absolute(path: Path) -> str:
    """The host path to bind-mount (Docker needs it absolute)."""
    return os.path.abspath(path)


def _killed_before_start() -> Outcome:
    return Outcome(TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "killed before its container started", 0)
