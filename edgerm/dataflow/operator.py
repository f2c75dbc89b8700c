"""The Python operator SDK: a dataflow operator in a few lines, run in any container.

::

    from edgerm.dataflow.operator import Record, run

    def to_fahrenheit(r: Record) -> Record:
        return Record(r.src, r.seq, r.t, r.value * 1.8 + 32)

    if __name__ == "__main__":
        run(to_fahrenheit)              # per record; or run(batch=f) with f(list[Record]) -> list[Record]

The operator speaks the dataflow contract (docs/dataflow.md) like the agent's
operator host does for WebAssembly modules:

- **Configuration** comes from the task's environment, parsed by the same
  code the agent uses (:func:`edgerm.agent.dataflow.contract.parse_operator`):
  ``EDGERM_DF_IN`` (input topics), ``EDGERM_DF_OUT``, ``EDGERM_DF_REPLICA``,
  ``EDGERM_DF_BATCH``, ``EDGERM_DF_QUEUE``, ``EDGERM_BROKER``; the Docker
  runtime adds ``EDGERM_TASK_ID`` and ``EDGERM_AGENT_ID``. A bad environment
  exits with status 2 and the key named on stderr.
- **Records** are decoded and encoded by the data plane's own codec
  (:mod:`edgerm.agent.dataflow.records`), so an SDK operator follows the
  record format wherever it goes. Malformed input records are counted as
  dropped and never reach the function; a replica keeps only the sources that
  hash to its index.
- **Flow.** Input batches (QoS 1) go into a bounded queue (``EDGERM_DF_QUEUE``
  batches; when full the oldest is dropped and counted); one worker takes
  them in order, merged up to ``EDGERM_DF_BATCH`` records, calls the function
  in a thread, and publishes the results (QoS 1) before taking the next.
- **Functions** return a record, ``None`` (drop it) or an iterable of records
  (per record), or an iterable of records (per batch). A call that raises (or
  returns something else) counts one error and drops its input: one record
  for a per-record function (the batch's other records go on), the whole
  batch for a per-batch one. A batch of which no record got through is a
  failed batch; after :data:`MAX_CONSECUTIVE_FAILURES` failed batches in a row
  the operator exits with status 1 (the task ends FAILED) and the last error
  on stderr.
- **Stats** go to ``edgerm/<dag>/<operator>/stats/<i>`` every second (QoS 0),
  with the fields the operator host publishes, so ``edgerm-dataflow`` shows
  rates, drops and errors for SDK operators too.
- **Ends.** SIGTERM or SIGINT (``docker stop``, a kill) publishes the final
  stats and exits 0. A lost broker is retried with a capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import aiomqtt

from edgerm.agent.dataflow import mqtt
from edgerm.agent.dataflow.contract import OperatorConfig, Role, parse_operator
from edgerm.agent.dataflow.records import Batch, BatchQueue, Record, select, split
from edgerm.errors import ConfigError

log = logging.getLogger("edgerm.dataflow.operator")

MAX_CONSECUTIVE_FAILURES = 10
STATS_INTERVAL = 1.0
RECONNECT_MAX = 5.0
KEEPALIVE = 10

PerRecord = Callable[[Record], "Record | Iterable[Record] | None"]
PerBatch = Callable[[list[Record]], Iterable[Record]]

__all__ = ["MAX_CONSECUTIVE_FAILURES", "Counters", "Operator", "Record", "decode", "encode", "run"]


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
        fn: PerBatch | None = None,
        *,
        record: PerRecord | None = None,
        task_id: str = "",
        agent_id: str = "",
    ) -> None:
        """``fn`` is a per-batch function, ``record`` a per-record one; exactly one of them."""
        if (fn is None) == (record is None):
            raise TypeError("Operator takes either a per-batch function or record=, not both")
        if config.role is Role.SOURCE:
            raise ConfigError("EDGERM_DF_ROLE: the Python SDK runs operators and sinks, not sources")
        self.config = config
        self.fn = batch_outcome(fn) if fn is not None else record_outcome(record)  # type: ignore[arg-type]
        self.task_id = task_id or f"{config.operator}.{config.index}"
        self.agent_id = agent_id
        self.counters = Counters()
        self.queue = BatchQueue(config.queue)
        self.failures = 0
        self.last_error = ""
        self.connected = asyncio.Event()
        self._ready = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    # -- pure steps (unit-tested without a broker) ----------------------------------------

    def take_in(self, payload: bytes) -> None:
        """One input micro-batch: decode, select this replica's records, enqueue (bounded)."""
        records, malformed = decode(payload, self.config.index, self.config.replicas)
        self.counters.dropped += malformed
        if not records:
            return
        self.counters.received += len(records)
        dropped = self.queue.put(Batch.of_records(records))  # any payload: numbers, JSON or bytes
        self.counters.dropped += sum(len(b) for b in dropped)
        self._ready.set()

    def apply(self, batch: Batch) -> list[bytes] | None:
        """Run the function over one batch: the payloads to publish, or ``None`` if it failed."""
        records = batch.decoded()
        result = self.fn(records)
        c = self.counters
        if result.failed:
            c.errors += result.failed
            c.dropped += result.lost
            self.last_error = result.error
        if result.failed and result.lost == len(records):
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
            "queued": len(self.queue),
            "t": round(time.time(), 3),
        }

    def finish(self, code: int) -> None:
        if not self._done.done():
            self._done.set_result(code)

    # -- I/O --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Until :meth:`finish` (a signal, or too many failures); returns the exit status."""
        jobs = [
            asyncio.create_task(self._connection_loop(), name="sdk-mqtt"),
            asyncio.create_task(self._worker(), name="sdk-worker"),
            asyncio.create_task(self._stats_loop(), name="sdk-stats"),
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

    async def _connection_loop(self) -> None:
        backoff = 0.1
        broker = self.config.broker
        while True:
            client = mqtt.Client(  # aiomqtt's, with Nagle off (edgerm.agent.dataflow.mqtt)
                broker.host,
                broker.port,
                username=broker.username,
                password=broker.password,
                tls_context=ssl.create_default_context(cafile=broker.ca) if broker.tls else None,
                identifier=f"edgerm-sdk-{self.config.dag}-{self.config.operator}.{self.config.index}"[:60],
                clean_session=True,
                keepalive=KEEPALIVE,
                timeout=10,
            )
            try:
                async with client:
                    for topic in self.config.inputs:
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    self.connected.set()
                    backoff = 0.1
                    log.info("operator %s: connected to %s, reading %s", self.task_id, broker.url, self.config.inputs)
                    async for message in client.messages:
                        if isinstance(message.payload, bytes | bytearray):
                            self.take_in(bytes(message.payload))
            except aiomqtt.MqttError as e:
                log.warning("operator %s: broker %s: %s; reconnecting in %.1fs", self.task_id, broker.url, e, backoff)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    async def _worker(self) -> None:
        while True:
            batch = self.queue.take(self.config.batch)
            if batch is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            payloads = await asyncio.to_thread(self.apply, batch)
            for payload in payloads or ():
                await self._publish(payload)

    async def _publish(self, payload: bytes) -> None:
        while True:
            await self.connected.wait()
            client = self._client
            if client is None:
                continue
            try:
                await client.publish(self.config.output, payload, qos=1)
                return
            except aiomqtt.MqttError as e:  # the connection loop reconnects; publish again then
                log.info("operator %s: publish failed (%s); retrying", self.task_id, e)
                await asyncio.sleep(0.1)

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


def run(fn: PerRecord | None = None, *, batch: PerBatch | None = None, env: Mapping[str, str] | None = None) -> None:
    """Run an operator until it is stopped, then exit the process (status 0; 1 failed; 2 bad environment)."""
    if (fn is None) == (batch is None):
        raise TypeError("run() takes either a per-record function or batch=, not both")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = os.environ if env is None else env
    try:
        config = parse_operator(env)
    except ConfigError as e:
        print(f"edgerm operator: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(_main(config, fn, batch, env)))


async def _main(config: OperatorConfig, fn: PerRecord | None, batch: PerBatch | None, env: Mapping[str, str]) -> int:
    task, agent = env.get("EDGERM_TASK_ID", ""), env.get("EDGERM_AGENT_ID", "")
    op = Operator(config, batch, record=fn, task_id=task, agent_id=agent)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, op.finish, 0)
    code = await op.run()
    if code:
        print(f"edgerm operator: {op.failures} batches failed in a row; last: {op.last_error}", file=sys.stderr)
    log.info("operator %s: ended (status %d)", op.task_id, code)
    return code
