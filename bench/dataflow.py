"""Dataflow pipeline: latency against its floor, flood throughput (float, JSON, 1 MiB binary), a move, a switch.

    python bench/dataflow.py [--seconds 5] [--heartbeat 0.5] [--brokers embedded,mosquitto] [--switch-cycles 2]

A real master (with its embedded amqtt broker, or pointed at a mosquitto this script starts) and real agents
run as their own processes on 127.0.0.1; this process runs the dataflow framework (``DataflowRun``), a
subscriber on the sink's topic (the tap) and, for the floods, a feed. The pipeline is four WASM stages on two
agents::

    read (sensor.wasm, edge) -> scale (map.wasm, edge) -> hot (filter.wasm, cloud) -> out (sink.wasm, cloud)

Scenarios, per broker:

- ``paced``: the source reads a simulated sensor 100 times a second. Latency = arrival at the tap minus the
  reading's ``t`` (one clock: loopback), p50/p99, against the **floor measured in the same run**: 4 MQTT QoS 1
  round trips (read->scale->hot->out->tap) plus one 1-record batch of each of the 4 modules, as the agent runs
  them. Target: p50 <= 3x the floor. The floor is given twice: back to back (a hot loop), and paced 10 ms
  apart like the records (what a process that sleeps between records pays to be woken on a busy machine).
- ``flood_float`` / ``flood_json`` / ``flood_binary``: the feed (this process, standing in for a gateway)
  publishes micro-batches to the source's output topic (the source itself reads a silent device) as fast as
  the pipeline takes them: it keeps at most ``--window`` batches between its publish and their arrival at the
  tap (closed loop, so nothing is dropped for being offered too much). Float: 1000 numbers per batch from 8
  sources; JSON: 800 ``{"temperature": .., "room": ..}`` objects per batch, ``map``/``filter`` on
  ``--field temperature``; binary: one 1 MiB bytes record per batch (bytes pass the WASM modules untouched).
  Records/s (and MB/s) at the tap, over ``--seconds``. The framework watches the sink's topic only here.
- ``move``: ``scale`` runs on a worker agent, which is SIGKILLed under the paced stream. Reported: kill ->
  re-placed (the master declares the agent lost after 3 missed heartbeats), kill -> the stream resumed at the
  tap, and, counted at the tap by (src, seq) between the first and the last record: records lost, and records
  that arrived more than once.
- ``switch``: bench/dataflow_switch.py's scenario (its own pipeline and cluster), ``--switch-cycles`` times: a
  quality condition (sink rate below 5/s for 1 s) broken on purpose, the switch to the fallback, the stream
  back through it, and the switch back to main once the condition is restored; against its baselines (the
  condition's period, the DAG's cold placement). ``--switch-cycles 0`` skips it.

Masters: a secure one (``edgerm-master init``) for mosquitto; for the embedded broker, the round trip and the
floods run against an ``--insecure`` master (a secure master's broker lets only tasks publish: no feed, no
round-trip client), and paced and move against a secure one (as deployed: tasks log in, every delivery is
checked), the tap logging in with the admin token. mosquitto runs with ``set_tcp_nodelay``.

Baselines in the same run (bench/_dataflow_baselines.py): each module on a 1-record batch, map on a 1000-record
batch, the MQTT QoS 1 round trip per broker. Results: bench/results/dataflow.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
from dataflow_switch import scenario as switch_scenario

from edgerm.dataflow_records import Record, binary_heads, encode_binary
from edgerm.frameworks.dataflow import DataflowRun, RunOptions, loads

PY = sys.executable
MIB = 1024 * 1024
OUT = "edgerm/bench/out/out"
FEED = "edgerm/bench/read/out"
STAGES = (("sensor", ()), ("map", ("--scale", "1.8", "--offset", "32")), ("filter", ("--above", "-1000")),
          ("sink", ()))  # fmt: skip


def pipeline(*, device: str, period: float, worker: bool, field: str = "") -> str:
    scale_where = "role == worker" if worker else "domain == edge"
    by_field = f', "--field", "{field}"' if field else ""
    return f"""
name: bench
operators:
  read:
    kind: source
    wasm: builtin:sensor
    devices: [{device}]
    env: {{EDGERM_DF_PERIOD: "{period}"}}
    resources: {{cpus: 0.05, mem: 16}}
    constraints: [domain == edge]
  scale:
    kind: operator
    wasm: builtin:map
    args: ["--scale", "1.8", "--offset", "32"{by_field}]
    resources: {{cpus: 0.1, mem: 64}}
    constraints: [{scale_where}]
  hot:
    kind: operator
    wasm: builtin:filter
    args: ["--above", "-1000"{by_field}]
    resources: {{cpus: 0.1, mem: 64}}
    constraints: [domain == cloud]
  out:
    kind: sink
    wasm: builtin:sink
    resources: {{cpus: 0.1, mem: 64}}
    constraints: [domain == cloud]
edges:
  - read -> scale -> hot -> out
"""


class Cluster:
    """A master and agents as processes; stopped (SIGTERM, then SIGKILL) at exit."""

    def __init__(self, tmp: Path, broker: str | None, heartbeat: float, *, secure: bool = True) -> None:
        self.tmp = tmp
        self.heartbeat = heartbeat
        # The tap logs in to a secure master's embedded broker with the admin token (it may read everything).
        self.login = secure and broker is None
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        if broker is None:
            self.broker = f"mqtt://127.0.0.1:{free_port()}"
            flags = ["--broker-port", self.broker.rsplit(":", 1)[1]]
        else:
            self.broker, flags = broker, ["--broker", broker]
        cmd = [PY, "-m", "edgerm.master.main", "--host", "127.0.0.1", "--port", str(port), "--no-coap", *flags]
        if not secure:
            # A secure master's embedded broker lets only tasks publish (edgerm/master/broker_gate.py): the
            # feed and the round-trip baseline need an --insecure master.
            cmd += ["--insecure", "--state-dir", str(tmp / "master-state")]  # not the user's default state dir
            for name in ("EDGERM_TOKEN", "EDGERM_JOIN_TOKEN"):
                os.environ.pop(name, None)
        else:
            cmd += secure_master(tmp / "master-state")
        self.procs: dict[str, subprocess.Popen[bytes]] = {
            "master": spawn([*cmd, "--log-level", "WARNING"], ready_url=self.url + "/api/v1/state")
        }

    def agent(self, name: str, domain: str, *, sensor: bool = False, **attrs: str) -> None:
        cfg = self.tmp / f"{name}.yaml"
        labels = {"domain": domain, **attrs}
        devices = (
            "devices: [{name: temperature, handle: 'sim:random', shared: true},"
            " {name: feed, handle: 'cmd:sleep 100000', shared: true}]\n"
            if sensor
            else ""
        )
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
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


@contextlib.asynccontextmanager
async def cluster(broker: str | None, heartbeat: float, *, secure: bool = True) -> AsyncIterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-df-") as tmp:
        c = Cluster(Path(tmp), broker, heartbeat, secure=secure)
        try:
            yield c
        finally:
            c.close()


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("mqtt://").rpartition(":")
    return host, int(port)


class Tap:
    """Subscribes to the sink's topic. ``detail``: keeps (arrival, t, seq, src) per record; else counts."""

    def __init__(self, url: str, *, detail: bool, login: bool = False) -> None:
        host, port = _host_port(url)
        self._login = {"username": "bench", "password": os.environ["EDGERM_TOKEN"]} if login else {}
        self.client = aiomqtt.Client(host, port, max_queued_incoming_messages=0, **self._login)
        self.detail = detail
        self.arrivals: list[tuple[float, float, int, str]] = []
        self.records = 0
        self.payload_bytes = 0
        self.reconnections = 0
        self.url = url
        self._job: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tap:
        await self.client.__aenter__()
        await self.client.subscribe(OUT, qos=1)
        self._job = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._job is not None:
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)
        await self.client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        while True:
            try:
                await self._take()
            except aiomqtt.MqttError:  # the broker dropped the tap (amqtt under a flood): counted, connect again
                self.reconnections += 1
                with contextlib.suppress(Exception):
                    await self.client.__aexit__(None, None, None)
                host, port = _host_port(self.url)
                self.client = aiomqtt.Client(host, port, max_queued_incoming_messages=0, **self._login)
                with contextlib.suppress(aiomqtt.MqttError):
                    await self.client.__aenter__()
                    await self.client.subscribe(OUT, qos=1)

    async def _take(self) -> None:
        async for message in self.client.messages:
            now = time.time()
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            data = bytes(payload)
            if data[:1] == b"\x00":  # binary: bytes records, counted on their headers (no payload copied)
                heads = binary_heads(data)
                self.records += len(heads)
                self.payload_bytes += len(data)
                if self.detail:
                    self.arrivals.extend((now, h.t, h.seq, h.src) for h in heads)
                continue
            self.records += data.count(b"\n")
            if self.detail:
                for line in data.split(b"\n"):
                    f = line.split(None, 3)
                    if len(f) == 4:
                        self.arrivals.append((now, float(f[2]), int(f[1]), f[0].decode()))

    def window(self, start: float, end: float) -> list[tuple[float, float, int, str]]:
        return [a for a in self.arrivals if start <= a[0] < end]


async def start_run(c: Cluster, dag_text: str, **options: Any) -> DataflowRun:
    run = DataflowRun(
        loads(dag_text), c.url, broker_url=c.broker, options=RunOptions(deadline=30, status_interval=0, **options)
    )
    await run.start()
    if not await run.wait_running(30):
        await run.stop()
        raise RuntimeError(run.render())
    return run


async def paced(c: Cluster, seconds: float, floor_ms: float, paced_floor_ms: float) -> dict[str, Any]:
    async with Tap(c.broker, detail=True, login=c.login) as tap:
        run = await start_run(c, pipeline(device="temperature", period=0.01, worker=False))
        try:
            await asyncio.sleep(2.0)  # warm-up: compiled modules, sessions, first batches
            start = time.time()
            await asyncio.sleep(seconds)
            got = tap.window(start, time.time())
        finally:
            await run.stop()
    latency = summary_ms([arrival - t for arrival, t, _, _ in got])
    return {
        "offered_records_per_s": 100,
        "records_per_s": round(len(got) / seconds, 1),
        "latency": latency,
        "floor_ms": round(floor_ms, 3),
        "p50_over_floor": round(latency["p50_ms"] / floor_ms, 2) if floor_ms else None,
        "paced_floor_ms": round(paced_floor_ms, 3),
        "p50_over_paced_floor": round(latency["p50_ms"] / paced_floor_ms, 2) if paced_floor_ms else None,
    }


def float_batch(seq: int, n: int, sources: int = 8) -> bytes:
    now = time.time()
    return "".join(f"feed.{i % sources} {seq + i // sources} {now:.6f} {20 + i % 17}\n" for i in range(n)).encode()


def json_batch(seq: int, n: int, sources: int = 8) -> bytes:
    now = time.time()
    return "".join(
        f'feed.{i % sources} {seq + i // sources} {now:.6f} {{"temperature":{20 + i % 17},"room":"r{i % 5}"}}\n'
        for i in range(n)
    ).encode()


async def flood(c: Cluster, kind: str, seconds: float, window: int) -> dict[str, Any]:
    """The feed keeps at most ``window`` batches between its publish and the tap (see the module docstring)."""
    field = "temperature" if kind == "json" else ""
    per_batch = {"float": 1000, "json": 800, "binary": 1}[kind]
    frame = os.urandom(MIB) if kind == "binary" else b""
    host, port = _host_port(c.broker)
    feed_errors: list[str] = []
    async with Tap(c.broker, detail=False) as tap:
        # The framework watches the sink's topic only (--watch sinks): watching every edge would pull each
        # record of every hop into this process too, which is the framework's cost, not the data plane's.
        run = await start_run(c, pipeline(device="feed", period=1.0, worker=False, field=field), watch_all=False)
        published = 0
        seq = 0
        stopping = asyncio.Event()

        async def produce() -> None:
            nonlocal published, seq
            while not stopping.is_set():
                try:
                    async with aiomqtt.Client(host, port, timeout=30) as feed:
                        while not stopping.is_set():
                            if published - tap.records >= window * per_batch:
                                await asyncio.sleep(0.0005)
                                continue
                            if kind == "binary":
                                record = Record("feed.0", seq, time.time(), frame, "application/octet-stream")
                                payload = encode_binary([record])
                                seq += 1
                            else:
                                payload = (float_batch if kind == "float" else json_batch)(seq, per_batch)
                                seq += per_batch // 8
                            await feed.publish(FEED, payload, qos=1)
                            published += per_batch
                except aiomqtt.MqttError as e:  # the broker dropped the feed: counted, and connected again
                    feed_errors.append(str(e))
                    published = tap.records
                    await asyncio.sleep(0.1)

        producers = [asyncio.create_task(produce())]  # one: records of a source stay in order
        try:
            await asyncio.sleep(3.0)  # warm-up
            r0, b0, t0 = tap.records, tap.payload_bytes, time.time()
            await asyncio.sleep(seconds)
            r1, b1, t1 = tap.records, tap.payload_bytes, time.time()
            view = run.watch.view(t1)
        finally:
            stopping.set()
            await asyncio.gather(*producers, return_exceptions=True)
            await run.stop()
    out: dict[str, Any] = {
        "records_per_batch": per_batch,
        "feed_window_batches": window,
        "records_per_s": round((r1 - r0) / (t1 - t0)),
        "dropped": sum(o.dropped for o in view.operators),
        "errors": sum(o.errors for o in view.operators),
        "feed_disconnections": len(feed_errors),
        "tap_reconnections": tap.reconnections,
        # where a stalled flood stopped: each operator's rates in its last stats (records/s in and out)
        "operator_rates": {o.operator: [round(o.in_rate), round(o.out_rate)] for o in view.operators},
        "fed_records": published,
    }
    if kind == "binary":
        out["record_bytes"] = MIB
        out["mb_per_s"] = round((b1 - b0) / (t1 - t0) / 1e6, 1)
    return out


async def move(c: Cluster) -> dict[str, Any]:
    async with Tap(c.broker, detail=True, login=c.login) as tap:
        run = await start_run(c, pipeline(device="temperature", period=0.01, worker=True), retry_seconds=0.5)
        try:
            await asyncio.sleep(2.0)
            host = next(i.hostname for i in run.framework.view().instances if i.instance.operator == "scale")
            killed = time.time()
            c.kill(host)
            if not await until(lambda: bool(run.framework.moves), 30):
                raise RuntimeError("the operator was not moved: " + run.render())
            replaced = time.time()
            if not await until(lambda: bool(tap.window(replaced, float("inf"))), 30):
                raise RuntimeError("the stream did not resume: " + run.render())
            resumed = tap.window(replaced, float("inf"))[0][0]
            await asyncio.sleep(3.0)
            view = run.watch.view(time.time())
            moved = str(run.framework.moves[0])
        finally:
            await run.stop()
    seqs = [seq for _, _, seq, src in tap.arrivals if src == "read.0"]
    distinct = set(seqs)
    expected = set(range(min(distinct), max(distinct) + 1)) if distinct else set()
    return {
        "killed_agent": host,
        "heartbeat_s": c.heartbeat,
        "detection_timeout_s": round(3 * c.heartbeat, 3),
        "kill_to_replaced_s": round(replaced - killed, 3),
        "kill_to_stream_resumed_s": round(resumed - killed, 3),
        "move": moved,
        "offered_records_per_s": 100,
        "records_seen": len(distinct),
        "records_lost": len(expected - distinct),
        "records_duplicated_at_tap": len(seqs) - len(distinct),
        "framework_lost_in_moves": view.lost_in_moves,
        "framework_duplicates": view.duplicates,
    }


async def scenario(
    name: str, broker: str | None, args: argparse.Namespace, module_floor: tuple[float, float]
) -> dict[str, Any]:
    """One broker's figures. The embedded broker: the round trip and the floods on an --insecure master (only
    tasks may publish on a secure one), then paced and move on a secure master (as deployed: tasks log in, and
    every delivery passes the broker's gate)."""
    out: dict[str, Any] = {"broker": name}
    async with cluster(broker, args.heartbeat, secure=broker is not None) as c:
        c.agent("edge-1", "edge", sensor=True)
        c.agent("cloud-1", "cloud")
        await c.registered(2)
        rtt = summary_ms(await mqtt_round_trip(c.broker, 300, payload_bytes=64))
        rtt_paced = summary_ms(await mqtt_round_trip(c.broker, 300, payload_bytes=64, gap=0.01))
        out.update(mqtt_round_trip=rtt, mqtt_round_trip_paced=rtt_paced)
        for kind in ("float", "json", "binary"):
            out[f"flood_{kind}"] = await flood(c, kind, args.seconds, 4 if kind == "binary" else args.window)
        if broker is not None:
            await paced_and_move(c, args, out, module_floor)
    if broker is None:
        out["secure_master_for"] = ["paced", "move"]
        async with cluster(broker, args.heartbeat, secure=True) as c:
            c.agent("edge-1", "edge", sensor=True)
            c.agent("cloud-1", "cloud")
            await c.registered(2)
            await paced_and_move(c, args, out, module_floor)
    return out


async def paced_and_move(
    c: Cluster, args: argparse.Namespace, out: dict[str, Any], module_floor: tuple[float, float]
) -> None:
    rtt, rtt_paced = out["mqtt_round_trip"], out["mqtt_round_trip_paced"]
    out["paced"] = await paced(
        c, args.seconds, 4 * rtt["p50_ms"] + module_floor[0], 4 * rtt_paced["p50_ms"] + module_floor[1]
    )
    c.agent("worker-1", "edge", role="worker")
    c.agent("worker-2", "edge", role="worker")
    await c.registered(4)
    out["move"] = await move(c)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    modules, paced_modules = {}, {}
    for name, margs in STAGES:
        modules[name] = summary_ms(await asyncio.to_thread(wasm_batch_cost, 1, 200, name, margs))
        paced_modules[name] = summary_ms(await asyncio.to_thread(wasm_batch_cost, 1, 100, name, margs, 0.01))
    big = summary_ms(await asyncio.to_thread(wasm_batch_cost, 1000, 100))
    module_floor = (sum(m["p50_ms"] for m in modules.values()), sum(m["p50_ms"] for m in paced_modules.values()))
    result: dict[str, Any] = {
        "pipeline": "read(sensor.wasm) -> scale(map.wasm) -> hot(filter.wasm) -> out(sink.wasm), 2 agents",
        "baseline_module_1_record": modules,
        "baseline_module_1_record_paced": paced_modules,
        "baseline_map_1000_records": big,
        "module_floor_ms": round(module_floor[0], 3),
        "module_floor_paced_ms": round(module_floor[1], 3),
        "load_average": os.getloadavg(),
        "scenarios": [],
    }
    brokers = args.brokers.split(",")
    switch_args = argparse.Namespace(cycles=args.switch_cycles, period=1.0, hold=2.0)

    async def switch(name: str, url: str | None) -> dict[str, Any]:
        try:
            return await switch_scenario(name, url, switch_args)
        except Exception as e:  # the other figures stand without it
            return {"error": f"{type(e).__name__}: {e}"[:2000]}

    if "embedded" in brokers:
        result["scenarios"].append(await scenario("embedded", None, args, module_floor))
        if args.switch_cycles:
            result["scenarios"][-1]["switch"] = await switch("embedded", None)
    if "mosquitto" in brokers:
        async with mosquitto() as url:
            if url is None:
                result["mosquitto"] = "not installed (scripts/setup_mosquitto.sh)"
            else:
                result["scenarios"].append(await scenario("mosquitto", url, args, module_floor))
                if args.switch_cycles:
                    result["scenarios"][-1]["switch"] = await switch("mosquitto", url)
    return result


def report(result: dict[str, Any]) -> None:
    mods = ", ".join(f"{k} {v['p50_ms']}" for k, v in result["baseline_module_1_record"].items())
    print(f"baseline: 1-record batch p50 ms: {mods} (sum {result['module_floor_ms']} ms)")
    big = result["baseline_map_1000_records"]
    print(f"baseline: map on a 1000-record batch p50 {big['p50_ms']} ms; load average {result['load_average']}")
    for s in result["scenarios"]:
        b, rtt, p = s["broker"], s["mqtt_round_trip"], s["paced"]
        print(f"[{b}] baseline MQTT QoS 1 round trip p50 {rtt['p50_ms']} ms, p99 {rtt['p99_ms']} ms")
        lat = p["latency"]
        print(
            f"[{b}] paced 100 rec/s, 4 hops: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms; floor "
            f"{p['floor_ms']} ms (4 RTT + 4 modules, back to back): p50 = {p['p50_over_floor']}x; paced floor "
            f"{p['paced_floor_ms']} ms (the same, 10 ms apart): p50 = {p['p50_over_paced_floor']}x"
        )
        for kind in ("float", "json", "binary"):
            f = s[f"flood_{kind}"]
            extra = f", {f['mb_per_s']} MB/s" if "mb_per_s" in f else ""
            print(
                f"[{b}] flood {kind}: {f['records_per_s']} records/s at the sink{extra}, dropped {f['dropped']}, "
                f"errors {f['errors']}, broker dropped the feed {f['feed_disconnections']}x and the tap "
                f"{f['tap_reconnections']}x"
            )
        m = s["move"]
        print(
            f"[{b}] move: kill -> re-placed {m['kill_to_replaced_s']} s (agent timeout {m['detection_timeout_s']} s),"
            f" kill -> resumed {m['kill_to_stream_resumed_s']} s; {m['records_lost']} lost,"
            f" {m['records_duplicated_at_tap']} duplicated at the tap (of {m['records_seen']})"
        )
        w = s.get("switch", {})
        if "error" in w:
            print(f"[{b}] switch: failed: {w['error']}")
        elif w:
            print(
                f"[{b}] switch ({len(w['cycles'])} cycles, p50): break -> breach {w['break_to_breach_s']['p50']} s"
                f" (period {w['baseline_period_s']} s), breach -> fallback running"
                f" {w['breach_to_fallback_running_s']['p50']} s (cold placement {w['baseline_cold_placement_s']} s),"
                f" break -> stream resumed {w['break_to_stream_resumed_s']['p50']} s, hold end -> main running"
                f" {w['hold_end_to_main_running_s']['p50']} s"
            )
    if "mosquitto" in result:
        print(f"mosquitto: {result['mosquitto']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=5.0, help="measuring window per scenario")
    p.add_argument("--window", type=int, default=8, help="flood feed: batches between publish and the tap")
    p.add_argument("--heartbeat", type=float, default=0.5, help="agents' heartbeat interval (s)")
    p.add_argument("--brokers", default="embedded,mosquitto", help="comma-separated: embedded, mosquitto")
    p.add_argument("--switch-cycles", type=int, default=2, help="quality switch cycles per broker (0: skip)")
    args = p.parse_args(argv)
    result = asyncio.run(main_async(args))
    report(result)
    print(f"saved {save('dataflow', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
