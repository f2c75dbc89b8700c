"""``AgentService``: carries out what the agent core orders, over a transport.

Pipeline::

    transport (commands, replies) ─┐
    runtimes (TaskStarted/Ended) ──┼─► AgentCore.handle(event, now) ─► actions ─► _apply
    timers (heartbeat, retries) ───┘

Rules:

- Only :meth:`_feed` changes agent state, by handing one event to the core;
  the service holds connections, timers and in-flight work, nothing else.
- It never dies because one task or one request failed: every action runs
  in its own asyncio task whose failure is logged (the outermost boundary);
  a status that was not acknowledged is re-sent by the core's retry timer, a
  registration is retried with backoff until the master answers, a dropped
  command stream is re-opened with backoff, and UNKNOWN_AGENT on any call
  makes the agent register again.
- The command stream is re-opened when two heartbeat acks in a row say
  ``commands_pending`` (the master holds commands no stream takes; one such
  ack alone can be a command caught between the queue and the stream).
- Status updates are batched: a status to send joins a queue, and at most
  :data:`UPDATE_CALLS` UPDATE calls (a transport may ask for more:
  ``update_calls_in_flight``) are in flight, each carrying what was
  queued when it left (up to the transport's ``max_statuses_per_update``,
  at most :data:`MAX_BATCH`). An unacknowledged status is queued again by
  the core's retry timer, so a failed batch loses nothing. A master that
  acknowledges only the first of a batch (it predates ``more``) gets the
  rest again at once, and one status per call from then on.
- Runtime reports may come from any thread; they are moved to the loop.
- Each task gets ``work_dir/tasks/<task>/`` as its workdir; the workdirs of
  the last 32 finished tasks are kept for inspection, older ones are
  recycled or removed 16 at a time (sandboxes.py).
- A dataflow task (env ``EDGERM_DF_ROLE``) that sets no ``EDGERM_BROKER``
  gets the broker the master named in REGISTERED (docs/dataflow.md).
- What must outlive the process goes through the work dir's journal
  (journal.py): a task's launch record is durable before its runtime gets
  it, an update before it is first sent. At start the journal is replayed
  into the core (``Restored``) with what the runtimes recovered, so
  unacknowledged updates are delivered and tasks that died with the process
  are relaunched or reported per their restart policy, even while the
  master is unreachable (docs/agent-reliability.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import random
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgerm import messages as m
from edgerm.agent import sandboxes
from edgerm.agent.dataflow.contract import with_broker
from edgerm.agent.journal import Journal, ModuleStore
from edgerm.agent.logs import read_piece
from edgerm.agent.metrics import AgentMetrics
from edgerm.agent.runtime import RecoveredTask, Runtime, RuntimeReport, TaskEnded
from edgerm.agent.sandboxes import Sandboxes, sandbox_name
from edgerm.agent.state import (
    MAX_PENDING,
    AgentAction,
    AgentCore,
    AgentEvent,
    CleanupTask,
    ForgetStatus,
    HeartbeatDue,
    KeepStatus,
    KillReceived,
    LaunchReceived,
    LaunchRefused,
    MasterAnswered,
    Recovered,
    Register,
    Registered,
    RegistrationLost,
    Restored,
    RuntimeReported,
    SendHeartbeat,
    SendStatus,
    Stamp,
    Started,
    StartTask,
    StatusAcked,
    StopTask,
    Tick,
)
from edgerm.agent.tasklog import TaskLog
from edgerm.agent.transport import AgentTransport
from edgerm.errors import EdgermError, RuntimeFailure, TransportError, UnknownAgent, WireError
from edgerm.ids import TaskId, new_id
from edgerm.model import AgentInfo, Reason, RestartPolicy, TaskInfo, TaskState, TaskStatus, WasmSpec

log = logging.getLogger(__name__)
_random_bits = random.Random().getrandbits  # seeded from os.urandom; status uuids (see _stamp)

PENDING_ACKS_TO_REOPEN = 2  # consecutive heartbeat acks saying commands_pending
# UPDATE calls in flight at once; statuses that come meanwhile wait and go in one batch (2 made smaller batches:
# more calls, offers and ACCEPTs per task and less throughput, bench/task_throughput.py; CoAP asks for 2)
UPDATE_CALLS = 1
MAX_BATCH = 64  # statuses per UPDATE at most (a transport may ask for fewer: max_statuses_per_update)
__all__ = ["AgentService", "sandbox_name"]


class AgentService:
    """One agent: its core, its runtimes and its conversation with the master."""

    def __init__(
        self,
        info: AgentInfo,
        transport: AgentTransport,
        runtimes: Mapping[str, Runtime],
        work_dir: Path,
        *,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        max_pending: int = MAX_PENDING,
        fsync: bool = True,
    ) -> None:
        self.info = info
        self.transport = transport
        self.runtimes = dict(runtimes)
        self.work_dir = work_dir
        self.instance_id = new_id()  # this process's registrations (the master tells two apart)
        self.core = AgentCore(info.id, frozenset(self.runtimes), max_pending)
        self.tasklog = TaskLog(info.id)  # one INFO line per task start and end (edgerm.agent.tasklog)
        self.journal = Journal(work_dir, fsync=fsync)
        self.modules = ModuleStore(work_dir, fsync=fsync)
        self.metrics = AgentMetrics()
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._jobs: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._registered = asyncio.Event()
        self._registering: asyncio.Task[None] | None = None
        self._stream: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._retry_at: float | None = None  # the deadline the retry loop waits for (None: none)
        self._heartbeat_in_flight = False
        self._pending_acks = 0
        self._sandboxes = Sandboxes(work_dir / "tasks")
        self._launching: dict[TaskId, asyncio.Task[None]] = {}  # StartTask jobs not yet handed to the runtime
        self._outgoing: dict[tuple[TaskId, str], TaskStatus] = {}  # statuses for the next UPDATE, in order
        self._senders = 0  # UPDATE calls in flight (at most self._update_calls)
        self._update_calls = max(1, int(getattr(transport, "update_calls_in_flight", UPDATE_CALLS)))
        self._batch = max(1, min(int(getattr(transport, "max_statuses_per_update", MAX_BATCH)), MAX_BATCH))
        self._started = False
        self._stopping = False
        self._master_reachable = True
        #: The MQTT broker the master named in REGISTERED ("" = none); dataflow tasks get it.
        self.broker_url = ""
        #: The CA file that verifies an mqtts:// broker (the agent's --ca), handed to dataflow tasks.
        self.broker_ca: str | None = None

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Recover tasks, start registering, heartbeating and listening for commands."""
        if self._started:
            raise RuntimeError("AgentService.start() can be called once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        (self.work_dir / "tasks").mkdir(parents=True, exist_ok=True)
        for extra in self._sandboxes.add_spares(await asyncio.to_thread(sandboxes.find_spares, self._sandboxes.root)):
            await asyncio.to_thread(sandboxes.remove, [extra])
        restored = await self._restore()
        recovered: list[Recovered] = []
        for executor, runtime in self.runtimes.items():
            found: list[RecoveredTask] = []
            try:
                found = await runtime.recover(self.report)
            except Exception:  # boundary: a runtime that cannot recover still runs new tasks
                log.exception("runtime %s could not recover its tasks", executor)
            recovered.extend(Recovered(executor, t, self._stamp()) for t in found)
        if recovered:
            log.info("recovered %d task(s) from before the restart", len(recovered))
        self._feed(Started(tuple(recovered), restored))
        self._log_restored(restored)
        self._loops = [
            asyncio.create_task(self._heartbeat_loop(), name="agent-heartbeat"),
            asyncio.create_task(self._retry_loop(), name="agent-retries"),
            asyncio.create_task(self._command_loop(), name="agent-commands"),
        ]

    async def stop(self) -> None:
        """Stop talking to the master, close every runtime, close the transport.

        Closing a runtime keeps the tasks that can outlive this process
        (containers) running for the next start to recover (``Runtime.close``).
        """
        if self._stopping:
            return
        self._stopping = True
        pending = [*self._loops, *self._jobs]
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.journal.close()
        for executor, runtime in self.runtimes.items():
            try:
                await runtime.close()
            except Exception:  # boundary: shutting down goes on
                log.exception("runtime %s did not close cleanly", executor)
        await self.transport.close()

    @property
    def registered(self) -> bool:
        return self.core.registered

    async def wait_registered(self) -> None:
        await self._registered.wait()

    # -- the one place state changes -----------------------------------------------------

    def _feed(self, event: AgentEvent) -> None:
        try:
            actions = self.core.handle(event, time.monotonic())
        except Exception:  # boundary: a bug in the core must not take the agent down
            log.exception("the agent core could not handle %r", event)
            return
        self.tasklog.record(event, list(actions))
        if self.core.registered:
            self._registered.set()
        else:
            self._registered.clear()
        # Wake the retry loop only if the next re-send is now due sooner than it waits for (a later one just
        # costs a Tick with nothing due): waking it for every event cost a timer and a task step each.
        deadline = self.core.next_deadline()
        if deadline is not None and (self._retry_at is None or deadline < self._retry_at):
            self._wake.set()
        if not self._stopping:
            for action in actions:
                self._apply(action)

    def _apply(self, action: AgentAction) -> None:
        match action:
            case SendStatus(status=status):
                self._queue_status(status)
            case StartTask(task=task):
                self._track_launch(task.task_id, self._spawn(self._start_task(task)))
            case StopTask():
                self._spawn(self._stop_task(action))
            case SendHeartbeat(task_ids=task_ids):
                if not self._heartbeat_in_flight:  # a slow master gets one heartbeat at a time
                    self._heartbeat_in_flight = True
                    self._spawn(self._heartbeat(task_ids))
            case Register():
                if self._registering is None or self._registering.done():
                    self._registering = self._spawn(self._register())
            case CleanupTask():
                self.journal.forget(action.task_id)
                self._spawn(self._cleanup(action))
            case KeepStatus(status=status, executor=executor):
                self.journal.update(status, executor)
            case ForgetStatus(task_id=task_id, uuid=uuid_):
                self.journal.ack(task_id, uuid_)
            case LaunchRefused(task_id=task_id, held=held, first=first):
                (log.warning if first else log.debug)(
                    "not taking task %s: this agent holds %d tasks, its limit while %d status updates may wait"
                    " for the master (max_pending); the master will offer it again",
                    task_id,
                    held,
                    self.core.max_pending,
                )

    def _track_launch(self, task_id: TaskId, job: asyncio.Task[None]) -> None:
        self._launching[task_id] = job

        def done(_: asyncio.Task[None]) -> None:
            if self._launching.get(task_id) is job:
                del self._launching[task_id]

        job.add_done_callback(done)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        job = asyncio.create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._job_done)
        return job

    def _job_done(self, job: asyncio.Task[Any]) -> None:
        self._jobs.discard(job)
        if not job.cancelled() and (e := job.exception()) is not None:
            log.error("agent job failed", exc_info=e)

    @staticmethod
    def _stamp() -> Stamp:
        # 128 random bits as 32 hex digits, like uuid4().hex but without a getrandom call per status: a
        # status uuid must be unique, not secret (the generator is seeded from the OS at start).
        return Stamp(f"{_random_bits(128):032x}", time.time())

    # -- the journal (what outlives the process) --------------------------------------------

    async def _restore(self) -> tuple[Restored, ...]:
        """Replay the journal; tasks that must run again get their module bytes back inline."""
        try:
            found = await asyncio.to_thread(self.journal.load)
        except OSError as e:
            log.warning("cannot read the journal %s (%s): starting without it", self.journal.path, e)
            return ()
        keep = [t.info.container.sha256 for t in found if t.info and isinstance(t.info.container, WasmSpec)]
        await asyncio.to_thread(self.modules.prune, keep)
        out = []
        for t in found:
            info = t.info
            if info is not None and _restartable_wasm(info):
                info = await asyncio.to_thread(self._with_module, info)
            out.append(Restored(t.task_id, t.executor, info, t.pending, self._stamp()))
        if out:
            waiting = sum(len(t.pending) for t in found)
            log.info("journal: %d task(s) and %d unacknowledged update(s) from before the restart", len(out), waiting)
        return tuple(out)

    def _with_module(self, info: TaskInfo) -> TaskInfo:
        spec = info.container
        assert isinstance(spec, WasmSpec)
        data = self.modules.load(spec.sha256)
        if data is None:
            return info  # the runtime fetches it by hash (or fails it IMAGE_UNAVAILABLE)
        return dataclasses.replace(info, container=dataclasses.replace(spec, module=data))

    def _log_restored(self, restored: tuple[Restored, ...]) -> None:
        for r in restored:
            status = self.core.status_of(r.task_id)
            if r.info is None or status is None or (r.pending and r.pending[-1].state.terminal):
                continue
            if status.state is TaskState.STARTING:
                log.info("task %s died with the agent; relaunching it (restart policy ON_AGENT_RESTART)", r.task_id)
            elif status.state is TaskState.FAILED:
                log.info("task %s died with the agent; reporting it FAILED (%s)", r.task_id, status.reason.value)

    async def _keep_launch(self, task: TaskInfo) -> None:
        """Make the task's launch record (and, if it must run again, its module) durable."""
        if not self.journal.has_launch(task.task_id):
            if _restartable_wasm(task):
                await self._keep_module(task)
            self.journal.launch(task)
        await self.journal.durable()

    async def _keep_module(self, task: TaskInfo) -> None:
        spec = task.container
        assert isinstance(spec, WasmSpec)
        if self.modules.has(spec.sha256):
            return
        data = spec.module
        if not data:
            try:
                data = await self.transport.fetch_module(spec.sha256)
            except (EdgermError, OSError) as e:  # the runtime will fetch it, or fail the task
                log.warning("task %s: cannot keep module %s for a restart: %s", task.task_id, spec.sha256, e)
                return
            if hashlib.sha256(data).hexdigest() != spec.sha256.lower():
                log.warning("task %s: module %s fetched with the wrong hash; not kept", task.task_id, spec.sha256)
                return
        try:
            await asyncio.to_thread(self.modules.save, spec.sha256, data)
        except OSError as e:
            log.warning("task %s: cannot keep module %s for a restart: %s", task.task_id, spec.sha256, e)

    # -- runtime reports -----------------------------------------------------------------

    def report(self, report: RuntimeReport) -> None:
        """The runtimes' report callback; safe to call from any thread."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._on_report(report)
        else:
            self._loop.call_soon_threadsafe(self._on_report, report)

    def _on_report(self, report: RuntimeReport) -> None:
        if isinstance(report, TaskEnded):
            self.metrics.ended(report.task_id, "unknown", report.state, report.reason)
        self._feed(RuntimeReported(report, self._stamp()))

    # -- actions ---------------------------------------------------------------------------

    async def _register(self) -> None:
        backoff = self._backoff_initial
        while True:
            call = m.RegisterAgent(self.info, self.core.held_statuses(), self.instance_id)
            try:
                reply = await self.transport.call(call)
            except (TransportError, WireError) as e:
                self._unreachable(f"cannot register with the master: {e}")
            except Exception:  # boundary: registering must go on whatever happens
                log.exception("registering failed")
            else:
                if isinstance(reply, m.AgentRegistered):
                    self._reachable()
                    self.broker_url = reply.broker_url
                    log.info("registered with the master as %s (%s)", self.info.id, self.info.hostname)
                    self._feed(Registered())
                    return
                log.warning("unexpected answer to REGISTER: %r", reply)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    def _queue_status(self, status: TaskStatus) -> None:
        """Queue a status for the next UPDATE call; start a sender if fewer than allowed are busy."""
        self._outgoing.setdefault((status.task_id, status.uuid), status)  # a retry of a queued one adds nothing
        if self._senders < self._update_calls:
            self._senders += 1
            self._spawn(self._send_statuses())

    async def _send_statuses(self) -> None:
        """Send what is queued, many statuses per UPDATE (``more``), until the queue is empty."""
        try:
            while self._outgoing:
                keys = list(itertools.islice(self._outgoing, self._batch))
                batch = [self._outgoing.pop(k) for k in keys]
                if not await self._send_batch(batch):
                    return
        finally:
            self._senders -= 1

    async def _send_batch(self, batch: list[TaskStatus]) -> bool:
        """One UPDATE; False when the agent must stop sending (it is not registered)."""
        # Their journal records were queued before they were: this makes them durable.
        await self.journal.durable()  # never tell the master what a crash could make us forget
        try:
            reply = await self.transport.call(m.StatusUpdate(self.info.id, batch[0], tuple(batch[1:])))
        except UnknownAgent:
            self._feed(RegistrationLost())
            return False
        except (TransportError, WireError) as e:
            first = batch[0]
            log.debug(
                "%d status update(s) (%s of %s first) not delivered (retried later): %s",
                len(batch),
                first.state.value,
                first.task_id,
                e,
            )
            return True
        if isinstance(reply, m.StatusAcknowledged):
            acked = reply.acked
            for task_id, uuid_ in acked:
                self._feed(StatusAcked(task_id, uuid_))
            if len(acked) < len(batch):
                # A master from before batched UPDATEs takes the first status only: send one per call from now on.
                log.info("the master does not take batched status updates; sending them one per call")
                self._batch = 1
                taken = set(acked)
                for status in batch:
                    if (status.task_id, status.uuid) not in taken:
                        self._outgoing.setdefault((status.task_id, status.uuid), status)
        else:
            log.warning("unexpected answer to UPDATE: %r", reply)
        return True

    async def _heartbeat(self, task_ids: tuple[TaskId, ...]) -> None:
        try:
            reply = await self.transport.call(m.AgentHeartbeat(self.info.id, task_ids))
        except UnknownAgent:
            log.info("the master does not know this agent; registering again")
            self._feed(RegistrationLost())
            return
        except (TransportError, WireError) as e:
            self._unreachable(f"heartbeat not answered: {e}")
            return
        finally:
            self._heartbeat_in_flight = False
        self._reachable()
        if not isinstance(reply, m.HeartbeatAck) or not reply.commands_pending:
            self._pending_acks = 0
            return
        # One such ack can be a command caught between queue and stream; two in a row mean no stream.
        self._pending_acks += 1
        if self._pending_acks >= PENDING_ACKS_TO_REOPEN:
            self._pending_acks = 0
            log.info("commands are waiting at the master; re-opening the command stream")
            self._reopen_stream()

    async def _start_task(self, task: TaskInfo) -> None:
        self.metrics.launch(task.task_id, task.executor)
        runtime = self.runtimes.get(task.executor)
        try:
            if runtime is None:
                raise RuntimeFailure(f"no {task.executor} runtime")
            workdir = self._sandboxes.path(task.task_id)
            spare = self._sandboxes.take_spare()
            made: asyncio.Task[bool] | None = None
            # A spare becomes the sandbox by one rename, here (a thread hop costs more); else a mkdir in a
            # thread, while the launch record is written: it can block for milliseconds on a busy disk.
            if spare is None or not sandboxes.claim(spare, workdir):
                made = asyncio.create_task(asyncio.to_thread(sandboxes.make, workdir, spare))
            try:
                task = with_broker(task, self.broker_url, self.broker_ca)
                await self._keep_launch(task)
            finally:
                if made is not None:
                    await asyncio.wait({made})
            if made is not None:
                if made.exception() is None and not made.result() and spare is not None:
                    self._sandboxes.add_spares([spare])
                made.result()  # an OSError fails the task as before
            await runtime.launch(task, workdir, self.report)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # boundary: this task fails, the agent goes on
            if not isinstance(e, EdgermError):  # a bug: the traceback helps; an EdgermError is logged as task failed
                log.exception("launching %s failed", task.task_id)
            message = f"could not launch: {e}"
            self.report(TaskEnded(task.task_id, TaskState.FAILED, Reason.RUNTIME_ERROR, message))

    async def _stop_task(self, action: StopTask) -> None:
        launching = self._launching.get(action.task_id)
        if launching is not None:
            # Still writing its launch record: the runtime does not know it yet, so a kill now would miss it.
            await asyncio.wait({launching})
        runtime = self.runtimes.get(action.executor)
        if runtime is not None:
            await runtime.kill(action.task_id, action.grace)

    async def _send_logs(self, command: m.SendLogsCommand) -> None:
        """Answer the master's log request with a piece of the task's sandbox file (best effort, sent once)."""
        answer = m.TaskLogs(self.info.id, command.request_id, command.task_id, command.stream, 0)
        path = self.work_dir / "tasks" / sandbox_name(command.task_id) / command.stream
        try:
            piece: tuple[int, bytes, int] | None = None
            for runtime in self.runtimes.values():  # a runtime that keeps output elsewhere (Docker) answers first
                read_log = getattr(runtime, "read_log", None)
                if read_log is not None:
                    piece = await read_log(command.task_id, command.stream, command.offset, command.limit)
                    if piece is not None:
                        break
            if piece is None:
                piece = await asyncio.to_thread(read_piece, path, command.offset, command.limit)
            start, data, size = piece
            answer = replace(answer, offset=start, data=data, size=size)
        except FileNotFoundError:
            answer = replace(answer, error=f"no {command.stream} of task {command.task_id} on this agent")
        except OSError as e:
            answer = replace(answer, error=f"cannot read the {command.stream} of {command.task_id}: {e.strerror}")
        except EdgermError as e:  # e.g. the Docker engine failed the request
            answer = replace(answer, error=f"cannot read the {command.stream} of {command.task_id}: {e}")
        try:
            await self.transport.call(answer)
        except (TransportError, WireError) as e:
            log.debug("logs of %s not delivered: %s", command.task_id, e)

    async def _cleanup(self, action: CleanupTask) -> None:
        runtime = self.runtimes.get(action.executor)
        if runtime is not None:
            await runtime.cleanup(action.task_id)
        old = self._sandboxes.finished(action.task_id)
        if old:
            extra = self._sandboxes.add_spares(await asyncio.to_thread(sandboxes.retire, old))
            if extra:
                await asyncio.to_thread(sandboxes.remove, extra)

    # -- loops -------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.info.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            self._feed(HeartbeatDue())

    async def _retry_loop(self) -> None:
        """Feed ``Tick`` when the core's next retry deadline comes."""
        while True:
            self._wake.clear()
            deadline = self._retry_at = self.core.next_deadline()
            delay = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                self._feed(Tick())

    async def _command_loop(self) -> None:
        """Hold the command stream open while registered; re-open it when it drops."""
        backoff = self._backoff_initial
        while True:
            await self._registered.wait()
            stream = asyncio.create_task(self._consume_commands(), name="agent-command-stream")
            self._stream = stream
            opened = time.monotonic()
            try:
                await asyncio.wait({stream})
            finally:
                stream.cancel()
            if stream.cancelled():  # re-open requested
                backoff = self._backoff_initial
                continue
            error = stream.exception()
            if isinstance(error, UnknownAgent):
                self._feed(RegistrationLost())
                continue
            if error is not None and not isinstance(error, EdgermError):
                log.error("command stream failed", exc_info=error)
            elif error is not None:
                log.debug("command stream: %s", error)
            if time.monotonic() - opened > 5.0:
                backoff = self._backoff_initial
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    async def _consume_commands(self) -> None:
        async for command in self.transport.commands(self.info.id):
            if isinstance(command, m.LaunchCommand):
                self._feed(LaunchReceived(command.task, self._stamp()))
            elif isinstance(command, m.KillCommand):
                self._feed(KillReceived(command.task_id, command.grace, self._stamp()))
            elif isinstance(command, m.SendLogsCommand):
                self._spawn(self._send_logs(command))
            else:
                log.warning("unexpected event on the command stream: %r", command)

    def _reopen_stream(self) -> None:
        if self._stream is not None and not self._stream.done():
            self._stream.cancel()

    # -- logging of reachability (once per change, not once per attempt) ----------------------

    def _unreachable(self, why: str) -> None:
        if self._master_reachable:
            log.warning("%s", why)
            self._master_reachable = False
        else:
            log.debug("%s", why)

    def _reachable(self) -> None:
        if not self._master_reachable:
            log.info("the master answers again")
            self._master_reachable = True
            self._feed(MasterAnswered())


def _restartable_wasm(task: TaskInfo) -> bool:
    return task.restart_policy is RestartPolicy.ON_AGENT_RESTART and isinstance(task.container, WasmSpec)
