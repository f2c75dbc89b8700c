"""Sinks (file, HTTP) end to end, and the device readers (sim, file, cmd) on their own."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from edgerm.agent.dataflow.readers import readings
from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.ids import TaskId
from edgerm.model import TaskState
from tests.integration.agent.helpers import eventually
from tests.integration.dataflow_plane.brokers import Watcher
from tests.integration.dataflow_plane.conftest import Reports, df_task, topic, watch


def batch(*seqs: int) -> bytes:
    return "".join(f"s.0 {seq} {time.time():.6f} {seq * 1.5}\n" for seq in seqs).encode()


async def test_file_sink_appends_formatted_records(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    out = tmp_path / "sink.csv"
    w = await watch(watcher_factory, amqtt_url)
    task = df_task(
        "k-0", "k", "sink", "sink", amqtt_url, "--format", "csv", inputs=(topic("in"),), EDGERM_DF_SINK=f"file:{out}"
    )
    await runtime.launch(task, tmp_path / "k", reports)
    host = runtime.host(TaskId("k-0"))
    assert host is not None
    await eventually(lambda: host.connected)
    await w.publish(topic("in"), batch(0, 1))
    await w.publish(topic("in"), batch(2))
    await eventually(lambda: out.exists() and len(out.read_text().splitlines()) == 3)
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert [(r[0], r[1], r[3]) for r in rows] == [("s.0", "0", "0"), ("s.0", "1", "1.5"), ("s.0", "2", "3")]
    # The sink writes the file before the batch is counted (host.py: deliver, publish, then count).
    await eventually(lambda: host.counters.sent == 3)
    assert host.counters.errors == 0
    await runtime.kill(TaskId("k-0"), 1.0)


@contextlib.asynccontextmanager
async def http_server(status: int) -> AsyncIterator[tuple[str, list[tuple[str, bytes]]]]:
    got: list[tuple[str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((request.headers.get("Content-Type", ""), await request.read()))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/records", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/records", got
    finally:
        await runner.cleanup()


async def test_http_sink_posts_each_batch(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    async with http_server(204) as (url, got):
        w = await watch(watcher_factory, amqtt_url)
        task = df_task("h-0", "h", "sink", "sink", amqtt_url, inputs=(topic("in"),), EDGERM_DF_SINK=url)
        await runtime.launch(task, tmp_path / "h", reports)
        host = runtime.host(TaskId("h-0"))
        assert host is not None
        await eventually(lambda: host.connected)
        await w.publish(topic("in"), batch(0, 1, 2))
        await eventually(lambda: host.counters.sent == 3)
        content_type, body = got[0]
        assert content_type.startswith("text/plain")
        assert [line.split()[1] for line in body.decode().splitlines()] == ["0", "1", "2"]
        await runtime.kill(TaskId("h-0"), 1.0)


async def test_http_sink_errors_are_counted_and_fail_the_task_after_ten(
    amqtt_url: str, runtime: DataflowRuntime, reports: Reports, watcher_factory: list[Watcher], tmp_path: Path
) -> None:
    async with http_server(500) as (url, _got):
        w = await watch(watcher_factory, amqtt_url)
        task = df_task(
            "h-0", "h", "sink", "sink", amqtt_url, inputs=(topic("in"),), EDGERM_DF_SINK=url, EDGERM_DF_BATCH="1"
        )
        await runtime.launch(task, tmp_path / "h", reports)
        host = runtime.host(TaskId("h-0"))
        assert host is not None
        await eventually(lambda: host.connected)
        for seq in range(10):
            await w.publish(topic("in"), batch(seq))
        end = await reports.wait_end("h-0")
        assert end.state is TaskState.FAILED and "answered 500" in end.message
        assert host.counters.errors == 10 and host.counters.dropped == 10


async def first(n: int, handle: str, period: float) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    async with contextlib.aclosing(readings(handle, period)) as stream:
        async for reading in stream:
            out.append(reading)
            if len(out) == n:
                break
    return out


async def test_simulated_sensors_read_at_their_period() -> None:
    began = time.monotonic()
    sine = await first(6, "sim:sine", 0.02)
    elapsed = time.monotonic() - began
    assert 0.09 <= elapsed < 1.0  # 5 periods between 6 readings
    assert all(10.0 <= float(text) <= 30.0 for _, text in sine)
    assert [t for t, _ in sine] == sorted(t for t, _ in sine)
    noise = await first(20, "sim:random", 0.001)
    assert len({text for _, text in noise}) > 1


async def test_file_device_is_tailed_and_reread_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "temps.txt"
    path.write_text("20.5\n21.0\n")
    got: list[str] = []
    async with contextlib.aclosing(readings(f"file:{path}", 0.01)) as stream:
        async for _t, text in stream:
            got.append(text)
            if got == ["20.5", "21.0"]:
                with path.open("a") as f:
                    f.write("t=22.5\n23.")  # a partial line waits for its end
            elif len(got) == 3:
                with path.open("a") as f:
                    f.write("25\n")
            elif len(got) == 4:
                path.write_text("1\n")  # truncated: read again from the start
            elif len(got) == 5:
                break
    assert got == ["20.5", "21.0", "t=22.5", "23.25", "1"]


async def test_command_device_restarts_the_command_and_kills_it_when_closed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    got = await first(4, f"cmd:echo $$ >> {pids}; echo 1.5; echo 2.5", 0.01)
    assert [text for _, text in got] == ["1.5", "2.5", "1.5", "2.5"]  # ran twice
    long_running = f"cmd:echo $$ > {tmp_path / 'long'}; while true; do echo 7; sleep 0.01; done"
    assert [text for _, text in await first(2, long_running, 0.01)] == ["7", "7"]
    pid = int((tmp_path / "long").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the shell is gone (and reaped) once the reader was closed
