"""Dataflow figures the master hears: each operator instance's stats, from the MQTT broker.

Role: every dataflow operator instance publishes its cumulative figures
(records in and out, drops, failed batches) to
``edgerm/<dag>/<operator>/stats/<i>`` once a second (docs/dataflow.md).
:class:`StatsListener` subscribes to all of them on the broker the master
names to agents and feeds :class:`DataflowStats`, which keeps the latest
report per instance and the rates between two reports, for the dashboard's
dataflow page.

Rules:
- :class:`DataflowStats` is plain bookkeeping (no I/O): at most
  :data:`MAX_DAGS` DAGs and :data:`MAX_INSTANCES` instances per DAG (the
  oldest DAG goes first); a malformed report is counted and ignored.
- The listener is best effort: the dashboard shows placements without it.
  It reconnects with backoff when the broker goes away, logs once per
  outage, and :meth:`StatsListener.stop` ends it. A connection attempt is
  bounded (:data:`CONNECT_TIMEOUT`) and never cancelled midway (aiomqtt
  then logs a spurious traceback): stop waits for it to end first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from edgerm.dataflow_keys import TOPIC_ROOT

log = logging.getLogger(__name__)

MAX_DAGS = 64
MAX_INSTANCES = 1024
STATS_FILTER = f"{TOPIC_ROOT}/+/+/stats/+"
CONNECT_TIMEOUT = 5.0


class _LateAcknowledgements(logging.Filter):
    """aiomqtt logs the broker's acknowledgement of a subscription it has given up (the listener was
    stopped while subscribing: a master stopped right after it started) as an error with a traceback.
    That is an expected condition: it becomes one DEBUG line here."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Unexpected message ID"):
            log.debug("dataflow stats: %s (a subscription given up while stopping)", message)
            return False
        return True


#: The stats listener's MQTT client logs here (aiomqtt's and paho's lines), through the filter above.
MQTT_LOG = logging.getLogger(__name__ + ".mqtt")
MQTT_LOG.addFilter(_LateAcknowledgements())


@dataclass(frozen=True, slots=True)
class InstanceReport:
    received: int
    emitted: int
    dropped: int
    errors: int
    t: float
    in_rate: float = 0.0
    out_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class OperatorStats:
    """An operator's figures summed over its instances."""

    in_rate: float
    out_rate: float
    dropped: int
    errors: int
    instances: int


class DataflowStats:
    """The latest stats report of every instance, by DAG (see the module docstring)."""

    def __init__(self) -> None:
        self._dags: OrderedDict[str, dict[tuple[str, int], InstanceReport]] = OrderedDict()
        self.malformed = 0

    def report(self, topic: str, payload: bytes) -> bool:
        """Take one message from a stats topic; False (and counted) when it is not a stats report."""
        parts = topic.split("/")
        if len(parts) != 5 or parts[0] != TOPIC_ROOT or parts[3] != "stats" or not parts[4].isdigit():
            self.malformed += 1
            return False
        dag, operator, index = parts[1], parts[2], int(parts[4])
        try:
            data = json.loads(payload)
            got = InstanceReport(
                int(data.get("in", 0)),
                int(data.get("out", 0)),
                int(data.get("dropped", 0)),
                int(data.get("errors", 0)),
                float(data.get("t", 0.0)),
            )
        except (ValueError, TypeError, AttributeError):
            self.malformed += 1
            return False
        instances = self._dags.get(dag)
        if instances is None:
            instances = self._dags[dag] = {}
            while len(self._dags) > MAX_DAGS:
                self._dags.popitem(last=False)
        key = (operator, index)
        prev = instances.get(key)
        if prev is not None and got.t > prev.t and got.received >= prev.received:
            dt = got.t - prev.t
            got = InstanceReport(
                got.received,
                got.emitted,
                got.dropped,
                got.errors,
                got.t,
                (got.received - prev.received) / dt,
                (got.emitted - prev.emitted) / dt,
            )
        if key in instances or len(instances) < MAX_INSTANCES:
            instances[key] = got
        return True

    def operators(self, dag: str) -> dict[str, OperatorStats]:
        out: dict[str, OperatorStats] = {}
        for (operator, _), r in self._dags.get(dag, {}).items():
            have = out.get(operator)
            if have is None:
                out[operator] = OperatorStats(r.in_rate, r.out_rate, r.dropped, r.errors, 1)
            else:
                out[operator] = OperatorStats(
                    have.in_rate + r.in_rate,
                    have.out_rate + r.out_rate,
                    have.dropped + r.dropped,
                    have.errors + r.errors,
                    have.instances + 1,
                )
        return out


def _own_tls() -> ssl.SSLContext:
    """TLS to the master's own embedded broker, in this process: encrypted, and not verified (the master
    need not hold a CA for its own certificate; it logs in with a password made for this process)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class StatsListener:
    """Subscribes to every instance's stats topic on ``broker_url`` and feeds ``stats``."""

    def __init__(
        self,
        broker_url: str,
        stats: DataflowStats,
        *,
        backoff_max: float = 10.0,
        login: tuple[str, str] | None = None,
    ) -> None:
        """``login``: (username, password) for a broker that requires one (the master's own, on a secure master)."""
        self._url = urlsplit(broker_url)
        self._login = login
        self._stats = stats
        self._backoff_max = backoff_max
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # set while no connection attempt is under way
        self._idle.set()
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="edgerm-master-dataflow-stats")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONNECT_TIMEOUT + 1):
                    await self._idle.wait()
            task.cancel()
            await asyncio.wait([task])

    async def _run(self) -> None:
        import aiomqtt  # only a master with a broker loads the client

        host, port = self._url.hostname or "127.0.0.1", self._url.port or 1883
        backoff, failing = 0.2, False
        while True:
            try:
                self._idle.clear()
                try:
                    username, password = self._login if self._login is not None else (None, None)
                    client = aiomqtt.Client(
                        host,
                        port,
                        username=username,
                        password=password,
                        timeout=CONNECT_TIMEOUT,
                        tls_context=_own_tls() if self._url.scheme == "mqtts" else None,
                        logger=MQTT_LOG,
                    )
                    await client.__aenter__()
                finally:
                    self._idle.set()
                try:
                    await client.subscribe(STATS_FILTER, qos=0)
                    self.connected.set()
                    if failing:
                        log.info("dataflow stats: connected to the broker again")
                    backoff, failing = 0.2, False
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            self._stats.report(str(message.topic), bytes(payload))
                finally:
                    with contextlib.suppress(aiomqtt.MqttError):
                        await client.__aexit__(None, None, None)
            except aiomqtt.MqttError as e:
                self.connected.clear()
                if not failing:
                    log.warning("dataflow stats: broker %s:%d not reachable (%s); retrying", host, port, e)
                    failing = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)
