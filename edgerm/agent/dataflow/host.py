"""``OperatorHost``: one dataflow operator instance, from its inputs to its output.

Pipeline::

    source:   device reader ─► records ───────────────┐ (piled onto the newest queued batch)
    operator/                                          ├─► BatchQueue ─► worker ─► module (thread) ─► publish / sink
    sink:     MQTT inputs ─► select (replica) ─────────┘     (bounded)     [sink: drop duplicates first]
                                       ▲                                    then checkpoint, then ack the inputs
    every 1 s: stats ─► edgerm/<dag>/<operator>/stats/<i>

Rules:

- **At least once** (docs/dataflow.md, "Delivery"). The instance slot holds a persistent MQTT session under a
  stable client id (:mod:`.mqtt`); an input message is acknowledged only after the batch it went into is
  published (or delivered by a sink), and after the instance's state checkpoint. A replacement takes the
  session over and gets what was not acknowledged, and what queued meanwhile. A sink drops duplicates by
  (``src``, ``seq``) (:class:`~.delivery.Deduper`).
- **State moves.** Before its first batch an instance restores the retained checkpoint on its state topic:
  the module's ``/state`` files, a source's next ``seq``, a sink's dedup marks. After each batch that changed
  them it publishes a new one (QoS 1, retained, at most 64 KiB).
- **Adaptive batching.** Nothing waits for a timer: a record goes on as soon as the worker is free; what
  arrives while it is busy piles up and goes together (up to ``EDGERM_DF_BATCH`` records, 64 KiB of text).
- **Bounded.** The only buffer is the :class:`BatchQueue` (``EDGERM_DF_QUEUE`` batches, 64 MiB). When it is
  full the receive loop waits for room (the broker and aiomqtt hold the rest: a session's backlog after a
  move comes all at once, and must not be dropped), up to :data:`WAITING_MAX` waiting messages; past that
  the instance is overloaded and the queue drops its oldest batch (counted, acknowledged). A source, which
  cannot make its device wait, drops the oldest batch and counts it.
- **Order per source.** One worker takes batches in order, runs the module and publishes (one at a time)
  before taking the next. (Running batch n+1's module while n's PUBACKs are awaited was tried twice: the
  module thread and the loop then contend for the GIL, and paced latency doubled, or worse.)
- **Off the loop.** The module runs in a worker thread; a per-batch time limit and a kill both interrupt it
  through its engine's epoch.
- **Failures.** A batch whose module traps or exits non-zero, or whose sink delivery fails, counts one error
  and its records as dropped (and is acknowledged: a poison batch must not come back forever). After
  :data:`MAX_CONSECUTIVE_FAILURES` in a row the task ends FAILED. A lost broker connection is not a
  failure: the host reconnects (backoff up to 5 s) and the broker resends what was not acknowledged.
- **Ends.** :meth:`run` returns the task's end: FAILED as above, or KILLED after :meth:`stop`; it publishes
  final stats and disconnects on the way out, and stops the device reader (and any command it started).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from edgerm.agent.dataflow import mqtt, slot
from edgerm.agent.dataflow.contract import OperatorConfig, Role
from edgerm.agent.dataflow.delivery import MAX_STATE_BYTES, Ack, AckTracker, Checkpoint, Deduper
from edgerm.agent.dataflow.executor import BatchExecutor, BatchFailed
from edgerm.agent.dataflow.readers import Blob, readings, value_of
from edgerm.agent.dataflow.records import (
    Batch,
    BatchQueue,
    format_record,
    module_input,
    module_output,
    passes_through,
    select,
    split,
)
from edgerm.agent.dataflow.sinks import DeliveryFailed, Sink
from edgerm.agent.runtime import TaskEnded
from edgerm.dataflow_records import Record, encode_binary
from edgerm.errors import MalformedMessage, MessageTooLarge
from edgerm.ids import AgentId
from edgerm.model import Reason, TaskInfo, TaskState

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 10
STATS_INTERVAL = 1.0
RECONNECT_MAX = 5.0
WAITING_MAX = 1000  # messages waiting in aiomqtt while the input queue is full, before the queue drops


@dataclass(slots=True)
class Counters:
    """Cumulative counts of one instance, as published in its stats."""

    received: int = 0  # records in (after replica selection), or readings taken
    sent: int = 0  # records out (published or delivered)
    dropped: int = 0  # records dropped: queue overflow, failed batches, malformed input
    batches: int = 0  # batches the module ran on successfully
    errors: int = 0  # failed batches (module or delivery)
    duplicates: int = 0  # records a sink dropped as already delivered


class OperatorHost:
    """Runs one operator instance until it is stopped or fails (see the module docstring)."""

    def __init__(  # needs a running loop
        self,
        task: TaskInfo,
        config: OperatorConfig,
        executor: BatchExecutor,
        pool: Executor,
        agent_id: AgentId,
        *,
        device: str = "",
        sink: Sink | None = None,
        batch_time_limit: float = 10.0,
    ) -> None:
        self.task = task
        self.config = config
        self.executor = executor
        self.agent_id = agent_id
        self.counters = Counters()
        self.queue = BatchQueue(config.queue)
        self._pool = pool
        self._device = device
        self._sink = sink
        self._batch_time_limit = batch_time_limit
        self._ready = asyncio.Event()
        self._space = asyncio.Event()  # the input queue has room again
        self._connected = asyncio.Event()
        self._restored = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # the connection dropped
        self._acks = AckTracker()
        self._dedup = Deduper() if config.role is Role.SINK else None
        self._seq = 0  # a source's next seq
        self.started_from = ""  # the task whose checkpoint this instance started from, if any
        self._started = time.time()
        self._claim = slot.claim(task.task_id, self._started, config.run)
        self._yielded = False  # a later instance took the slot over
        self._last_checkpoint = b""
        self._state_files: dict[str, bytes] = {}
        # Made here, not in run(): a stop() that comes before run() starts must not be lost.
        self._end: asyncio.Future[TaskEnded] = asyncio.get_running_loop().create_future()
        self._failures = 0
        self._jobs: list[asyncio.Task[None]] = []
        self._broker_down_logged = False

    # -- life cycle ------------------------------------------------------------------

    async def run(self) -> TaskEnded:
        """Run until :meth:`stop` (KILLED) or too many failed batches (FAILED)."""
        if self._end.done():  # stopped before it ran
            return self._end.result()
        self._spawn(self._connection_loop(), "mqtt")
        self._spawn(self._worker(), "worker")
        self._spawn(self._stats_loop(), "stats")
        if self.config.role is Role.SOURCE:
            self._spawn(self._source_loop(), "source")
        try:
            return await self._end
        finally:
            await self._shutdown()

    def stop(self) -> None:
        """End the task as KILLED (the current batch is interrupted)."""
        self._finish(TaskEnded(self.task.task_id, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "killed"))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def yielded(self) -> bool:
        """Whether a later instance took this one's slot over (it then processes nothing more)."""
        return self._yielded

    @property
    def restored(self) -> bool:
        """Whether the instance has looked for its checkpoint (and started from it, if there was one)."""
        return self._restored.is_set()

    def stats(self) -> dict[str, Any]:
        """The stats object published every second (cumulative counts)."""
        c = self.counters
        return {
            "agent": self.agent_id,
            "task": self.task.task_id,
            "in": c.received,
            "out": c.sent,
            "dropped": c.dropped,
            "batches": c.batches,
            "errors": c.errors,
            "duplicates": c.duplicates,
            "queued": len(self.queue),
            "t": round(time.time(), 3),
        }

    def _finish(self, end: TaskEnded) -> None:
        if not self._end.done():
            self._end.set_result(end)
            self.executor.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        job = asyncio.create_task(coro, name=f"df-{self.config.operator}.{self.config.index}-{name}")
        job.add_done_callback(self._job_done)
        self._jobs.append(job)

    def _job_done(self, job: asyncio.Task[None]) -> None:
        if job.cancelled() or (error := job.exception()) is None:
            return
        # The outermost boundary of the host's jobs: a bug ends this task, not the agent.
        log.error("dataflow task %s: %s failed", self.task.task_id, job.get_name(), exc_info=error)
        message = f"operator host failed: {type(error).__name__}: {error}"
        self._finish(TaskEnded(self.task.task_id, TaskState.FAILED, Reason.RUNTIME_ERROR, message))

    async def _shutdown(self) -> None:
        self.executor.stop()
        # Final stats while the connection is still up; never wait long for them.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await self._publish_stats()
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        self._jobs.clear()
        if self._sink is not None:
            await self._sink.close()
        self.executor.close()

    # -- MQTT -------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        """Hold the slot's session (and its subscriptions); reconnect when it drops; give the slot up to a
        later instance (make-before-break, or an instance whose agent came back after it was replaced)."""
        backoff = 0.1
        while True:
            client = mqtt.client(
                self.config.broker, self.config.client_id, will=slot.release(self.config, self.task.task_id)
            )
            try:
                reconnecting = self._restored.is_set()
                if reconnecting:  # was the slot taken over meanwhile?
                    claim, _ = await slot.read_slot(self.config, self.task.task_id, state=False)
                    if self._taken_by(claim):
                        return
                else:  # claim the slot before taking the session; a live holder sees it and lets go
                    claim, _ = await slot.read_slot(
                        self.config, self.task.task_id, state=False, claim=self._claim, handover=slot.HANDOVER_WAIT
                    )
                    if self._taken_by(claim):
                        return
                async with client:
                    self._acks.connected()
                    if client.session_present:
                        # The broker sends again what was not acknowledged: queued copies would be duplicates.
                        self.queue.drop_acked_by(self._stale_ack)
                    self._lost = asyncio.get_running_loop().create_future()
                    if not self._restored.is_set():
                        # The session is ours now (an instance it was taken from can no longer acknowledge),
                        # so the checkpoint read next is the last one that counts.
                        claim, found = await slot.read_slot(
                            self.config, self.task.task_id, state=True, claim=self._claim
                        )
                        if self._taken_by(claim):
                            return
                        self._start_from(found)
                    await slot.subscribe(client, self.config)
                    if reconnecting:  # its will may have said it let go: it holds the slot again
                        await slot.clear_release(client, self.config)
                    self._client = client
                    self._connected.set()
                    log.info(
                        "dataflow task %s: connected to %s as %s",
                        self.task.task_id,
                        self.config.broker.url,
                        self.config.client_id,
                    )
                    self._broker_down_logged = False
                    backoff = 0.1
                    async for message in client.messages:
                        self._on_message(client, message)
                        if self._yielded:  # disconnect cleanly: the session (and what it holds) is the new one's
                            await slot.publish_release(client, self.config, self.task.task_id)
                            return
                        if self.queue.full and len(client.messages) < WAITING_MAX:
                            # Backpressure, not drops: the broker's queue (and aiomqtt's) hold the rest; a
                            # session's backlog after a move arrives all at once. Past WAITING_MAX waiting
                            # messages the instance is overloaded: the queue drops its oldest (counted).
                            self._space.clear()
                            await self._space.wait()
            except aiomqtt.MqttError as e:
                if not self._broker_down_logged:
                    log.warning("dataflow task %s: broker %s: %s", self.task.task_id, self.config.broker.url, e)
                    self._broker_down_logged = True
            finally:
                mqtt.settle(client)
                self._client = None
                self._connected.clear()
                if not self._lost.done():
                    self._lost.set_result(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    def _stale_ack(self, token: object) -> bool:
        return isinstance(token, Ack) and token.generation != self._acks.generation

    def _taken_by(self, claim: slot.Claim | None) -> bool:
        """Whether ``claim`` (the slot's retained claim) is a later instance's; if so, give the slot up."""
        if claim is None or not slot.later(claim, self.task.task_id, self._started):
            return False
        task, _ = claim
        self._yielded = True
        self._ready.set()  # the worker sees it and stops
        log.info(
            "dataflow task %s: slot %s taken over by task %s; this instance stops processing",
            self.task.task_id,
            self.config.client_id,
            task,
        )
        return True

    def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = b""
        data = bytes(payload)
        if slot.is_claim(message, self.config):
            self._taken_by(slot.parse_claim(data, self.config.run))
            return
        acks: tuple[object, ...] = (self._acks.received(message.mid),) if message.qos > 0 else ()
        chosen = select(data, self.config.index, self.config.replicas, acks)
        self.counters.dropped += chosen.malformed
        if not chosen.batch:
            self._done(acks)
            return
        self.counters.received += len(chosen.batch)
        self._enqueue(chosen.batch)

    def _start_from(self, found: Checkpoint | None) -> None:
        """Take the checkpoint (if any) and let the worker and the source begin."""
        if found is not None and not found.empty:
            self.executor.write_state(found.files)
            self._state_files = dict(found.files)
            if found.seq is not None:
                self._seq = max(self._seq, found.seq)
            if found.marks or self._dedup is not None:  # a sink, or a stateful operator
                self._dedup = Deduper(found.marks)
            self._last_checkpoint = self._checkpoint().encode()
            self.started_from = found.task
            log.info(
                "dataflow task %s: started from the checkpoint of task %s (%d state files%s)",
                self.task.task_id,
                found.task,
                len(found.files),
                f", next seq {found.seq}" if found.seq is not None else "",
            )
        self._restored.set()

    async def _publish_all(self, messages: list[tuple[str, bytes, bool]]) -> None:
        """Publish ``(topic, payload, retain)`` messages at QoS 1, in order and all in flight at once, and wait
        for every PUBACK; waits through a reconnection if the broker is away, and then publishes again, in
        order, from the first message not confirmed (a copy may arrive twice: at least once)."""
        # Checked on every turn: aiomqtt waits with asyncio.wait_for, which in Python 3.11 can swallow a
        # cancellation that comes as the PUBACK does; the task must still end.
        while messages and not self._end.done():
            await self._connected.wait()
            client = self._client
            if client is None:
                await asyncio.sleep(0.01)
                continue
            lost = self._lost
            # Created in order, so they reach paho (and the socket) in order.
            jobs = [asyncio.ensure_future(client.publish(t, p, qos=1, retain=r)) for t, p, r in messages]
            confirmed = 0
            try:
                for job in jobs:
                    # aiomqtt does not always fail a publish whose connection dropped: stop waiting when it does.
                    await asyncio.wait((job, lost), return_when=asyncio.FIRST_COMPLETED)
                    if not job.done():
                        raise aiomqtt.MqttError("the connection dropped before the PUBACK")
                    job.result()
                    confirmed += 1  # PUBACKs come in order (MQTT 3.1.1 §4.6): all before it are confirmed too
                return
            except aiomqtt.MqttError as e:
                log.debug("publish to %s failed (%s); waiting for the connection", messages[confirmed][0], e)
                messages = messages[confirmed:]
                await asyncio.sleep(0.05)
            finally:
                for job in jobs:
                    if not job.done():
                        job.cancel()
                    elif not job.cancelled():
                        job.exception()  # taken note of: one past the first that failed failed the same way
        if messages:
            raise asyncio.CancelledError

    def _done(self, acks: tuple[object, ...]) -> None:
        """A batch is finished with: acknowledge its input messages (in order), remove the files it consumed."""
        if not acks:
            return
        for token in acks:
            if isinstance(token, Path):
                with contextlib.suppress(OSError):
                    os.unlink(token)
        client = self._client
        for mid in self._acks.done(acks):
            if client is not None:
                with contextlib.suppress(aiomqtt.MqttError, RuntimeError):
                    mqtt.ack(client, mid)

    # -- the pipeline ----------------------------------------------------------------------

    def _enqueue(self, batch: Batch) -> None:
        for lost in self.queue.put(batch):
            self.counters.dropped += len(lost)
            self._done(lost.acks)
        self._ready.set()

    async def _source_loop(self) -> None:
        await self._restored.wait()
        src = self.config.source_id
        content_type = self.config.content_type
        async with contextlib.aclosing(readings(self._device, self.config.period, content_type)) as stream:
            async for t, reading in stream:
                if isinstance(reading, Blob):
                    record = Record(src, self._seq, t, reading.data, reading.content_type)
                    consumed: tuple[object, ...] = (reading.consumed,) if reading.consumed is not None else ()
                    batch = Batch(encode_binary([record]), 1, consumed)
                    self._seq += 1
                    self.counters.received += 1
                    self._enqueue(batch)
                    continue
                value = value_of(reading)
                if value is None:
                    self.counters.dropped += 1
                    continue
                try:
                    line = format_record(src, self._seq, t, value)
                except ValueError:  # JSON that has no compact form (NaN inside)
                    self.counters.dropped += 1
                    continue
                self._seq += 1
                self.counters.received += 1
                for lost in self.queue.append(Batch((line + "\n").encode(), 1), self.config.batch):
                    self.counters.dropped += len(lost)
                self._ready.set()

    async def _worker(self) -> None:
        await self._restored.wait()
        while not self._end.done() and not self._yielded:
            batch = self.queue.take(self.config.batch)
            self._space.set()
            if batch is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            if not await self._process(batch):
                return  # the task ends: its inputs stay in the slot's session, for the next instance
            self._done(batch.acks)

    async def _process(self, batch: Batch) -> bool:
        """Run and publish one batch; False if the task ended under it (the batch was interrupted, not done)."""
        try:
            batch = self._drop_duplicates(batch)
            if not batch:
                return True
            output, files = await self._run_module(batch)
            if files and self._dedup is None:
                # An operator with state: from now on it drops inputs its state already holds (a redelivery
                # after a move), so its checkpoint says which records it covers.
                self._dedup = Deduper()
                self._drop_duplicates(batch)
            out: list[tuple[str, bytes, bool]] = []
            if self.config.role is Role.SINK and self._sink is not None:
                if output:
                    await self._sink.deliver(output.payload)
            else:
                out = [(self.config.output, part.payload, False) for part in split(output, self.config.batch)]
            checkpoint = self._next_checkpoint(files)
            if checkpoint is not None:
                out.append((self.config.state_topic, checkpoint, True))
            # The output and the checkpoint after it are in flight together: one round trip, not two (the
            # broker keeps them in order, so the checkpoint never gets ahead of the output it covers).
            await self._publish_all(out)
            if checkpoint is not None:
                self._last_checkpoint = checkpoint
            self.counters.sent += len(output)
        except (BatchFailed, DeliveryFailed, MalformedMessage, MessageTooLarge) as e:
            if self._end.done():
                # Killed or stopped mid-batch: the module was interrupted, the batch did not fail. Acknowledging
                # it would lose its records (a failed batch is acknowledged, so a poison one does not come back).
                log.info("dataflow task %s: batch of %d interrupted by the task's end", self.task.task_id, len(batch))
                return False
            self.counters.errors += 1
            self.counters.dropped += len(batch)
            self._failed(e)
            return True
        self.counters.batches += 1
        self._failures = 0
        return True

    def _drop_duplicates(self, batch: Batch) -> Batch:
        if self._dedup is None:
            return batch
        before = self._dedup.duplicates
        if batch.binary:
            body, n = self._dedup.filter_binary(batch.payload)
            out = Batch(body, n, batch.acks)
        else:
            body, n = self._dedup.filter_text(batch.payload)
            out = Batch(body, n, batch.acks)
        self.counters.duplicates += self._dedup.duplicates - before
        return out

    async def _run_module(self, batch: Batch) -> tuple[Batch, dict[str, bytes] | None]:
        """The module's output for a batch (bytes records bypass it), and ``/state`` after it."""
        if passes_through(batch):  # only bytes records: no module run, no thread
            return Batch(batch.payload, batch.records), None
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._batch_time_limit, self.executor.interrupt)
        try:
            return await loop.run_in_executor(self._pool, self._run_blocking, batch)
        finally:
            timer.cancel()

    def _run_blocking(self, batch: Batch) -> tuple[Batch, dict[str, bytes] | None]:
        given = module_input(batch)
        if given.passthrough:
            return Batch(batch.payload, batch.records), None
        output = self.executor.run(given.stdin) if given.records else b""
        files = self.executor.read_state(MAX_STATE_BYTES) if given.records else None
        return module_output(output, given.bypass), files

    def _checkpoint(self) -> Checkpoint:
        return Checkpoint(
            self.task.task_id,
            self.config.run,
            self._state_files,
            self._seq if self.config.role is Role.SOURCE else None,
            self._dedup.marks() if self._dedup is not None else {},
        )

    def _next_checkpoint(self, files: dict[str, bytes] | None) -> bytes | None:
        """The checkpoint to publish after a batch, if the state changed (a stateless operator has none)."""
        if files is None and self.config.role is Role.OPERATOR:
            return None
        if files is not None:
            self._state_files = files
        checkpoint = self._checkpoint()
        if checkpoint.empty and not self._last_checkpoint:
            return None
        data = checkpoint.encode()
        return data if data != self._last_checkpoint else None

    def _failed(self, error: BatchFailed | DeliveryFailed | MalformedMessage | MessageTooLarge) -> None:
        self._failures += 1
        log.info("dataflow task %s: batch failed (%d in a row): %s", self.task.task_id, self._failures, error)
        if self._failures < MAX_CONSECUTIVE_FAILURES:
            return
        reason = error.reason if isinstance(error, BatchFailed) else Reason.RUNTIME_ERROR
        code = error.exit_code if isinstance(error, BatchFailed) else 0
        message = f"{self._failures} batches failed in a row; last: {error}"
        self._finish(TaskEnded(self.task.task_id, TaskState.FAILED, reason, message, code))

    # -- stats -----------------------------------------------------------------------------

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            await self._publish_stats()

    async def _publish_stats(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            await client.publish(self.config.stats_topic, json.dumps(self.stats()).encode(), qos=0)
        except aiomqtt.MqttError as e:
            log.debug("stats not published: %s", e)
