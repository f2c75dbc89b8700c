"""``DataflowRun``: one DAG run end to end: the framework, its driver, the monitor, the status.

::

    run = DataflowRun(dag, master_url, broker_url=None, options=RunOptions(deadline=30))
    await run.start()          # subscribes; the monitor reads the broker
    await run.wait(duration)   # until the DAG failed, or `duration` passed (None: until cancelled)
    await run.stop()           # kills every task, waits for their end, tears the framework down
    run.exit_code              # 0 ran (and stopped) cleanly, 1 failed, 2 master unreachable/refused

Rules:

- ``broker_url`` ``None`` asks the master (:func:`discover_broker`, reading
  ``broker_url`` from its state when it lists one), else assumes the
  master's default embedded broker (its host, port 1883). The monitor
  retries a broker it cannot reach; the DAG runs regardless, only the live
  figures (rates, records, losses) need the broker.
- :meth:`stop` is idempotent and always leaves nothing behind: after at most
  ``stop_timeout`` seconds of waiting for KILLED updates, the framework is
  torn down at the master (which kills whatever is left) and every
  background task is cancelled and awaited.
- Status lines and sink records go to ``out`` (a callable taking text); the
  CLI passes ``print``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from edgerm.auth.client import bearer, client_ssl, resolve_token
from edgerm.auth.principal import Role
from edgerm.dataflow_records import Record
from edgerm.errors import Unavailable, WireError
from edgerm.frameworks.dataflow.contract import CONSOLE, sink_delivery
from edgerm.frameworks.dataflow.framework import DataflowFramework, FrameworkView, Move, MoveListener, Phase
from edgerm.frameworks.dataflow.monitor import Monitor, broker_address
from edgerm.frameworks.dataflow.quality import QualityWatch
from edgerm.frameworks.dataflow.status import render, status_json
from edgerm.frameworks.dataflow.watch import StreamWatch, WatchView
from edgerm.frameworks.http_driver import HttpDriver
from edgerm.scheduler import LOCALITY, Dag, Instance, OperatorKind, Policy

log = logging.getLogger(__name__)

DEFAULT_BROKER_PORT = 1883  # edgerm-master --broker-port default

Out = Callable[[str], None]


class RecordsMode:
    ALL = "all"  # every record arriving at a console sink
    SAMPLE = "sample"  # per batch: how many, and the last one
    NONE = "none"

    CHOICES = (ALL, SAMPLE, NONE)


@dataclass(frozen=True, slots=True)
class RunOptions:
    deadline: float | None = None  # seconds to wait for a complete placement; None: forever
    status_interval: float = 2.0  # seconds between status blocks; 0: none
    records: str = RecordsMode.SAMPLE
    watch_all: bool = True  # watch every edge (loss counting) or the sinks only
    refuse_seconds: float = 30.0
    retry_seconds: float = 2.0
    max_failures: int = 10
    policy: Policy = LOCALITY
    stop_timeout: float = 5.0
    tick_interval: float = 0.25
    move_grace: float = 2.0
    quality_hold: float = 30.0  # seconds a variant that broke a quality condition is held off (doubling)


async def discover_broker(master_url: str, within: float = 5.0) -> str | None:
    """The broker URL the master advertises in its state (``None`` if it names none)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as http,
            http.get(
                master_url.rstrip("/") + "/api/v1/state",
                headers=bearer(resolve_token(None, master_url, Role.FRAMEWORK)),
                ssl=client_ssl(master_url) or True,
            ) as resp,
        ):
            if resp.status != 200:
                raise Unavailable(f"the master at {master_url} answered HTTP {resp.status}")
            state = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise Unavailable(f"cannot reach the master at {master_url}: {e}") from None
    master = state.get("master", {}) if isinstance(state, dict) else {}
    for where in (master, state):
        if isinstance(where, dict):
            for key in ("broker_url", "broker"):
                url = where.get(key)
                if isinstance(url, str) and url:
                    return url
    return None


def default_broker(master_url: str) -> str:
    """Where ``edgerm-master`` embeds its broker by default: its own host, port 1883."""
    host = urlsplit(master_url).hostname or "127.0.0.1"
    return f"mqtt://{host}:{DEFAULT_BROKER_PORT}"


class _StreamEndFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "event stream lost" not in record.getMessage()


@contextlib.contextmanager
def _expected_stream_end() -> Iterator[None]:
    """During our own teardown the master closes the stream first; the driver's warning about it is noise."""
    driver_log = logging.getLogger("edgerm.frameworks.http_driver")
    quiet = _StreamEndFilter()
    driver_log.addFilter(quiet)
    try:
        yield
    finally:
        driver_log.removeFilter(quiet)


class _Listener(MoveListener):
    def __init__(self, watch: StreamWatch) -> None:
        self.watch = watch

    def instance_gone(self, instance: Instance) -> None:
        self.watch.move_started(instance, time.time())

    def instance_resumed(self, instance: Instance) -> None:
        self.watch.move_ended(instance, time.time())


class DataflowRun:
    """Runs one DAG; see the module docstring."""

    def __init__(
        self,
        dag: Dag,
        master_url: str,
        *,
        broker_url: str | None = None,
        options: RunOptions | None = None,
        out: Out | None = None,
    ) -> None:
        self.dag = dag
        self.master_url = master_url
        self.broker_url = broker_url
        self.options = options or RunOptions()
        self.out = out
        self.watch = StreamWatch(dag, grace=self.options.move_grace)
        self.framework = DataflowFramework(
            dag,
            deadline=self.options.deadline,
            refuse_seconds=self.options.refuse_seconds,
            retry_seconds=self.options.retry_seconds,
            max_failures=self.options.max_failures,
            policy=self.options.policy,
            listener=_Listener(self.watch),
            hold_seconds=self.options.quality_hold,
            probe_needs_report=True,  # main's probe after a hold: it must run and publish stats
        )
        self.quality = QualityWatch(dag)
        self._moves_seen = 0
        self.driver = HttpDriver(self.framework, master_url, name=f"dataflow:{dag.name}", max_retries=5)
        self.monitor: Monitor | None = None
        self.driver_error: WireError | None = None
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._driver_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._console = {
            op.name
            for op in dag.operators
            if op.kind is OperatorKind.SINK and all(sink_delivery(v) == CONSOLE for v in op.variants)
        }

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the master and start watching the broker (ConfigError on a bad broker URL)."""
        if self.broker_url is None:
            self.broker_url = await discover_broker(self.master_url)
            if self.broker_url is None:
                self.broker_url = default_broker(self.master_url)
                self._say(f"assuming the master's default embedded broker {self.broker_url} (else pass --broker)")
        if self.broker_url:
            broker_address(self.broker_url)  # fail early on a bad URL
            self.monitor = Monitor(
                self.broker_url,
                self.dag,
                self.watch,
                on_sink=self._on_sink,
                watch_all=self.options.watch_all,
                password=resolve_token(None, self.master_url, Role.FRAMEWORK),
            )
            self._tasks.append(asyncio.create_task(self.monitor.run(), name="dataflow-monitor"))
            with contextlib.suppress(TimeoutError):  # subscribe before the first record flows, if we can
                async with asyncio.timeout(5.0):
                    await self.monitor.ready.wait()
        self.started = time.monotonic()
        self._driver_task = asyncio.create_task(self._drive(), name="dataflow-driver")
        self._tasks.append(asyncio.create_task(self._ticker(), name="dataflow-ticker"))
        if self.out is not None and self.options.status_interval > 0:
            self._tasks.append(asyncio.create_task(self._status_loop(), name="dataflow-status"))

    async def wait(self, duration: float | None = None) -> None:
        """Until the DAG failed or the driver ended, or ``duration`` seconds passed."""
        assert self._driver_task is not None, "start() first"
        done = asyncio.create_task(self.framework.done.wait())
        try:
            await asyncio.wait([done, self._driver_task], timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            await asyncio.wait([done])

    async def wait_running(self, within: float) -> bool:
        """Until every instance is RUNNING (True), or ``within`` seconds passed / the DAG failed (False)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.framework.done.is_set():
            v = self.framework.view()
            if not v.pending and v.instances and all(i.state == "RUNNING" for i in v.instances):
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self) -> None:
        """Kill every task, wait (bounded) for them to end, tear down, stop watching."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._driver_task is not None and not self._driver_task.done():
                try:
                    await self.framework.shutdown(self.driver)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.options.stop_timeout):
                            await self.framework.done.wait()
                except WireError as e:
                    log.warning("stopping the tasks: %s", e)
                try:
                    with _expected_stream_end():
                        await self.driver.stop(teardown=True)
                except WireError as e:
                    log.warning("teardown: %s", e)
                await asyncio.wait([self._driver_task])
        finally:
            for t in self._tasks:
                t.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)
        if self.out is not None and self.options.status_interval > 0:
            self._say(self.render())

    # -- results ----------------------------------------------------------------------

    @property
    def exit_code(self) -> int:
        if self.driver_error is not None:
            return 2
        return 1 if self.framework.phase is Phase.FAILED else 0

    @property
    def failure(self) -> str:
        if self.driver_error is not None:
            return f"{type(self.driver_error).__name__}: {self.driver_error}"
        return self.framework.failure

    @property
    def moves(self) -> list[Move]:
        return list(self.framework.moves)

    def views(self) -> tuple[FrameworkView, WatchView | None, float]:
        watch = self.watch.view(time.time()) if self.monitor is not None else None
        return self.framework.view(), watch, time.monotonic() - self.started

    def render(self) -> str:
        return render(*self.views())

    def status(self) -> dict[str, object]:
        fw, watch, elapsed = self.views()
        return {**status_json(fw, watch, elapsed), "broker": self.broker_url or None}

    # -- background work --------------------------------------------------------------

    async def _drive(self) -> None:
        try:
            await self.driver.run()
        except WireError as e:
            self.driver_error = e
            self.framework.done.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick_interval)
            if self.driver.subscribed:
                try:
                    await self.framework.tick(self.driver)
                    await self._check_quality()
                except WireError as e:
                    log.info("tick: %s", e)

    async def _check_quality(self) -> None:
        """Judge the DAG's quality conditions; a broken one switches its operator (the core decides)."""
        if not self.quality.conditions or self.monitor is None:
            return
        now = time.time()
        fw = self.framework
        reporting = self.watch.reporting()
        probing = [t.task_id for t in fw.live.values() if t.replaces is not None and t.task_id in reporting]
        if probing:
            await fw.instances_reported(self.driver, probing)
        view = fw.view()
        steady = (
            fw.phase is Phase.RUNNING
            and not view.pending
            and all(i.state == "RUNNING" and i.task_id in reporting for i in view.instances)
        )  # every instance runs and has reported: it is connected, its figures count
        if not steady or len(fw.moves) != self._moves_seen:
            self._moves_seen = len(fw.moves)
            self.quality.rearm(now)  # judge the pipeline as it runs now, not what it was
            return
        for breach in self.quality.check(self.watch, now):
            who = f"operator {breach.operator}" if breach.operator else "the DAG"
            log.info("dataflow %s: quality condition of %s broken: %s", self.dag.name, who, breach.figure)
            await fw.quality_broken(self.driver, breach.operator, breach.figure)
            self.quality.rearm(now)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.status_interval)
            self._say(self.render())

    def _on_sink(self, operator: str, records: list[Record]) -> None:
        if operator not in self._console or self.options.records == RecordsMode.NONE:
            return
        if self.options.records == RecordsMode.ALL:
            for record in records:
                self._say(f"[{operator}] {_shown(record)}")
        else:
            self._say(f"[{operator}] +{len(records)} record(s), last: {_shown(records[-1])}")

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out(text)


def _shown(record: Record) -> str:
    """A record as the console shows it: its text line, or its header and size for bytes."""
    value = record.value
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{record.src} {record.seq} {record.t:.6f} <{len(value)} bytes {record.content_type}>"
    return record.line()


__all__ = ["DataflowRun", "RecordsMode", "RunOptions", "discover_broker"]
