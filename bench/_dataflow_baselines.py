"""Baselines for the dataflow benchmark: bare per-batch wasmtime cost, bare MQTT round trip, brokers.

    python bench/_dataflow_baselines.py [--records 100] [--batches 500] [--messages 500]

Importable by bench/dataflow.py (measure the baselines in the same run as the
pipeline, as bench/README rules ask):

- :func:`wasm_batch_cost` -- one builtin operator run on one micro-batch of
  ``records`` records exactly as the agent runs it (``BatchExecutor``: new
  Store + WasiConfig + instantiate + ``_start``, stdin/stdout through files,
  Engine and Module reused), ``batches`` times. Blocking; seconds per batch.
- :func:`mqtt_round_trip` -- publish one message at QoS 1, wait until the
  same process receives it on its subscription, repeat; seconds per round
  trip. The floor under any source -> sink latency through a broker.
- :func:`embedded_broker` and :func:`mosquitto` -- async context managers
  yielding a broker URL on 127.0.0.1 (the master's amqtt broker on an
  ephemeral port; Debian's mosquitto on a free port with ``set_tcp_nodelay``,
  or None when it is not installed: scripts/setup_mosquitto.sh). Both are
  stopped on exit.

Run as a script it prints both baselines for both brokers and saves
bench/results/dataflow_baselines.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, save, summary_ms

from edgerm.agent.dataflow.executor import MIB, BatchExecutor, ExecutorSpec
from edgerm.dataflow_ops import load_builtin
from edgerm.master.broker import EmbeddedBroker

MAP_ARGS = ("--scale", "1.8", "--offset", "32")


def sample_batch(records: int, src: str = "read.0") -> bytes:
    """A micro-batch of ``records`` records from one source."""
    now = time.time()
    return "".join(f"{src} {i} {now + i * 0.01:.6f} {20 + (i % 50) * 0.1:.4g}\n" for i in range(records)).encode()


def wasm_batch_cost(
    records: int = 100,
    batches: int = 500,
    operator: str = "map",
    args: tuple[str, ...] = MAP_ARGS,
    gap: float = 0.0,
) -> list[float]:
    """Seconds per batch of one builtin operator, as the agent runs it (first run dropped as warm-up).

    ``gap``: seconds of sleep between runs (a paced stream: caches and the scheduler as a pipeline sees them).
    """
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-wasm-") as tmp:
        executor = BatchExecutor(ExecutorSpec(load_builtin(operator), (operator, *args), {}, Path(tmp), 64 * MIB))
        batch = sample_batch(records)
        executor.run(batch)
        out: list[float] = []
        for _ in range(batches):
            if gap:
                time.sleep(gap)
            began = time.perf_counter()
            executor.run(batch)
            out.append(time.perf_counter() - began)
        return out


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("mqtt://").rpartition(":")
    return host.strip("[]"), int(port)


async def mqtt_round_trip(url: str, messages: int = 500, payload_bytes: int = 1024, gap: float = 0.0) -> list[float]:
    """Seconds from publish (QoS 1) to receipt on a subscription of the same process, one at a time.

    ``gap``: seconds between round trips (a paced stream, as the pipeline's records are).
    """
    host, port = _host_port(url)
    topic = f"edgerm/bench/rtt/{time.monotonic_ns()}"
    payload = b"x" * payload_bytes
    async with aiomqtt.Client(host, port) as sub, aiomqtt.Client(host, port) as pub:
        await sub.subscribe(topic, qos=1)
        incoming = sub.messages
        await pub.publish(topic, payload, qos=1)  # warm-up
        await anext(incoming)
        out: list[float] = []
        for _ in range(messages):
            if gap:
                await asyncio.sleep(gap)
            began = time.perf_counter()
            await pub.publish(topic, payload, qos=1)
            await anext(incoming)
            out.append(time.perf_counter() - began)
        return out


@contextlib.asynccontextmanager
async def embedded_broker() -> AsyncIterator[str]:
    """The master's embedded amqtt broker on an ephemeral port of 127.0.0.1."""
    broker = EmbeddedBroker("127.0.0.1", 0)
    await broker.start()
    try:
        yield broker.url
    finally:
        await broker.stop()


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
    )


@contextlib.asynccontextmanager
async def mosquitto() -> AsyncIterator[str | None]:
    """A mosquitto process on a free port of 127.0.0.1 (None when mosquitto is not installed)."""
    binary = mosquitto_binary()
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-mosquitto-") as tmp:
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        # set_tcp_nodelay: mosquitto leaves Nagle on by default, so a small PUBLISH it forwards can wait for
        # the TCP ACK of what it sent before (docs/dataflow.md, "Performance": the recommended setting).
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
        proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    await writer.wait_closed()
                    break
                except OSError:
                    if proc.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError("mosquitto did not start") from None
                    await asyncio.sleep(0.02)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def measure(records: int, batches: int, messages: int) -> dict[str, Any]:
    """Both baselines, over both brokers (mosquitto when installed)."""
    cost = await asyncio.to_thread(wasm_batch_cost, records, batches)
    result: dict[str, Any] = {
        "wasm_batch": {"operator": "map", "records": records, **summary_ms(cost)},
        "wasm_records_per_s": round(records / (sum(cost) / len(cost))),
        "mqtt_round_trip": {},
    }
    async with embedded_broker() as url:
        result["mqtt_round_trip"]["embedded"] = summary_ms(await mqtt_round_trip(url, messages))
    async with mosquitto() as url:
        if url is not None:
            result["mqtt_round_trip"]["mosquitto"] = summary_ms(await mqtt_round_trip(url, messages))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=100, help="records per micro-batch")
    p.add_argument("--batches", type=int, default=500, help="module runs to time")
    p.add_argument("--messages", type=int, default=500, help="MQTT round trips to time")
    args = p.parse_args(argv)
    result = asyncio.run(measure(args.records, args.batches, args.messages))
    w = result["wasm_batch"]
    print(f"wasm map, {args.records}-record batch: p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms")
    print(f"  = {result['wasm_records_per_s']} records/s on one thread")
    for broker, rtt in result["mqtt_round_trip"].items():
        print(f"MQTT QoS 1 publish->receive ({broker}): p50 {rtt['p50_ms']} ms, p99 {rtt['p99_ms']} ms")
    if "mosquitto" not in result["mqtt_round_trip"]:
        print("mosquitto not installed: embedded broker only (scripts/setup_mosquitto.sh)")
    print(f"saved {save('dataflow_baselines', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
