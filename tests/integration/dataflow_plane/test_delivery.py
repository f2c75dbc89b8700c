"""At-least-once delivery across a move, on real brokers: persistent sessions, state checkpoints, sink dedup.

An operator instance is killed while records keep coming; a replacement task with the same environment (the
framework's move) is started on another runtime (another agent). On mosquitto nothing is lost: the slot's
session queued what came meanwhile and what the old instance had not acknowledged, and an aggregate continues
its window from the checkpoint. On the embedded amqtt broker (anonymous clients) amqtt keeps no session for an
anonymous client, so what came while no instance was connected is lost, and the test says how much.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgerm.agent.dataflow.host import OperatorHost
from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.agent.wasm import load_module
from edgerm.ids import AgentId, TaskId
from tests.integration.agent.helpers import eventually
from tests.integration.dataflow_plane.brokers import Watcher
from tests.integration.dataflow_plane.conftest import MODULES, Reports, df_task, topic, watch


def fresh_run() -> dict[str, str]:
    """A run of its own for each test: module-scoped brokers keep earlier tests' retained checkpoints."""
    return {"EDGERM_DF_RUN": f"run-{uuid.uuid4().hex[:8]}"}


@pytest.fixture
async def second_runtime() -> AsyncIterator[DataflowRuntime]:
    rt = DataflowRuntime(AgentId("agent-2"), threads=2, batch_time_limit=5.0)
    try:
        yield rt
    finally:
        await rt.close()


def batch(first: int, n: int, t: float | None = None) -> bytes:
    """Records ``p.0`` first..first+n-1; a given ``t`` makes seq s read at t + s (a redelivery repeats it)."""
    now = time.time()
    return "".join(
        f"p.0 {seq} {now if t is None else t + seq:.6f} {float(seq)}\n" for seq in range(first, first + n)
    ).encode()


def seqs(w: Watcher, operator: str) -> list[int]:
    return [int(f[1]) for f in w.records(topic(operator))]


async def produce(w: Watcher, stop: asyncio.Event, sent: list[int], per_batch: int = 5) -> None:
    """Publish batches of ``p.0`` records (QoS 1) every 10 ms until ``stop``."""
    seq = 0
    while not stop.is_set():
        await w.publish(topic("in"), batch(seq, per_batch))
        sent.extend(range(seq, seq + per_batch))
        seq += per_batch
        await asyncio.sleep(0.01)


async def move(
    old_rt: DataflowRuntime,
    new_rt: DataflowRuntime,
    operator: str,
    module: str,
    url: str,
    reports: Reports,
    work: Path,
    w: Watcher,
    *args: str,
) -> tuple[int, int]:
    """Run ``operator`` on ``old_rt``, kill it under load, start its replacement on ``new_rt``; (sent, last)."""
    run = fresh_run()
    old = df_task(f"{operator}-a", operator, "operator", module, url, *args, inputs=(topic("in"),), **run)
    new = df_task(f"{operator}-b", operator, "operator", module, url, *args, inputs=(topic("in"),), **run)
    await old_rt.launch(old, work / "a", reports)
    await eventually(lambda: (h := old_rt.host(old.task_id)) is not None and h.connected and h.restored)
    stop, sent = asyncio.Event(), list[int]()
    producer = asyncio.create_task(produce(w, stop, sent))
    try:
        await eventually(lambda: len(seqs(w, operator)) >= 20, what="output before the kill")
        await old_rt.kill(old.task_id, 1.0)
        await asyncio.sleep(0.3)  # records keep coming while no instance is there
        await new_rt.launch(new, work / "b", reports)
        await eventually(lambda: (h := new_rt.host(new.task_id)) is not None and h.connected)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await producer
    return len(sent), sent[-1]


async def test_a_moved_stateless_operator_loses_nothing_on_mosquitto(
    broker_url: str,
    request: pytest.FixtureRequest,
    runtime: DataflowRuntime,
    second_runtime: DataflowRuntime,
    reports: Reports,
    watcher_factory: list[Watcher],
    tmp_path: Path,
) -> None:
    url, broker = broker_url, request.node.callspec.params["broker_url"]
    w = await watch(watcher_factory, url, topic("m"))
    sent, last = await move(runtime, second_runtime, "m", "map", url, reports, tmp_path, w, "--scale", "2")
    if broker == "mosquitto":
        await eventually(lambda: set(seqs(w, "m")) >= set(range(last + 1)), what="every record through the move")
        values = {int(f[1]): float(f[3]) for f in w.records(topic("m"))}
        assert all(values[s] == 2.0 * s for s in range(last + 1))
    else:
        await eventually(lambda: last in set(seqs(w, "m")), what="the stream through the replacement")
        lost = set(range(last + 1)) - set(seqs(w, "m"))
        # amqtt 0.12 keeps no session (nor queued messages) for an anonymous client: the gap is what
        # came while no instance was subscribed. Stated in docs/dataflow.md.
        print(f"amqtt: {len(lost)} of {sent} records lost in the move")
    await second_runtime.kill(TaskId("m-b"), 1.0)


async def test_a_moved_aggregate_continues_its_window_from_the_checkpoint(
    broker_url: str,
    request: pytest.FixtureRequest,
    runtime: DataflowRuntime,
    second_runtime: DataflowRuntime,
    reports: Reports,
    watcher_factory: list[Watcher],
    tmp_path: Path,
) -> None:
    url, broker = broker_url, request.node.callspec.params["broker_url"]
    w = await watch(watcher_factory, url, topic("avg"))
    _, last = await move(
        runtime, second_runtime, "avg", "aggregate", url, reports, tmp_path, w, "--window", "5", "--agg", "sum"
    )
    replacement = second_runtime.host(TaskId("avg-b"))
    assert replacement is not None and replacement.started_from == "avg-a"  # on both brokers: state moves
    windows = (last + 1) // 5
    if broker == "mosquitto":
        await eventually(lambda: set(seqs(w, "avg")) >= set(range(windows)), what="every window through the move")
        got: dict[int, float] = {}
        for f in w.records(topic("avg")):
            got.setdefault(int(f[1]), float(f[3]))
            assert got[int(f[1])] == float(f[3])  # a window emitted twice (a redelivery) has the same value
        for k in range(windows):  # window k sums inputs 5k..5k+4: the replacement took the partial window over
            assert got[k] == sum(range(5 * k, 5 * k + 5)), (k, got[k])
    else:
        # amqtt loses the records that came while no instance was there, but the window counter goes on
        # from the checkpoint: no restart at 0.
        await eventually(lambda: replacement.counters.sent > 0, what="a window from the replacement")
        await asyncio.sleep(0.2)
        after = seqs(w, "avg")
        assert after == sorted(after) and after.count(0) == 1, after
    await second_runtime.kill(TaskId("avg-b"), 1.0)


async def test_a_sink_drops_duplicates_by_src_and_seq(
    mosquitto_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, mosquitto_url, topic("k"))
    task = df_task("k-0", "k", "sink", "sink", mosquitto_url, inputs=(topic("in"),), **fresh_run())
    await runtime.launch(task, tmp_path / "k", reports)
    await eventually(lambda: (h := runtime.host(task.task_id)) is not None and h.connected and h.restored)
    first = batch(0, 4, t=1000.0)
    await w.publish(topic("in"), first)
    await w.publish(topic("in"), first)  # a redelivery
    await w.publish(topic("in"), batch(2, 4, t=1000.0))  # overlaps: 2, 3 again, then 4, 5
    await eventually(lambda: 5 in seqs(w, "k"))
    assert seqs(w, "k") == [0, 1, 2, 3, 4, 5]
    host = runtime.host(task.task_id)
    assert host is not None and host.counters.duplicates == 6
    await runtime.kill(task.task_id, 1.0)


async def test_an_overlapping_replacement_takes_the_slot_over_and_the_window_stays_right(
    broker_url: str,
    request: pytest.FixtureRequest,
    runtime: DataflowRuntime,
    second_runtime: DataflowRuntime,
    reports: Reports,
    watcher_factory: list[Watcher],
    tmp_path: Path,
) -> None:
    """Make-before-break: the replacement starts while the old instance still runs (same slot, same id)."""
    url, broker = broker_url, request.node.callspec.params["broker_url"]
    w = await watch(watcher_factory, url, topic("avg"))
    args = ("--window", "5", "--agg", "sum")
    run = fresh_run()
    old = df_task("avg-a", "avg", "operator", "aggregate", url, *args, inputs=(topic("in"),), **run)
    new = df_task("avg-b", "avg", "operator", "aggregate", url, *args, inputs=(topic("in"),), **run)
    await runtime.launch(old, tmp_path / "a", reports)
    await eventually(lambda: (h := runtime.host(old.task_id)) is not None and h.connected and h.restored)
    stop, sent = asyncio.Event(), list[int]()
    producer = asyncio.create_task(produce(w, stop, sent))
    try:
        await eventually(lambda: len(seqs(w, "avg")) >= 4, what="windows before the replacement")
        await second_runtime.launch(new, tmp_path / "b", reports)
        old_host = runtime.host(old.task_id)
        assert old_host is not None
        # It sees the new claim on its session and lets go (it does not wait to be pushed off: amqtt's
        # take-over leaves the old connection open).
        await eventually(lambda: old_host.yielded, within=5.0, what="the old instance gives the slot up")
        await eventually(
            lambda: (h := second_runtime.host(new.task_id)) is not None and h.connected and h.restored,
            within=5.0,
            what="the replacement holds the session",
        )
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await producer
    await runtime.kill(old.task_id, 1.0)
    windows = (sent[-1] + 1) // 5
    if broker == "mosquitto":
        try:
            await eventually(lambda: set(seqs(w, "avg")) >= set(range(windows)))
        except AssertionError:
            raise AssertionError(f"windows missing: {sorted(set(range(windows)) - set(seqs(w, 'avg')))}") from None
        got: dict[int, float] = {}
        for f in w.records(topic("avg")):
            got.setdefault(int(f[1]), float(f[3]))
        assert all(got[k] == sum(range(5 * k, 5 * k + 5)) for k in range(windows)), got
    await second_runtime.kill(new.task_id, 1.0)


async def test_a_batch_interrupted_by_a_kill_is_not_acknowledged_and_the_replacement_processes_it(
    mosquitto_url: str,
    runtime: DataflowRuntime,
    second_runtime: DataflowRuntime,
    reports: Reports,
    watcher_factory: list[Watcher],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A failed batch is acknowledged (a poison batch must not come back); an interrupted one is not a failure.
    # The stopping host's worker must see the interrupted run before it is cancelled (in a real stop, when
    # the final stats take a while): a slower shutdown makes that order certain.
    shutdown = OperatorHost._shutdown

    async def slow_shutdown(self: OperatorHost) -> None:
        self.executor.stop()
        await asyncio.sleep(0.3)
        await shutdown(self)

    monkeypatch.setattr(OperatorHost, "_shutdown", slow_shutdown)
    # The module computes for seconds before it echoes (a loop, which the kill interrupts; a sleep in a host
    # call could not be), so the kill always lands while the batch runs.
    sleep = "(drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))"
    spin = (
        "(local.set $n (i32.const -1))"
        " (loop $spin (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $spin (local.get $n)))"
    )
    slow = (MODULES / "slow_echo.wat").read_text()
    assert sleep in slow
    slow = slow.replace(sleep, spin)
    (tmp_path / "hold.wat").write_text(slow)
    module = load_module(tmp_path / "hold.wat")
    w = await watch(watcher_factory, mosquitto_url, topic("h"))
    run = fresh_run()
    old = df_task("h-a", "h", "operator", module, mosquitto_url, inputs=(topic("in"),), **run)
    await runtime.launch(old, tmp_path / "a", reports)
    await eventually(lambda: (h := runtime.host(old.task_id)) is not None and h.connected and h.restored)
    host = runtime.host(old.task_id)
    assert host is not None
    await w.publish(topic("in"), batch(0, 5))
    await eventually(lambda: host.counters.received == 5 and not host.queue, what="the batch is taken")
    await asyncio.sleep(0.2)  # in the module now
    await runtime.kill(old.task_id, 1.0)
    assert host.counters.sent == 0 and host.counters.errors == 0  # interrupted: neither sent nor failed
    fast = df_task("h-b", "h", "operator", "map", mosquitto_url, "--scale", "1", inputs=(topic("in"),), **run)
    await second_runtime.launch(fast, tmp_path / "b", reports)
    await eventually(lambda: set(seqs(w, "h")) >= set(range(5)), what="the interrupted batch, from the replacement")
    await second_runtime.kill(TaskId("h-b"), 1.0)
