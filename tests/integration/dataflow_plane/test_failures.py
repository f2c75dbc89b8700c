"""Back-pressure, failing modules, time limits, kills and bad tasks, with real wasmtime and a real broker."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace
from pathlib import Path

import pytest

import edgerm.agent.dataflow.host as host_module
from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.agent.runtime import TaskEnded
from edgerm.dataflow_ops import load_builtin
from edgerm.ids import AgentId, TaskId
from edgerm.master.broker import EmbeddedBroker
from edgerm.model import Reason, TaskState, WasmSpec
from tests.integration.agent.helpers import eventually
from tests.integration.dataflow_plane.brokers import Watcher, embedded
from tests.integration.dataflow_plane.conftest import Reports, df_task, stats_topic, topic, wat, watch


def record(seq: int, src: str = "s.0", value: float = 1.0) -> bytes:
    return f"{src} {seq} {time.time():.6f} {value}\n".encode()


async def started(runtime: DataflowRuntime, task_id: str, w: Watcher) -> None:
    await w.wait(lambda: (h := runtime.host(TaskId(task_id))) is not None and h.connected)


@pytest.mark.parametrize("waiting_max", [1000, 5])
async def test_a_full_queue_waits_for_room_and_drops_the_oldest_only_when_overloaded(
    waiting_max: int,
    monkeypatch: pytest.MonkeyPatch,
    amqtt_url: str,
    runtime: DataflowRuntime,
    reports: Reports,
    watcher_factory: list[Watcher],
    tmp_path: Path,
) -> None:
    # slow_echo takes 50 ms a batch; 40 batches arrive at once into a queue of 3.
    monkeypatch.setattr(host_module, "WAITING_MAX", waiting_max)
    w = await watch(watcher_factory, amqtt_url, topic("slow"), stats_topic("slow"))
    task = df_task(
        "slow-0",
        "slow",
        "operator",
        wat("slow_echo"),
        amqtt_url,
        inputs=(topic("in"),),
        EDGERM_DF_QUEUE="3",
        EDGERM_DF_BATCH="1",  # no merging of queued batches: each is its own module run
    )
    await runtime.launch(task, tmp_path / "slow", reports)
    await started(runtime, "slow-0", w)
    host = runtime.host(TaskId("slow-0"))
    assert host is not None
    longest = 0

    def sample() -> None:
        nonlocal longest
        longest = max(longest, len(host.queue))

    for seq in range(40):
        await w.publish(topic("in"), record(seq))
        sample()

    def settled() -> bool:
        sample()
        c = host.counters
        return c.received == 40 and c.sent + c.dropped == 40 and not host.queue

    await w.wait(settled, within=15)
    assert longest <= 3  # never more than the bound, whatever the input rate
    assert host.counters.errors == 0
    await w.wait(lambda: len(w.records(topic("slow"))) == host.counters.sent)
    out = [int(fields[1]) for fields in w.records(topic("slow"))]
    assert out == sorted(out) and out[-1] == 39
    if waiting_max == 1000:
        assert host.counters.dropped == 0 and out == list(range(40))  # backpressure: the broker held the rest
    else:
        assert host.counters.dropped > 0  # overloaded: the oldest were dropped, and counted
        await w.wait(lambda: any(s["dropped"] == host.counters.dropped for s in w.stats(stats_topic("slow"))), 3)
    await runtime.kill(TaskId("slow-0"), 1.0)


async def test_a_trapping_module_counts_errors_then_fails_the_task(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, amqtt_url, stats_topic("bad"))
    task = df_task("bad-0", "bad", "operator", wat("trap"), amqtt_url, inputs=(topic("in"),), EDGERM_DF_BATCH="1")
    await runtime.launch(task, tmp_path / "bad", reports)
    await started(runtime, "bad-0", w)
    host = runtime.host(TaskId("bad-0"))
    assert host is not None
    for seq in range(9):
        await w.publish(topic("in"), record(seq))
    await w.wait(lambda: host.counters.errors == 9)
    assert reports.ended("bad-0") is None  # 9 failures in a row: still running
    assert host.counters.dropped == 9 and host.counters.batches == 0
    await w.publish(topic("in"), record(9))
    end = await reports.wait_end("bad-0")
    assert end.state is TaskState.FAILED and end.reason is Reason.TRAP
    assert "10 batches failed in a row" in end.message and "unreachable" in end.message


async def test_a_module_that_exits_non_zero_fails_with_its_stderr(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, amqtt_url, topic("in"))
    task = df_task("m-0", "m", "operator", "map", amqtt_url, "--scale", "x", inputs=(topic("in"),))
    await runtime.launch(task, tmp_path / "m", reports)
    await started(runtime, "m-0", w)
    for seq in range(10):
        await w.publish(topic("in"), record(seq))
        await asyncio.sleep(0)  # separate publishes; the queue may still merge some
    host = runtime.host(TaskId("m-0"))
    assert host is not None
    # Merged batches fail together; keep feeding until ten have failed.
    async with asyncio.timeout(10):
        seq = 10
        while reports.ended("m-0") is None:
            await w.publish(topic("in"), record(seq))
            seq += 1
            await asyncio.sleep(0.01)
    end = reports.ended("m-0")
    assert end is not None and end.state is TaskState.FAILED and end.reason is Reason.COMMAND_EXITED
    assert end.exit_code == 2 and "--scale: not a number: x" in end.message


async def test_the_batch_time_limit_interrupts_a_runaway_module(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, amqtt_url, topic("in"))
    task = df_task("loop-0", "loop", "operator", wat("loop"), amqtt_url, inputs=(topic("in"),), EDGERM_DF_BATCH="1")
    task = replace(task, container=WasmSpec(wat("loop"), time_limit=0.05))
    await runtime.launch(task, tmp_path / "loop", reports)
    await started(runtime, "loop-0", w)
    host = runtime.host(TaskId("loop-0"))
    assert host is not None
    await w.publish(topic("in"), record(0))
    await w.wait(lambda: host.counters.errors == 1, within=5)
    assert reports.ended("loop-0") is None and host.counters.dropped == 1
    await runtime.kill(TaskId("loop-0"), 1.0)
    end = reports.ended("loop-0")
    assert end is not None and end.state is TaskState.KILLED


async def test_kill_interrupts_a_running_batch_at_once(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    w = await watch(watcher_factory, amqtt_url, topic("in"))
    task = df_task("spin-0", "spin", "operator", wat("loop"), amqtt_url, inputs=(topic("in"),))
    await runtime.launch(task, tmp_path / "spin", reports)
    await started(runtime, "spin-0", w)
    await w.publish(topic("in"), record(0))
    host = runtime.host(TaskId("spin-0"))
    assert host is not None
    await w.wait(lambda: host.queue.records == 0 and host.counters.received == 1)  # the batch is running
    began = time.monotonic()
    await runtime.kill(TaskId("spin-0"), 5.0)
    assert time.monotonic() - began < 1.0
    end = reports.ended("spin-0")
    assert end is not None and end.state is TaskState.KILLED and end.reason is Reason.KILLED_BY_FRAMEWORK


@pytest.mark.parametrize(
    ("env", "module", "needle"),
    [
        ({"EDGERM_BROKER": ""}, "map", "EDGERM_BROKER: no MQTT broker"),
        ({"EDGERM_BROKER": "http://x:1"}, "map", "scheme must be mqtt"),
        ({"EDGERM_DF_ROLE": "mapper"}, "map", "EDGERM_DF_ROLE"),
        ({"EDGERM_DF_IN": ""}, "map", "EDGERM_DF_IN: missing"),
        ({"EDGERM_DF_REPLICA": "2/2"}, "map", "EDGERM_DF_REPLICA"),
        ({}, b"\0asm\1\0\0\0", "not a WASI command"),
        ({}, b"not wasm", "not a valid WebAssembly module"),
    ],
)
async def test_bad_tasks_fail_before_running(
    runtime: DataflowRuntime, reports: Reports, tmp_path: Path, env: dict[str, str], module: str | bytes, needle: str
) -> None:
    task = df_task("x-0", "x", "operator", module, "mqtt://127.0.0.1:1", inputs=(topic("in"),))
    task = replace(task, env={**task.env, **env})
    await runtime.launch(task, tmp_path / "x", reports)
    end = reports.ended("x-0")
    assert end is not None and end.state is TaskState.FAILED and end.reason is Reason.INVALID_TASK
    assert needle in end.message
    assert not reports.started("x-0")


async def test_a_source_whose_device_is_unknown_fails(
    runtime: DataflowRuntime, reports: Reports, tmp_path: Path
) -> None:
    task = df_task("s-0", "s", "source", "sensor", "mqtt://127.0.0.1:1", EDGERM_DF_DEVICE="thermometer")
    await runtime.launch(task, tmp_path / "s", reports)
    end = reports.ended("s-0")
    assert isinstance(end, TaskEnded) and end.reason is Reason.INVALID_TASK
    assert "claims no device 'thermometer'" in end.message


async def test_the_device_name_maps_to_the_agents_declared_handle(
    tmp_path: Path, watcher_factory: list[Watcher]
) -> None:
    async with embedded() as broker:
        url = broker.url
        rt = DataflowRuntime(AgentId("a"), devices={"thermometer": "sim:random"})
        reports = Reports()
        try:
            w = await watch(watcher_factory, url, topic("s"))
            task = df_task("s-0", "s", "source", "sensor", url, EDGERM_DF_DEVICE="thermometer", EDGERM_DF_PERIOD="0.01")
            await rt.launch(task, tmp_path / "s", reports)
            await w.wait(lambda: len(w.records(topic("s"))) >= 3)
            assert all(fields[0] == "s.0" for fields in w.records(topic("s")))
        finally:
            await rt.close()
        end = reports.ended("s-0")
        assert end is not None and end.state is TaskState.KILLED


async def test_a_lost_broker_is_reconnected_and_the_stream_resumes(
    runtime: DataflowRuntime, reports: Reports, tmp_path: Path
) -> None:
    first = EmbeddedBroker("127.0.0.1", 0)
    await first.start()
    port = first.port
    task = df_task("s-0", "s", "source", "sensor", first.url, EDGERM_DF_DEVICE="sim:sine", EDGERM_DF_PERIOD="0.01")
    await runtime.launch(task, tmp_path / "s", reports)
    host = runtime.host(TaskId("s-0"))
    assert host is not None
    await eventually(lambda: host.counters.sent > 0)
    await first.stop()
    await eventually(lambda: not host.connected)
    sent = host.counters.sent
    second = EmbeddedBroker("127.0.0.1", port)
    await second.start()
    try:
        w = Watcher(second.url)
        async with w:
            await w.subscribe(topic("s"))
            await w.wait(lambda: len(w.records(topic("s"))) >= 3, within=10)
        assert host.counters.sent > sent and reports.ended("s-0") is None
        assert host.queue.records <= host.config.queue * host.config.batch
    finally:
        await runtime.kill(TaskId("s-0"), 1.0)
        await second.stop()


async def test_modules_named_by_hash_are_fetched_and_a_kill_while_fetching_wins(tmp_path: Path) -> None:
    module = load_builtin("map")
    sha = hashlib.sha256(module).hexdigest()
    asked, release = asyncio.Event(), asyncio.Event()
    fetched: list[str] = []

    async def fetch(sha256: str) -> bytes:
        fetched.append(sha256)
        asked.set()
        await release.wait()
        return module if sha256 == sha else b"other bytes"

    rt = DataflowRuntime(AgentId("a"), fetch_module=fetch)
    reports = Reports()
    try:
        task = df_task("x-0", "x", "operator", module, "mqtt://127.0.0.1:1", inputs=(topic("in"),))
        by_hash = replace(task, container=WasmSpec(module_sha256=sha))
        launching = asyncio.create_task(rt.launch(by_hash, tmp_path / "x", reports))
        await asyncio.wait_for(asked.wait(), 5)
        await rt.kill(TaskId("x-0"), 1.0)
        release.set()
        await launching
        end = reports.ended("x-0")
        assert end is not None and end.state is TaskState.KILLED and not reports.started("x-0")
        # The bytes were kept: a second instance needs no fetch.
        await rt.launch(replace(by_hash, task_id=TaskId("x-1")), tmp_path / "x1", reports)
        assert reports.started("x-1") and fetched == [sha]
        wrong = replace(by_hash, task_id=TaskId("x-2"), container=WasmSpec(module_sha256="ab" * 32))
        await rt.launch(wrong, tmp_path / "x2", reports)
        end = reports.ended("x-2")
        assert end is not None and end.reason is Reason.IMAGE_UNAVAILABLE and "other bytes" in end.message
    finally:
        await rt.close()
