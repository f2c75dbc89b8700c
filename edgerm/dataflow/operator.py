"""The Python operator SDK: a dataflow operator in a few lines, run in any container.

::

    from edgerm.dataflow.operator import Record, run

    def to_fahrenheit(r: Record) -> Record:
        return Record(r.src, r.seq, r.t, r.value * 1.8 + 32)

    if __name__ == "__main__":
        run(to_fahrenheit)              # per record; or run(batch=f) with f(list[Record]) -> list[Record]

A stateful operator names its initial state; the function gets it as a second argument and changes it in
place, and the state moves with the operator::

    def count(r: Record, state: dict) -> Record:
        state["n"] = state.get("n", 0) + 1
        return Record(r.src, r.seq, r.t, state["n"])

    run(count, state={})                # or run(batch=f, state={...}) with f(records, state)

The operator speaks the dataflow contract (docs/dataflow.md) like the agent's
operator host does for WebAssembly modules:

- **Configuration** comes from the task's environment, parsed by the same
  code the agent uses (:func:`edgerm.agent.dataflow.contract.parse_operator`):
  ``EDGERM_DF_IN`` (input topics), ``EDGERM_DF_OUT``, ``EDGERM_DF_REPLICA``,
  ``EDGERM_DF_BATCH``, ``EDGERM_DF_QUEUE``, ``EDGERM_DF_RUN``, ``EDGERM_BROKER``;
  the Docker runtime adds ``EDGERM_TASK_ID`` and ``EDGERM_AGENT_ID``. A bad
  environment exits with status 2 and the key named on stderr.
- **Records** are decoded and encoded by the data plane's own codec
  (:mod:`edgerm.agent.dataflow.records`), so an SDK operator follows the
  record format wherever it goes. Malformed input records are counted as
  dropped and never reach the function; a replica keeps only the sources that
  hash to its index.
- **At least once** (docs/dataflow.md, "Delivery"), as the operator host: the
  instance slot's persistent MQTT session under its stable client id
  (:mod:`edgerm.agent.dataflow.mqtt`); an input message is acknowledged only
  after the outputs of the batch it went into are published (PUBACK) and the
  state checkpointed (:class:`~edgerm.agent.dataflow.delivery.AckTracker`); a
  replacement claims the slot and takes the session over, and an instance
  that finds a later claim stops processing (:mod:`edgerm.agent.dataflow.slot`).
- **State** (``state=``): a dict of JSON values. Before the first batch it is
  restored from the slot's retained checkpoint (same run); after each batch
  that changed it, a checkpoint (QoS 1, retained, at most 64 KiB encoded) is
  published before the batch's inputs are acknowledged. A stateful operator,
  like a sink, drops inputs its checkpoint already covers (by ``src``,
  ``seq``), so a redelivery after a move is not counted twice. A batch that
  leaves the state too big or not JSON fails (:class:`StateError`), and the
  state goes back to what it was before it.
- **Flow.** Input batches (QoS 1) go into a bounded queue (``EDGERM_DF_QUEUE``
  batches); when it is full the receive loop waits for room (the broker holds
  the rest), up to :data:`WAITING_MAX` waiting messages, past which the queue
  drops its oldest batch (counted, acknowledged). One worker takes them in
  order, merged up to ``EDGERM_DF_BATCH`` records, calls the function in a
  thread, and publishes the results (QoS 1) before taking the next.
- **Functions** return a record, ``None`` (drop it) or an iterable of records
  (per record), or an iterable of records (per batch). A call that raises (or
  returns something else) counts one error and drops its input: one record
  for a per-record function (the batch's other records go on), the whole
  batch for a per-batch one. A batch of which no record got through is a
  failed batch (acknowledged: a poison batch does not come back); after
  :data:`MAX_CONSECUTIVE_FAILURES` failed batches in a row the operator exits
  with status 1 (the task ends FAILED) and the last error on stderr.
- **Stats** go to ``edgerm/<dag>/<operator>/stats/<i>`` every second (QoS 0),
  with the fields the operator host publishes, so ``edgerm-dataflow`` shows
  rates, drops and errors for SDK operators too.
- **Ends.** SIGTERM or SIGINT (``docker stop``, a kill) publishes the final
  stats and exits 0; what was not acknowledged stays in the session for the
  next instance. A lost broker is retried with a capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiomqtt

from edgerm.agent.dataflow import mqtt, slot
from edgerm.agent.dataflow.contract import OperatorConfig, Role, parse_operator
from edgerm.agent.dataflow.delivery import MAX_STATE_BYTES, Ack, AckTracker, Checkpoint, Deduper
from edgerm.agent.dataflow.records import Batch, BatchQueue, Record, select, split
from edgerm.errors import ConfigError, MessageTooLarge, StateError

log = logging.getLogger("edgerm.dataflow.operator")

MAX_CONSECUTIVE_FAILURES = 10
STATS_INTERVAL = 1.0
RECONNECT_MAX = 5.0
WAITING_MAX = 1000  # messages waiting in aiomqtt while the input queue is full, before the queue drops
#: The checkpoint file that holds an SDK operator's state (JSON).
STATE_FILE = "state.json"

State = dict[str, Any]
PerRecord = Callable[[Record], "Record | Iterable[Record] | None"]
PerBatch = Callable[[list[Record]], Iterable[Record]]
StatefulRecord = Callable[[Record, State], "Record | Iterable[Record] | None"]
StatefulBatch = Callable[[list[Record], State], Iterable[Record]]

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "MAX_STATE_BYTES",
    "Counters",
    "Operator",
    "Record",
    "StateError",
    "decode",
    "encode",
    "run",
]


# -- the codec: the data plane's own, in one place -------------------------------------


def decode(payload: bytes, index: int = 0, replicas: int = 1) -> tuple[list[Record], int]:
    """The records of one input micro-batch that belong to this replica, and how many were malformed."""
    chosen = select(payload, index, replicas)
    return chosen.batch.decoded(), chosen.malformed


def encode(records: Iterable[Record], max_records: int) -> list[bytes]:
    """Output micro-batches (each within the batch bounds) for ``records``."""
    return [part.payload for part in split(Batch.of_records(list(records)), max_records)]


# -- the operator ----------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    """Cumulative counts, as the operator host publishes them."""

    received: int = 0
    sent: int = 0
    dropped: int = 0
    batches: int = 0
    errors: int = 0
    duplicates: int = 0  # inputs a stateful operator or a sink dropped as already covered


def _records(got: Record | Iterable[Record] | None) -> list[Record]:
    """What a user's function returned, as records; TypeError when it is something else."""
    if got is None:
        return []
    out: list[object] = [got] if isinstance(got, Record) else list(got)
    if not all(isinstance(r, Record) for r in out):
        raise TypeError("the function must return Record objects")
    return out  # type: ignore[return-value]


def per_batch(fn: PerRecord) -> PerBatch:
    """A per-batch function that calls ``fn`` on each record (the first failure fails the batch)."""

    def apply(records: list[Record]) -> list[Record]:
        out: list[Record] = []
        for r in records:
            out.extend(_records(fn(r)))
        return out

    return apply


@dataclass(slots=True)
class Outcome:
    """One batch through the user's function: its output, and the calls that failed."""

    out: list[Record]
    failed: int = 0  # calls that raised: records (per record) or 1 (per batch)
    lost: int = 0  # input records those calls dropped
    error: str = ""  # the last failure, ``Type: message``


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def batch_outcome(fn: PerBatch) -> Callable[[list[Record]], Outcome]:
    """Run a per-batch function: a failure costs the whole batch."""

    def apply(records: list[Record]) -> Outcome:
        try:
            return Outcome(_records(fn(records)))
        except Exception as e:  # the user's code: any error is that batch's failure, never the operator's end
            return Outcome([], 1, len(records), _error(e))

    return apply


def record_outcome(fn: PerRecord) -> Callable[[list[Record]], Outcome]:
    """Run a per-record function on each record: a record whose call fails costs that record alone."""

    def apply(records: list[Record]) -> Outcome:
        result = Outcome([])
        for r in records:
            try:
                result.out.extend(_records(fn(r)))
            except Exception as e:  # the user's code: that record's failure only
                result.failed += 1
                result.lost += 1
                result.error = f"record {r.src} {r.seq}: {_error(e)}"
        return result

    return apply


class Operator:
    """One operator instance over MQTT; see the module docstring."""

    def __init__(
        self,
        config: OperatorConfig,
        fn: PerBatch | StatefulBatch | None = None,
        *,
        record: PerRecord | StatefulRecord | None = None,
        state: State | None = None,
        task_id: str = "",
        agent_id: str = "",
    ) -> None:
        """``fn`` is a per-batch function, ``record`` a per-record one; exactly one of them. With ``state`` (a
        dict of JSON values) the function is called with the state as its second argument."""
        if (fn is None) == (record is None):
            raise TypeError("Operator takes either a per-batch function or record=, not both")
        if config.role is Role.SOURCE:
            raise ConfigError("EDGERM_DF_ROLE: the Python SDK runs operators and sinks, not sources")
        if state is not None and not isinstance(state, dict):
            raise TypeError("state= must be a dict (of JSON values)")
        self.config = config
        self.state = state
        self.fn = _outcome(fn, record, state)
        self.task_id = task_id or f"{config.operator}.{config.index}"
        self.agent_id = agent_id
        self.counters = Counters()
        self.queue = BatchQueue(config.queue)
        self.failures = 0
        self.last_error = ""
        self.started_from = ""  # the task whose checkpoint this instance started from, if any
        self.connected = asyncio.Event()
        self.restored = asyncio.Event()  # the checkpoint was looked for (and taken, if there was one)
        self.yielded = False  # a later instance took the slot over
        # A stateful operator, like a sink, drops inputs its checkpoint already covers (a redelivery).
        self._dedup = Deduper() if state is not None or config.role is Role.SINK else None
        self._acks = AckTracker()
        self._started = time.time()
        self._claim = slot.claim(self.task_id, self._started, config.run)
        self._state_json = _state_bytes(state) if state is not None else b""  # after the last good batch
        self._next_state = self._state_json
        self._checkpoint = b""  # the last checkpoint published (or restored)
        self._next_checkpoint = b""  # the checkpoint after the batch being processed
        self._ready = asyncio.Event()
        self._space = asyncio.Event()  # the input queue has room again
        self._client: aiomqtt.Client | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    # -- pure steps (unit-tested without a broker) ----------------------------------------

    def take_in(self, payload: bytes, acks: tuple[object, ...] = ()) -> None:
        """One input micro-batch: select this replica's records, enqueue (bounded); ``acks`` go with it."""
        chosen = select(payload, self.config.index, self.config.replicas, acks)
        self.counters.dropped += chosen.malformed
        if not chosen.batch:
            self._ack(acks)
            return
        self.counters.received += len(chosen.batch)  # any payload: numbers, JSON or bytes
        for lost in self.queue.put(chosen.batch):
            self.counters.dropped += len(lost)
            self._ack(lost.acks)
        self._ready.set()

    def apply(self, batch: Batch) -> list[bytes] | None:
        """Run the function over one batch: the payloads to publish, or ``None`` if it failed.

        For a stateful operator (or a sink) it also prepares the checkpoint to publish after them.
        """
        records = batch.decoded()
        dedup = self._dedup
        marks = dedup.marks() if dedup is not None else {}
        if dedup is not None:
            before = dedup.duplicates
            records = dedup.filter_records(records)
            self.counters.duplicates += dedup.duplicates - before
            if not records:
                return []
        result = self.fn(records)
        c = self.counters
        if not (result.failed and result.lost == len(records)):
            try:
                self._next_checkpoint = self._encode_checkpoint()
                self._state_json = self._next_state  # what a later failed batch goes back to
            except StateError as e:
                result = Outcome([], 1, len(records), f"{type(e).__name__}: {e}")
        if result.failed:
            c.errors += result.failed
            c.dropped += result.lost
            self.last_error = result.error
        if result.failed and result.lost == len(records):
            self._roll_back(marks)
            self.failures += 1
            log.info(
                "operator %s: batch of %d failed (%d in a row): %s",
                self.task_id,
                len(records),
                self.failures,
                self.last_error,
            )
            if self.failures >= MAX_CONSECUTIVE_FAILURES:
                self.finish(1)
            return None
        if result.failed:
            log.info(
                "operator %s: %d of %d records failed, the rest went on; last: %s",
                self.task_id,
                result.lost,
                len(records),
                self.last_error,
            )
        self.failures = 0
        c.batches += 1
        c.sent += len(result.out)
        return encode(result.out, self.config.batch)

    def _encode_checkpoint(self) -> bytes:
        """The checkpoint after this batch (empty for a stateless operator); StateError if it cannot be one."""
        if self.state is None and self._dedup is None:
            return b""
        files: dict[str, bytes] = {}
        if self.state is not None:
            self._next_state = files[STATE_FILE] = _state_bytes(self.state)
        marks = self._dedup.marks() if self._dedup is not None else {}
        try:
            return Checkpoint(self.task_id, self.config.run, files, None, marks).encode()
        except MessageTooLarge as e:
            raise StateError(f"operator {self.config.operator}: {e}") from None

    def _roll_back(self, marks: Mapping[str, tuple[int, float]]) -> None:
        """A failed batch leaves the state (and the inputs it covers) as they were before it."""
        if self._dedup is not None:
            duplicates = self._dedup.duplicates
            self._dedup = Deduper(marks)
            self._dedup.duplicates = duplicates
        if self.state is not None:
            self.state.clear()
            self.state.update(json.loads(self._state_json))
        self._next_checkpoint = self._checkpoint

    def restore(self, found: Checkpoint | None) -> None:
        """Start from the slot's checkpoint (if any): the state and the inputs it covers."""
        if found is not None and not found.empty:
            if self.state is not None and STATE_FILE in found.files:
                try:
                    restored = json.loads(found.files[STATE_FILE])
                    if not isinstance(restored, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    log.warning(
                        "operator %s: the checkpoint's state is not usable (%s); starting empty", self.task_id, e
                    )
                else:
                    self.state.clear()
                    self.state.update(restored)
                    self._state_json = _state_bytes(self.state)
            if self._dedup is not None:
                self._dedup = Deduper(found.marks)
            self.started_from = found.task
            log.info(
                "operator %s: started from the checkpoint of task %s (%d sources covered)",
                self.task_id,
                found.task,
                len(found.marks),
            )
        with contextlib.suppress(StateError):
            self._checkpoint = self._next_checkpoint = self._encode_checkpoint()
        self.restored.set()

    def stats(self) -> dict[str, object]:
        c = self.counters
        return {
            "agent": self.agent_id,
            "task": self.task_id,
            "in": c.received,
            "out": c.sent,
            "dropped": c.dropped,
            "batches": c.batches,
            "errors": c.errors,
            "duplicates": c.duplicates,
            "queued": len(self.queue),
            "t": round(time.time(), 3),
        }

    def finish(self, code: int) -> None:
        if not self._done.done():
            self._done.set_result(code)

    # -- I/O --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Until :meth:`finish` (a signal, or too many failures); returns the exit status."""
        if self._done.done():
            return self._done.result()
        jobs = [
            self._spawn(self._connection_loop(), "mqtt"),
            self._spawn(self._worker(), "worker"),
            self._spawn(self._stats_loop(), "stats"),
        ]
        try:
            return await self._done
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._publish_stats()
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        job = asyncio.create_task(coro, name=f"sdk-{name}")
        job.add_done_callback(self._job_done)
        return job

    def _job_done(self, job: asyncio.Task[None]) -> None:
        if job.cancelled() or (error := job.exception()) is None:
            return
        # The outermost boundary of the operator's jobs: a bug ends the process with status 1, and says why.
        log.error("operator %s: %s failed", self.task_id, job.get_name(), exc_info=error)
        self.last_error = f"{type(error).__name__}: {error}"
        self.finish(1)

    async def _connection_loop(self) -> None:
        """Hold the slot's session; reconnect when it drops; give the slot up to a later instance."""
        backoff = 0.1
        config = self.config
        logged = False
        while not self._done.done():
            client = mqtt.client(config.broker, config.client_id, will=slot.release(config, self.task_id))
            try:
                reconnecting = self.restored.is_set()
                if reconnecting:  # was the slot taken over meanwhile?
                    held, _ = await slot.read_slot(config, self.task_id, state=False)
                    if self._taken_by(held):
                        return
                else:  # claim the slot before taking the session; a live holder sees it and lets go
                    held, _ = await slot.read_slot(
                        config, self.task_id, state=False, claim=self._claim, handover=slot.HANDOVER_WAIT
                    )
                    if self._taken_by(held):
                        return
                async with client:
                    self._acks.connected()
                    if client.session_present:  # the broker sends the unacknowledged again
                        self.queue.drop_acked_by(self._stale_ack)
                    self._lost = asyncio.get_running_loop().create_future()
                    if not self.restored.is_set():
                        # The session is ours now, so the checkpoint read next is the last one that counts.
                        held, found = await slot.read_slot(config, self.task_id, state=True, claim=self._claim)
                        if self._taken_by(held):
                            return
                        self.restore(found)
                    await slot.subscribe(client, config)
                    if reconnecting:  # its will may have said it let go: it holds the slot again
                        await slot.clear_release(client, config)
                    self._client = client
                    self.connected.set()
                    logged = False
                    backoff = 0.1
                    log.info(
                        "operator %s: connected to %s as %s, reading %s",
                        self.task_id,
                        config.broker.url,
                        config.client_id,
                        list(config.inputs),
                    )
                    async for message in client.messages:
                        self._on_message(message)
                        if self.yielded:  # disconnect cleanly: the session (and what it holds) is the new one's
                            await slot.publish_release(client, config, self.task_id)
                            return
                        if self.queue.full and len(client.messages) < WAITING_MAX:
                            # Backpressure, not drops: the broker (and aiomqtt) hold the rest.
                            self._space.clear()
                            await self._space.wait()
            except aiomqtt.MqttError as e:
                if not logged:
                    log.warning("operator %s: broker %s: %s; reconnecting", self.task_id, config.broker.url, e)
                    logged = True
            finally:
                mqtt.settle(client)
                self._client = None
                self.connected.clear()
                if not self._lost.done():
                    self._lost.set_result(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    def _on_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
        if slot.is_claim(message, self.config):
            self._taken_by(slot.parse_claim(data, self.config.run))
            return
        acks: tuple[object, ...] = (self._acks.received(message.mid),) if message.qos > 0 else ()
        self.take_in(data, acks)

    def _stale_ack(self, token: object) -> bool:
        return isinstance(token, Ack) and token.generation != self._acks.generation

    def _taken_by(self, held: slot.Claim | None) -> bool:
        if not slot.later(held, self.task_id, self._started):
            return False
        self.yielded = True
        self._ready.set()  # the worker sees it and stops
        log.info(
            "operator %s: slot %s taken over by task %s; this instance stops processing",
            self.task_id,
            self.config.client_id,
            held[0] if held else "",
        )
        return True

    def _ack(self, tokens: tuple[object, ...]) -> None:
        """Acknowledge what a finished batch came from (in the order the messages came)."""
        if not tokens:
            return
        client = self._client
        for mid in self._acks.done(tokens):
            if client is not None:
                with contextlib.suppress(aiomqtt.MqttError, RuntimeError):
                    mqtt.ack(client, mid)

    async def _worker(self) -> None:
        await self.restored.wait()
        while not self._done.done() and not self.yielded:
            batch = self.queue.take(self.config.batch)
            self._space.set()
            if batch is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            payloads = await asyncio.to_thread(self.apply, batch)
            for payload in payloads or ():
                await self._publish(self.config.output, payload)
            if self._next_checkpoint and self._next_checkpoint != self._checkpoint:
                await self._publish(self.config.state_topic, self._next_checkpoint, retain=True)
                self._checkpoint = self._next_checkpoint
            self._ack(batch.acks)

    async def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 (PUBACK awaited), waiting through a reconnection if the broker is away."""
        while not self._done.done():
            await self.connected.wait()
            client = self._client
            if client is None:
                await asyncio.sleep(0.01)
                continue
            lost = self._lost
            job = asyncio.ensure_future(client.publish(topic, payload, qos=1, retain=retain))
            try:
                # aiomqtt does not always fail a publish whose connection dropped: stop waiting when it drops.
                await asyncio.wait((job, lost), return_when=asyncio.FIRST_COMPLETED)
                if not job.done():
                    raise aiomqtt.MqttError("the connection dropped before the PUBACK")
                job.result()
                return
            except aiomqtt.MqttError as e:
                log.debug("publish to %s failed (%s); waiting for the connection", topic, e)
                await asyncio.sleep(0.05)
            finally:
                if not job.done():
                    job.cancel()
        raise asyncio.CancelledError

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


def _state_bytes(state: State) -> bytes:
    """The state as compact JSON; StateError when it holds something else than JSON values."""
    try:
        return json.dumps(state, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise StateError(f"the operator's state must hold JSON values only: {e}") from None


def _outcome(
    fn: PerBatch | StatefulBatch | None, record: PerRecord | StatefulRecord | None, state: State | None
) -> Callable[[list[Record]], Outcome]:
    if state is None:
        if fn is not None:
            return batch_outcome(cast(PerBatch, fn))
        return record_outcome(cast(PerRecord, record))
    if fn is not None:
        stateful_batch = cast(StatefulBatch, fn)
        return batch_outcome(lambda records: stateful_batch(records, state))
    stateful_record = cast(StatefulRecord, record)
    return record_outcome(lambda r: stateful_record(r, state))


def run(
    fn: PerRecord | StatefulRecord | None = None,
    *,
    batch: PerBatch | StatefulBatch | None = None,
    state: State | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run an operator until it is stopped, then exit the process (status 0; 1 failed; 2 bad environment).

    ``fn`` is called per record, ``batch`` per batch (one of them). With ``state`` (a dict of JSON values, the
    initial state) the function gets the state as a second argument and may change it in place; it is
    checkpointed after each batch that changed it and restored when the operator moves.
    """
    if (fn is None) == (batch is None):
        raise TypeError("run() takes either a per-record function or batch=, not both")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = os.environ if env is None else env
    try:
        config = parse_operator(env)
    except ConfigError as e:
        print(f"edgerm operator: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(_main(config, fn, batch, state, env)))


async def _main(
    config: OperatorConfig,
    fn: PerRecord | StatefulRecord | None,
    batch: PerBatch | StatefulBatch | None,
    state: State | None,
    env: Mapping[str, str],
) -> int:
    task, agent = env.get("EDGERM_TASK_ID", ""), env.get("EDGERM_AGENT_ID", "")
    try:
        op = Operator(config, batch, record=fn, state=state, task_id=task, agent_id=agent)
    except StateError as e:
        print(f"edgerm operator: the initial state: {e}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, op.finish, 0)
    code = await op.run()
    if code:
        print(f"edgerm operator: {op.failures} batches failed in a row; last: {op.last_error}", file=sys.stderr)
    log.info("operator %s: ended (status %d)", op.task_id, code)
    return code
