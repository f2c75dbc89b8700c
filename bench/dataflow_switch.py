"""Quality-driven switching: how long from a quality breach to the fallback carrying the stream, and back.

    python bench/dataflow_switch.py [--cycles 3] [--period 1.0] [--hold 2.0]

A real master (embedded broker, or a mosquitto this script starts) and two real agents run as their own
processes on 127.0.0.1; this process runs the dataflow framework (``DataflowRun``), writes the source's readings
to a file the edge agent's device reads (50 readings/s), and subscribes to the sink's topic::

    read (sensor.wasm, edge) -> check (main: filter.wasm --below 100 | fallback: map.wasm) -> out (sink.wasm, cloud)
    check: quality [sink_rate below 5 for <period>]

Each cycle breaks the condition on purpose (readings of 150, which main drops), waits for the switch to the
fallback and for records to reach the sink again, then restores it (readings of 20) and waits for main to be
probed and back. Reported per broker (p50 and max over the cycles):

- ``break_to_breach_s``: readings changed -> the framework judged the condition broken (floor: the period);
- ``breach_to_fallback_running_s``: the breach -> the fallback reported RUNNING (launched beside main);
- ``break_to_stream_resumed_s``: readings changed -> the first record through the fallback at the sink;
- ``hold_end_to_main_running_s``: the hold ended -> main, probed, reported RUNNING (the fallback then stops).

Baselines measured in the same run: the condition's period (the detection floor), and the cold placement of the
DAG (start -> every instance RUNNING), which a switch should beat since only one instance moves.
Results: bench/results/dataflow_switch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, save, spawn, stop
from _dataflow_baselines import mosquitto

from edgerm.frameworks.dataflow import DataflowRun, RunOptions, loads
from edgerm.scheduler import Instance

PY = sys.executable
CHECK = Instance("check")


def pipeline(period: float) -> str:
    return f"""
name: qbench
operators:
  read:
    kind: source
    wasm: builtin:sensor
    devices: [temperature]
    env: {{EDGERM_DF_PERIOD: "0.01", EDGERM_DF_BATCH_MS: "10"}}
    resources: {{cpus: 0.05, mem: 16}}
    constraints: [domain == edge]
  check:
    kind: operator
    wasm: builtin:filter
    args: [--below, "100"]
    env: {{EDGERM_DF_BATCH_MS: "10"}}
    resources: {{cpus: 0.1, mem: 32}}
    quality: [sink_rate below 5 for {period}s]
    fallbacks:
      - name: passthrough
        wasm: builtin:map
        args: []
  out:
    kind: sink
    wasm: builtin:sink
    resources: {{cpus: 0.1, mem: 32}}
    constraints: [domain == cloud]
edges:
  - read -> check -> out
"""


async def until(check: Callable[[], bool], within: float, step: float = 0.005) -> float:
    """Poll ``check``; the monotonic time it first held (RuntimeError after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {within}s")
        await asyncio.sleep(step)
    return time.monotonic()


class Readings:
    """Appends a reading to the device file every 20 ms."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = 20.0
        path.write_text("")
        self.job = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            with self.path.open("a") as f:
                f.write(f"{self.value}\n")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def cluster(tmp: Path, broker: str | None, device: Path) -> AsyncIterator[tuple[str, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if broker is None:
        broker = f"mqtt://127.0.0.1:{free_port()}"
        flags = ["--broker-port", broker.rsplit(":", 1)[1]]
    else:
        flags = ["--broker", broker]
    # --insecure: the tap subscribes without credentials (bench/dataflow.py measures a secure master); a fresh
    # state dir, not the shared default one (a master there would restore an earlier run's cluster).
    master = [PY, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port), "--no-coap", *flags,
              "--insecure", "--state-dir", str(tmp / "master")]  # fmt: skip
    procs = [spawn([*master, "--log-level", "WARNING"], ready_url=url + "/api/v1/state")]
    try:
        for name, domain, dev in (("edge-1", "edge", True), ("cloud-1", "cloud", False)):
            cfg = tmp / f"{name}.yaml"
            devices = f"devices: [{{name: temperature, handle: 'file:{device}', shared: true}}]\n" if dev else ""
            cfg.write_text(
                f"name: {name}\nwork_dir: {tmp / name}\nheartbeat_interval: 0.5\nresources: {{cpus: 2, mem: 2048}}\n"
                f"attributes: {json.dumps({'domain': domain})}\nexecutors: [wasm]\n{devices}"
            )
            agent = [PY, "-m", "edgerm.agent.main", "--master", url, "--config", str(cfg), "--log-level", "WARNING"]
            procs.append(spawn(agent))
        yield url, broker
    finally:
        for p in reversed(procs):
            stop(p)


@contextlib.contextmanager
def _open_cluster_env() -> Iterator[None]:
    """No credentials of another (secure) master in this process's environment, which the agents and the
    framework here would inherit and present to this insecure one (bench/dataflow.py runs this after its own
    secure clusters); put back afterwards."""
    saved = {k: os.environ.pop(k) for k in ("EDGERM_TOKEN", "EDGERM_JOIN_TOKEN") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


async def scenario(name: str, broker: str | None, args: argparse.Namespace) -> dict[str, Any]:
    with _open_cluster_env(), tempfile.TemporaryDirectory(prefix="edgerm-bench-switch-") as tmp_dir:
        tmp = Path(tmp_dir)
        readings = Readings(tmp / "readings.txt")
        try:
            async with cluster(tmp, broker, readings.path) as (url, broker_url):
                opts = RunOptions(deadline=30, status_interval=0, retry_seconds=0.3, quality_hold=args.hold)
                run = DataflowRun(loads(pipeline(args.period)), url, broker_url=broker_url, options=opts)
                arrivals: list[tuple[float, float]] = []  # (monotonic arrival, value)
                host, _, port = broker_url.removeprefix("mqtt://").rpartition(":")
                async with aiomqtt.Client(host, int(port)) as tap:
                    await tap.subscribe("edgerm/qbench/out/out", qos=1)

                    async def collect() -> None:
                        async for message in tap.messages:
                            if isinstance(message.payload, bytes | bytearray):
                                now = time.monotonic()
                                for line in bytes(message.payload).decode().splitlines():
                                    arrivals.append((now, float(line.split()[3])))

                    collector = asyncio.create_task(collect())
                    started = time.monotonic()
                    await run.start()
                    try:
                        if not await run.wait_running(30):
                            raise RuntimeError(run.render())
                        cold = time.monotonic() - started
                        cycles = [await cycle(run, readings, arrivals, args) for _ in range(args.cycles)]
                    finally:
                        await run.stop()
                        collector.cancel()
                        await asyncio.gather(collector, return_exceptions=True)
        finally:
            readings.job.cancel()
            await asyncio.gather(readings.job, return_exceptions=True)
    keys = cycles[0].keys()
    return {
        "broker": name,
        "baseline_period_s": args.period,
        "baseline_cold_placement_s": round(cold, 3),
        "cycles": cycles,
        **{
            k: {"p50": round(statistics.median(c[k] for c in cycles), 3), "max": max(c[k] for c in cycles)}
            for k in keys
        },
    }


def _variant(run: DataflowRun) -> tuple[str, str]:
    t = run.framework.live.get(CHECK)
    return (t.placement.variant, t.state.value) if t is not None else ("-", "-")


async def cycle(
    run: DataflowRun, readings: Readings, arrivals: list[tuple[float, float]], a: argparse.Namespace
) -> dict[str, float]:
    await asyncio.sleep(a.period + 1.0)  # steady on main
    switches = len(run.framework.switches)
    broke = time.monotonic()
    readings.value = 150.0
    await until(lambda: len(run.framework.switches) > switches, 30)
    breach = run.framework.switches[-1].at  # the core's clock: time.monotonic, as here
    hold_end = run.framework.holds["check"].until
    running = await until(lambda: _variant(run) == ("passthrough", "RUNNING"), 30)
    await until(lambda: any(t >= broke and v >= 100 for t, v in arrivals), 30)
    first = min(t for t, v in arrivals if t >= broke and v >= 100)
    readings.value = 20.0
    back = await until(lambda: _variant(run) == ("main", "RUNNING"), 30 + a.hold * 8)
    return {
        "break_to_breach_s": round(breach - broke, 3),
        "breach_to_fallback_running_s": round(running - breach, 3),
        "break_to_stream_resumed_s": round(first - broke, 3),
        "hold_end_to_main_running_s": round(back - hold_end, 3),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"pipeline": "read(sensor) -> check(filter | map) -> out(sink), 2 agents", "scenarios": []}
    result["scenarios"].append(await scenario("embedded", None, args))
    async with mosquitto() as url:
        if url is None:
            result["mosquitto"] = "not installed (scripts/setup_mosquitto.sh): embedded broker only"
        else:
            result["scenarios"].append(await scenario("mosquitto", url, args))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--cycles", type=int, default=3, help="break/restore cycles per broker")
    p.add_argument("--period", type=float, default=1.0, help="the quality condition's period (s)")
    p.add_argument("--hold", type=float, default=2.0, help="how long a broken variant is held off (s)")
    args = p.parse_args(argv)
    result = asyncio.run(main_async(args))
    for s in result["scenarios"]:
        print(
            f"[{s['broker']}] break -> breach p50 {s['break_to_breach_s']['p50']} s "
            f"(period {s['baseline_period_s']} s), "
            f"breach -> fallback running p50 {s['breach_to_fallback_running_s']['p50']} s "
            f"(cold placement of the DAG {s['baseline_cold_placement_s']} s), "
            f"break -> stream resumed p50 {s['break_to_stream_resumed_s']['p50']} s, "
            f"hold end -> main running again p50 {s['hold_end_to_main_running_s']['p50']} s"
        )
    print(f"saved {save('dataflow_switch', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
