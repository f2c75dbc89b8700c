"""``OperatorHost``: one dataflow operator instance, from its inputs to its output.

Pipeline::

    source:   device reader ─► records ─► Batcher ─┐
    operator/                                       ├─► BatchQueue ─► worker ─► module (thread) ─► publish / sink
    sink:     MQTT inputs ─► select (replica) ─────┘     (bounded,              (per batch)
                                                          drop oldest)
    every 1 s: stats ─► edgerm/<dag>/<operator>/stats/<i>

Rules:

- **Bounded.** The only buffer is the :class:`BatchQueue` (``EDGERM_DF_QUEUE``
  batches of at most 64 KiB); when it is full the oldest batch is dropped and
  its records counted in ``dropped``. The MQTT receive loop does no more than
  parse and enqueue, so aiomqtt's own queue stays short.
- **Order per source.** One worker takes batches in order (merging queued
  ones up to ``EDGERM_DF_BATCH`` records when it has fallen behind), runs the
  module, and publishes (QoS 1, one publish at a time) before taking the
  next.
- **Off the loop.** The module runs in a worker thread; a per-batch time
  limit and a kill both interrupt it through its engine's epoch.
- **Failures.** A batch whose module traps or exits non-zero, or whose sink
  delivery fails, counts one error and its records as dropped. After
  :data:`MAX_CONSECUTIVE_FAILURES` in a row the task ends FAILED with the
  last error. A lost broker connection is not a failure: the host reconnects
  (backoff up to 5 s) while the queue keeps it bounded.
- **Ends.** :meth:`run` returns the task's end: FAILED as above, or KILLED
  after :meth:`stop`; it publishes final stats and disconnects on the way
  out, and stops the device reader (and any command it started).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import aiomqtt

from edgerm.agent.dataflow.contract import OperatorConfig, Role
from edgerm.agent.dataflow.executor import BatchExecutor, BatchFailed
from edgerm.agent.dataflow.readers import readings, value_of
from edgerm.agent.dataflow.records import Batch, Batcher, BatchQueue, format_record, output_lines, select, split
from edgerm.agent.dataflow.sinks import DeliveryFailed, Sink
from edgerm.agent.runtime import TaskEnded
from edgerm.ids import AgentId
from edgerm.model import Reason, TaskInfo, TaskState

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 10
STATS_INTERVAL = 1.0
RECONNECT_MAX = 5.0
KEEPALIVE = 10  # seconds; a dead broker connection is noticed within ~1.5x this
_CLIENT_ID = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(slots=True)
class Counters:
    """Cumulative counts of one instance, as published in its stats."""

    received: int = 0  # records in (after replica selection), or readings taken
    sent: int = 0  # records out (published or delivered)
    dropped: int = 0  # records dropped: queue overflow, failed batches, malformed input
    batches: int = 0  # batches the module ran on successfully
    errors: int = 0  # failed batches (module or delivery)


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
        self._connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
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
            "queued": len(self.queue),
            "t": round(time.time(), 3),
        }

    def _finish(self, end: TaskEnded) -> None:
        if not self._end.done():
            self._end.set_result(end)
            self.executor.interrupt()

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
        self.executor.interrupt()
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

    # -- MQTT -------------------------------------------------------------------------

    def _new_client(self) -> aiomqtt.Client:
        broker = self.config.broker
        ident = _CLIENT_ID.sub("_", f"edgerm-{self.config.dag}-{self.config.operator}.{self.config.index}")
        return aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=f"{ident[:48]}-{self.task.task_id[-8:]}",
            clean_session=True,
            keepalive=KEEPALIVE,
            timeout=10,
            logger=logging.getLogger("edgerm.agent.dataflow.mqtt"),
        )

    async def _connection_loop(self) -> None:
        """Hold a broker connection (and the input subscriptions); reconnect when it drops."""
        backoff = 0.1
        while True:
            client = self._new_client()
            try:
                async with client:
                    for topic in self.config.inputs:
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    self._connected.set()
                    if self._broker_down_logged:
                        log.info("dataflow task %s: connected to the broker again", self.task.task_id)
                        self._broker_down_logged = False
                    backoff = 0.1
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as e:
                if not self._broker_down_logged:
                    log.warning("dataflow task %s: broker %s: %s", self.task.task_id, self.config.broker.url, e)
                    self._broker_down_logged = True
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    def _on_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            return
        chosen = select(bytes(payload), self.config.index, self.config.replicas)
        self.counters.dropped += chosen.malformed
        if chosen.batch:
            self.counters.received += len(chosen.batch)
            self._enqueue(chosen.batch)

    async def _publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1, waiting through a reconnection if the broker is away."""
        while True:
            await self._connected.wait()
            client = self._client
            if client is None:
                await asyncio.sleep(0.01)
                continue
            try:
                await client.publish(topic, payload, qos=1)
                return
            except aiomqtt.MqttError as e:
                log.debug("publish to %s failed (%s); waiting for the connection", topic, e)
                await asyncio.sleep(0.05)

    # -- the pipeline ----------------------------------------------------------------------

    def _enqueue(self, batch: Batch) -> None:
        dropped = self.queue.put(batch)
        if dropped is not None:
            self.counters.dropped += len(dropped)
        self._ready.set()

    async def _source_loop(self) -> None:
        loop = asyncio.get_running_loop()
        batcher = Batcher(self.config.batch)
        timer: asyncio.TimerHandle | None = None
        seq = 0
        src = self.config.source_id

        def flush() -> None:
            nonlocal timer
            timer = None
            batch = batcher.flush()
            if batch is not None:
                self._enqueue(batch)

        async with contextlib.aclosing(readings(self._device, self.config.period)) as stream:
            async for t, text in stream:
                value = value_of(text)
                if value is None:
                    self.counters.dropped += 1
                    continue
                self.counters.received += 1
                for batch in batcher.add(format_record(src, seq, t, value)):
                    self._enqueue(batch)
                seq += 1
                if not len(batcher):
                    if timer is not None:
                        timer.cancel()
                        timer = None
                elif timer is None:
                    timer = loop.call_later(self.config.batch_ms / 1000.0, flush)

    async def _worker(self) -> None:
        while True:
            batch = self.queue.take(self.config.batch)
            if batch is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            await self._process(batch)

    async def _process(self, batch: Batch) -> None:
        try:
            output = await self._run_module(batch.payload())
            lines = output_lines(output)
            if self.config.role is Role.SINK and self._sink is not None:
                if lines:
                    await self._sink.deliver("".join(f"{line}\n" for line in lines).encode())
            else:
                for part in split(lines, self.config.batch):
                    await self._publish(self.config.output, part.payload())
        except (BatchFailed, DeliveryFailed) as e:
            self.counters.errors += 1
            self.counters.dropped += len(batch)
            self._failed(e)
            return
        self.counters.batches += 1
        self.counters.sent += len(lines)
        self._failures = 0

    async def _run_module(self, payload: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._batch_time_limit, self.executor.interrupt)
        try:
            return await loop.run_in_executor(self._pool, self.executor.run, payload)
        finally:
            timer.cancel()

    def _failed(self, error: BatchFailed | DeliveryFailed) -> None:
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
