"""``Monitor``: the framework's MQTT subscriber, feeding a :class:`StreamWatch`.

It subscribes to every instance's stats topic of the DAG (QoS 0) and to the
operators' out topics (QoS 1): every operator's when ``watch_all`` (so
losses are counted on the most downstream topic that keeps ``src``/``seq``),
else the sinks' only. Records arriving on a sink's topic are handed to
``on_sink`` as text lines (the console printer; a sink module may format
them as CSV or JSON, so they are not parsed for it).

Rules: it only reads; a broken connection is retried with a capped backoff
and never ends the run; ``ready`` is set once the subscriptions are in place
(after each reconnection too). Like any client (``mosquitto_sub -t
'edgerm/#'``), it needs nothing but the broker URL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiomqtt

from edgerm.auth.client import CA_ENV
from edgerm.dataflow_keys import out_topic
from edgerm.dataflow_records import Record
from edgerm.errors import ConfigError
from edgerm.frameworks.dataflow.contract import parse_topic, stats_filter
from edgerm.frameworks.dataflow.watch import StreamWatch
from edgerm.ids import new_id
from edgerm.scheduler import Dag, OperatorKind

log = logging.getLogger(__name__)

SinkCallback = Callable[[str, list[Record]], None]  # operator, the batch's records (as the watch decoded them)


def broker_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``mqtt://host[:port]`` (1883) or ``mqtts://host[:port]`` (8883) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"broker URL {url!r}: expected mqtt://host:port or mqtts://host:port")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"broker URL {url!r}: bad port") from None
    return parts.hostname, port


class Monitor:
    """Reads a DAG's stats and records from the broker until cancelled."""

    def __init__(
        self,
        broker_url: str,
        dag: Dag,
        watch: StreamWatch,
        *,
        on_sink: SinkCallback | None = None,
        watch_all: bool = True,
        clock: Callable[[], float] = time.time,
        password: str | None = None,
    ) -> None:
        """``password``: the framework's bearer token, the broker login on a secure master."""
        self.host, self.port = broker_address(broker_url)
        self._password = password
        # mqtts: verified against $EDGERM_CA (the CA the driver verifies the master with), else the system's.
        ca = os.environ.get(CA_ENV) or None
        self._tls = ssl.create_default_context(cafile=ca) if broker_url.startswith("mqtts:") else None
        self.url = broker_url
        self.dag = dag
        self.watch = watch
        self.on_sink = on_sink
        self.clock = clock
        self.ready = asyncio.Event()
        self.connected_once = False
        self._sinks = {op.name for op in dag.operators if op.kind is OperatorKind.SINK}
        watched = [op.name for op in dag.operators if watch_all or op.name in self._sinks]
        self._topics = [(stats_filter(dag.name), 0)] + [(out_topic(dag.name, n), 1) for n in watched]

    async def run(self) -> None:
        """Connect, subscribe and dispatch; reconnect after a drop (until cancelled)."""
        delay = 0.2
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=f"edgerm-dataflow-{new_id()[:12]}",
                    keepalive=10,
                    username="framework" if self._password else None,
                    password=self._password,
                    tls_context=self._tls,
                ) as client:
                    for topic, qos in self._topics:
                        await client.subscribe(topic, qos=qos)
                    self.ready.set()
                    self.connected_once = True
                    delay = 0.2
                    async for message in client.messages:
                        self._dispatch(str(message.topic), message.payload)
            except aiomqtt.MqttError as e:
                self.ready.clear()
                log.info("broker %s: %s; reconnecting in %.1fs", self.url, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _dispatch(self, topic: str, payload: object) -> None:
        parsed = parse_topic(topic)
        if parsed is None or parsed.dag != self.dag.name or not isinstance(payload, bytes | bytearray):
            return
        data = bytes(payload)
        if parsed.stats_index is not None:
            self.watch.stats(parsed.operator, parsed.stats_index, data)
            return
        records = self.watch.batch(parsed.operator, data, self.clock())
        # The records the watch decoded, not the payload again: a binary batch is no text to split.
        if self.on_sink is not None and records and parsed.operator in self._sinks:
            self.on_sink(parsed.operator, records)
