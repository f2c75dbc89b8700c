"""Dataflow pipeline: records/s and source -> sink latency, and the time from agent loss to the stream resuming.

    python bench/dataflow.py [--seconds 10] [--sources 4] [--heartbeat 0.5]

A real master (with its embedded broker, or pointed at a mosquitto this script starts) and real agents run as
their own processes on 127.0.0.1; this process runs the dataflow framework (``DataflowRun``) and a subscriber on
the sink's topic. The pipeline is three WASM operators across two agents plus a sink::

    read (sensor.wasm, edge, N replicas on a shared simulated sensor) -> scale (map.wasm, edge)
        -> hot (filter.wasm, cloud) -> out (sink.wasm, cloud; console: published for the framework)

Scenarios, per broker (embedded amqtt; mosquitto when installed, else embedded only, and the results say so):

- ``paced``: one source at 100 readings/s, batches flushed after 10 ms: latency = arrival at the sink's
  subscriber minus the reading's time ``t`` (same clock: loopback), p50/p99.
- ``flood``: ``--sources`` replicas each at the reader's top rate (1000 readings/s, batches of up to 100 records,
  flushed after 50 ms): records/s at the sink over ``--seconds``, and the latency under that load.
- ``migration`` (embedded broker): ``scale`` runs on a worker agent; that agent is SIGKILLed. Reported: kill ->
  the framework has re-placed the operator (the master declares the agent lost after 3 missed heartbeats of
  ``--heartbeat`` s, so that is the floor), kill -> the first record through the new instance arrives at the
  sink, and the records the framework counted as lost in the move.

Baselines measured in the same run (bench/_dataflow_baselines.py): the bare per-batch wasmtime cost of map.wasm on
a 100-record batch (the pipeline runs 4 modules per record path), and the bare MQTT QoS 1 publish -> receive round
trip on the same broker (a record crosses 4 topics). Results: bench/results/dataflow.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, get_state, save, secure_master, spawn, stop, summary_ms
from _dataflow_baselines import mosquitto, mqtt_round_trip, wasm_batch_cost

from edgerm.frameworks.dataflow import DataflowRun, RunOptions, loads

PY = sys.executable


def pipeline(sources: int, period: float, batch_ms: float, worker: bool) -> str:
    scale_where = "role == worker" if worker else "domain == edge"
    return f"""
name: bench
operators:
  read:
    kind: source
    wasm: builtin:sensor
    devices: [temperature]
    replicas: {sources}
    env: {{EDGERM_DF_PERIOD: "{period}", EDGERM_DF_BATCH_MS: "{batch_ms}"}}
    resources: {{cpus: 0.05, mem: 16}}
    constraints: [domain == edge]
  scale:
    kind: operator
    wasm: builtin:map
    args: [--scale, "1.8", --offset, "32"]
    env: {{EDGERM_DF_BATCH_MS: "{batch_ms}"}}
    resources: {{cpus: 0.1, mem: 32}}
    constraints: [{scale_where}]
  hot:
    kind: operator
    wasm: builtin:filter
    args: [--above, "-1000"]
    env: {{EDGERM_DF_BATCH_MS: "{batch_ms}"}}
    resources: {{cpus: 0.1, mem: 32}}
    constraints: [domain == cloud]
  out:
    kind: sink
    wasm: builtin:sink
    env: {{EDGERM_DF_BATCH_MS: "{batch_ms}"}}
    resources: {{cpus: 0.1, mem: 32}}
    constraints: [domain == cloud]
edges:
  - read -> scale -> hot -> out
"""


class Cluster:
    """A master and agents as processes; stopped (SIGTERM, then SIGKILL) at exit."""

    def __init__(self, tmp: Path, broker: str | None, heartbeat: float) -> None:
        self.tmp = tmp
        self.heartbeat = heartbeat
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        if broker is None:
            self.broker = f"mqtt://127.0.0.1:{free_port()}"
            flags = ["--broker-port", self.broker.rsplit(":", 1)[1]]
        else:
            self.broker, flags = broker, ["--broker", broker]
        cmd = [PY, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port), "--no-coap", *flags]
        cmd += secure_master(tmp / "master-state")
        self.procs: dict[str, subprocess.Popen[bytes]] = {
            "master": spawn([*cmd, "--log-level", "WARNING"], ready_url=self.url + "/api/v1/state")
        }

    def agent(self, name: str, domain: str, *, sensor: bool = False, **attrs: str) -> None:
        cfg = self.tmp / f"{name}.yaml"
        labels = {"domain": domain, **attrs}
        devices = "devices: [{name: temperature, handle: 'sim:random', shared: true}]\n" if sensor else ""
        cfg.write_text(
            f"name: {name}\nwork_dir: {self.tmp / name}\nheartbeat_interval: {self.heartbeat}\n"
            f"resources: {{cpus: 2, mem: 2048}}\nattributes: {json.dumps(labels)}\nexecutors: [wasm]\n{devices}"
        )
        cmd = [PY, "-m", "edgerm.agent.main", "--master", self.url, "--config", str(cfg), "--log-level", "WARNING"]
        self.procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    async def registered(self, count: int) -> None:
        if not await until(lambda: _agents(self.url) >= count, 20):
            raise RuntimeError("agents did not register")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for p in reversed(list(self.procs.values())):
            stop(p)


def _agents(url: str) -> int:

    try:
        return len(get_state(url)["agents"])
    except OSError:
        return 0


async def until(check: Callable[[], bool], within: float, step: float = 0.005) -> bool:
    """Poll ``check`` until it holds (True) or ``within`` seconds passed (False)."""
    deadline = time.monotonic() + within
    for _ in iter(int, 1):
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return False


@contextlib.asynccontextmanager
async def cluster(broker: str | None, heartbeat: float) -> AsyncIterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-df-") as tmp:
        c = Cluster(Path(tmp), broker, heartbeat)
        try:
            yield c
        finally:
            c.close()


class SinkTap:
    """Subscribes to the sink's topic; keeps (arrival, reading time, seq, src) per record."""

    def __init__(self, url: str, topic: str) -> None:
        host, _, port = url.removeprefix("mqtt://").rpartition(":")
        self.client = aiomqtt.Client(host, int(port))
        self.topic = topic
        self.arrivals: list[tuple[float, float, int, str]] = []
        self._job: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SinkTap:
        await self.client.__aenter__()
        await self.client.subscribe(self.topic, qos=1)
        self._job = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._job is not None:
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)
        await self.client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        async for message in self.client.messages:
            now = time.time()
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                for line in bytes(payload).decode().splitlines():
                    f = line.split()
                    if len(f) == 4:
                        self.arrivals.append((now, float(f[2]), int(f[1]), f[0]))

    def window(self, start: float, end: float) -> list[tuple[float, float, int, str]]:
        return [a for a in self.arrivals if start <= a[0] < end]


async def steady(c: Cluster, *, sources: int, period: float, batch_ms: float, seconds: float) -> dict[str, Any]:
    dag = loads(pipeline(sources, period, batch_ms, worker=False))
    run = DataflowRun(dag, c.url, broker_url=c.broker, options=RunOptions(deadline=30, status_interval=0))
    async with SinkTap(c.broker, "edgerm/bench/out/out") as tap:
        await run.start()
        try:
            if not await run.wait_running(30):
                raise RuntimeError(run.render())
            await asyncio.sleep(2.0)  # warm-up: compiled modules, subscriptions, first batches
            start = time.time()
            await asyncio.sleep(seconds)
            end = time.time()
            got = tap.window(start, end)
            view = run.watch.view(end)
            placement = {str(i.instance): i.hostname for i in run.framework.view().instances}
        finally:
            await run.stop()
    latencies = [arrival - t for arrival, t, _, _ in got]
    offered = sources / period
    return {
        "sources": sources,
        "offered_records_per_s": round(offered),
        "records_per_s": round(len(got) / seconds, 1),
        "latency": summary_ms(latencies),
        "dropped": sum(o.dropped for o in view.operators),
        "lost_or_skipped": view.skipped + view.lost_in_moves,
        "placement": placement,
    }


async def migration(c: Cluster) -> dict[str, Any]:
    dag = loads(pipeline(1, 0.01, 10, worker=True))
    run = DataflowRun(
        dag, c.url, broker_url=c.broker, options=RunOptions(deadline=30, status_interval=0, retry_seconds=0.5)
    )
    async with SinkTap(c.broker, "edgerm/bench/out/out") as tap:
        await run.start()
        try:
            if not await run.wait_running(30):
                raise RuntimeError(run.render())
            await asyncio.sleep(2.0)
            victim = run.framework.view().instances
            host = next(i.hostname for i in victim if i.instance.operator == "scale")
            killed = time.time()
            c.kill(host)
            if not await until(lambda: bool(run.framework.moves), 30):
                raise RuntimeError("the operator was not moved: " + run.render())
            replaced = time.time()
            if not await until(lambda: bool(tap.window(replaced, float("inf"))), 30):
                raise RuntimeError("the stream did not resume: " + run.render())
            resumed = tap.window(replaced, float("inf"))[0][0]
            await asyncio.sleep(2.0 + run.options.move_grace)
            view = run.watch.view(time.time())
            move = run.framework.moves[0]
        finally:
            await run.stop()
    return {
        "killed_agent": host,
        "heartbeat_s": c.heartbeat,
        "detection_timeout_s": round(3 * c.heartbeat, 3),  # 3 missed heartbeats after the last one
        "kill_to_replaced_s": round(replaced - killed, 3),
        "kill_to_stream_resumed_s": round(resumed - killed, 3),
        "move": str(move),
        "records_lost_in_move": view.lost_in_moves,
        "offered_records_per_s": 100,
    }


async def scenario(name: str, broker: str | None, args: argparse.Namespace) -> dict[str, Any]:
    async with cluster(broker, args.heartbeat) as c:
        c.agent("edge-1", "edge", sensor=True)
        c.agent("cloud-1", "cloud")
        await c.registered(2)
        rtt = summary_ms(await mqtt_round_trip(c.broker, 300))
        paced = await steady(c, sources=1, period=0.01, batch_ms=10, seconds=args.seconds)
        flood = await steady(c, sources=args.sources, period=0.001, batch_ms=50, seconds=args.seconds)
        out: dict[str, Any] = {"broker": name, "mqtt_round_trip": rtt, "paced": paced, "flood": flood}
        if name == "embedded":
            c.agent("worker-1", "edge", role="worker")
            c.agent("worker-2", "edge", role="worker")
            await c.registered(4)
            out["migration"] = await migration(c)
        return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cost = await asyncio.to_thread(wasm_batch_cost, 100, 300)
    result: dict[str, Any] = {
        "pipeline": "read(sensor.wasm) -> scale(map.wasm) -> hot(filter.wasm) -> out(sink.wasm), 2 agents",
        "baseline_wasm_batch_100": summary_ms(cost),
        "scenarios": [await scenario("embedded", None, args)],
    }
    async with mosquitto() as url:
        if url is None:
            result["mosquitto"] = "not installed (scripts/setup_mosquitto.sh): embedded broker only"
        else:
            result["scenarios"].append(await scenario("mosquitto", url, args))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=10.0, help="measuring window per scenario")
    p.add_argument("--sources", type=int, default=4, help="source replicas in the flood scenario (1000/s each)")
    p.add_argument("--heartbeat", type=float, default=0.5, help="agents' heartbeat interval (s)")
    args = p.parse_args(argv)
    result = asyncio.run(main_async(args))
    base = result["baseline_wasm_batch_100"]
    print(f"baseline: map.wasm on a 100-record batch p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms")
    for s in result["scenarios"]:
        rtt = s["mqtt_round_trip"]
        print(f"[{s['broker']}] baseline MQTT QoS 1 round trip p50 {rtt['p50_ms']} ms, p99 {rtt['p99_ms']} ms")
        for kind in ("paced", "flood"):
            r = s[kind]
            lat = r["latency"]
            ratio = lat["p50_ms"] / rtt["p50_ms"] if rtt["p50_ms"] else float("nan")
            print(
                f"[{s['broker']}] {kind}: {r['records_per_s']} records/s at the sink "
                f"(offered {r['offered_records_per_s']}), latency p50 {lat['p50_ms']} ms ({ratio:.1f}x RTT), "
                f"p99 {lat['p99_ms']} ms, dropped {r['dropped']}"
            )
        if "migration" in s:
            m = s["migration"]
            print(
                f"[{s['broker']}] migration: kill -> re-placed {m['kill_to_replaced_s']} s "
                f"(agent timeout {m['detection_timeout_s']} s after its last heartbeat), kill -> stream resumed "
                f"{m['kill_to_stream_resumed_s']} s, {m['records_lost_in_move']} records lost (counted)"
            )
    if "mosquitto" in result:
        print(f"mosquitto: {result['mosquitto']}")
    print(f"saved {save('dataflow', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
