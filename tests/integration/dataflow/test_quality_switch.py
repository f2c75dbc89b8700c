"""A quality condition broken on purpose and restored, end to end: a real master and broker
(embedded amqtt, and mosquitto), real agents running wasmtime operators, the framework judging
``sink_rate below 5 for 1.5s`` on the live figures.

The source reads a file the test appends readings to. The main variant of ``check`` passes readings
below 100 only; its fallback passes everything. Writing readings of 150 breaks the condition (the
sink sees nothing): the framework switches ``check`` to the fallback, launched beside main. Writing
20 again restores it: when the hold ends, main is probed and, once it runs, the fallback goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiohttp
import pytest

from edgerm.frameworks.dataflow import MoveKind, RunOptions, start_server
from edgerm.scheduler import Instance
from tests.integration.dataflow.conftest import Cluster, eventually

PIPELINE = """
name: qswitch
operators:
  read:
    kind: source
    wasm: builtin:sensor
    devices: [temperature]
    env: {EDGERM_DF_PERIOD: "0.02", EDGERM_DF_BATCH_MS: "20"}
    resources: {cpus: 0.1, mem: 32}
  check:
    kind: operator
    wasm: builtin:filter
    args: [--below, "100"]
    resources: {cpus: 0.1, mem: 32}
    quality: [sink_rate below 5 for 1.5s]
    fallbacks:
      - name: passthrough
        wasm: builtin:map
        args: []
  store:
    kind: sink
    wasm: builtin:sink
    resources: {cpus: 0.1, mem: 32}
    constraints: [domain == cloud]
edges:
  - read -> check -> store
"""


class Readings:
    """Appends one reading to the sensor's file every 20 ms; ``value`` is what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = 20.0
        path.write_text("")
        self._task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            with self.path.open("a") as f:
                f.write(f"{self.value}\n")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.mark.slow
async def test_a_broken_quality_condition_switches_to_the_fallback_and_back(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgerm.frameworks.dataflow")
    readings = Readings(tmp_path / "readings.txt")
    options = RunOptions(deadline=15.0, status_interval=0, retry_seconds=0.5, quality_hold=3.0)
    server = await start_server(cluster.master.url, broker_url=cluster.broker_url, options=options)
    try:
        await cluster.agent("sensor-1", sensor=f"file:{readings.path}")
        await cluster.agent("cloud-1", domain="cloud", cpus=2.0)
        yaml = {"Content-Type": "application/yaml"}
        async with aiohttp.ClientSession() as http, http.post(f"{server.url}/dags", data=PIPELINE, headers=yaml) as r:
            assert r.status == 201, await r.text()
            run_id = (await r.json())["id"]
        run = server.service.runs[run_id]
        assert await run.wait_running(20), run.render()
        check = Instance("check")
        assert run.framework.live[check].placement.variant == "main"
        await eventually(lambda: run.watch.view(0).sink_records >= 50, what="records at the sink")

        readings.value = 150.0  # main drops them all: the sink rate falls to 0
        await eventually(
            lambda: (
                run.framework.live.get(check) is not None
                and run.framework.live[check].placement.variant == "passthrough"
            ),
            what="the switch to the fallback",
        )
        (switch,) = run.framework.switches
        assert (switch.operator, switch.from_variant, switch.to_variant) == ("check", "main", "passthrough")
        assert switch.figure.startswith("sink rate ") and "below 5 over 1.5s" in switch.figure
        seen = run.watch.view(0).sink_records
        await eventually(lambda: run.watch.view(0).sink_records >= seen + 50, what="records flow again")
        move = next(mv for mv in run.framework.moves if mv.to_variant == "passthrough")
        assert move.kind is MoveKind.SWITCHED and move.why == f"quality: {switch.figure}"
        assert any("quality condition of operator check broken" in r.getMessage() for r in caplog.records)

        # the status table and the serve endpoint report it, with the figure
        assert f"quality: check: main -> passthrough ({switch.figure})" in run.render()
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/dags/{run_id}") as resp:
            body = await resp.json()
        assert body["quality_switches"][0]["figure"] == switch.figure

        readings.value = 20.0  # restored: once the hold ends, main is probed and comes back
        await eventually(
            lambda: (
                run.framework.live.get(check) is not None
                and run.framework.live[check].placement.variant == "main"
                and run.framework.live[check].state.value == "RUNNING"
            ),
            within=30,
            what="the switch back to main",
        )
        await eventually(
            lambda: not any(t.instance == check for t in run.framework.retiring.values()),
            within=60,  # its kill, its KILLED and the framework's turn, on a loaded machine
            what="the fallback stopped",
        )
        assert [s.to_variant for s in run.framework.switches][-1] == "main"
        seen = run.watch.view(0).sink_records
        await eventually(lambda: run.watch.view(0).sink_records >= seen + 50, what="records flow through main")
        await asyncio.sleep(2.0)  # main holds the condition now: no new switch
        assert run.framework.live[check].placement.variant == "main"
    finally:
        await server.stop()  # stops the run: every task killed
        await readings.close()
