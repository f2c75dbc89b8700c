"""Benchmark: the cost of one master ``/metrics`` scrape, and of observing events, against the cluster's size.

Run from the repository root::

    python bench/metrics_scrape.py            # 100, 1,000, 3,000 and 10,000 agents
    python bench/metrics_scrape.py --quick    # 100 and 1,000 agents

A real MasterService (its core, observers and handler table; no sockets,
an injected clock) holds N agents, each running 2 or 3 tasks, and has seen
1,000 tasks end (as many as the core remembers).
Per size it prints and saves (``bench/results/metrics_scrape.json``):

- ``scrape_ms``: the best of several renders of the exposition;
- ``snapshot_ms``: the baseline measured in the same run, the core's JSON
  snapshot that the old ``/metrics`` re-read on every scrape;
- ``ratio``: scrape / snapshot (below 1: cheaper than re-reading the state);
- ``per_agent_us``: scrape time per agent (flat means linear in the
  per-agent series, nothing more);
- ``sliced_longest_ms``: what ``/metrics`` serves, the sliced scrape
  (``render_metrics_sliced``, 1,000 agents per slice): its longest stretch
  without yielding the event loop, as a task spinning on the loop sees it
  (what a heartbeat arriving during a scrape may wait), and ``sliced_ms``,
  its whole time;
- ``observe_us``: mean cost the observers (metrics, dashboard history) add
  to one heartbeat, from timing heartbeats with and without them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import save
from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.events import HeartbeatReceived
from edgerm.master.handlers import Handlers
from edgerm.master.service import MasterService, ServiceOptions
from edgerm.master.state import MasterConfig
from edgerm.model import AgentInfo, Filters, FrameworkInfo, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

MODULE = b"\0asm\1\0\0\0"
WASM = {"executors": frozenset({"wasm"})}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def build(n_agents: int) -> tuple[Handlers, Clock]:
    """A service with ``n_agents`` agents, 2 or 3 running tasks on each and 1,000 ended tasks."""
    clock = Clock()
    options = ServiceOptions(allocation_interval=3600, framework_heartbeat=3600, max_stream_events=10**7)
    service = MasterService(MasterConfig(offer_timeout=3600), options, clock=clock)
    await service.start()
    h = Handlers(service)
    for i in range(n_agents):
        info = AgentInfo(AgentId(f"a{i}"), f"host-{i}", Resources.parse("cpus:4;mem:4096;disk:1000"), WASM, 1.0)
        await h.agent_call(m.RegisterAgent(info), transport="coap" if i % 3 == 0 else "http")
    stream = await h.subscribe(m.Subscribe(FrameworkInfo(FrameworkId(""), "bench")))
    fid, sid = stream.framework_id, stream.stream_id
    # One ACCEPT per agent launches 3 tasks there; the first task of the first 1,000 agents ends (the core
    # remembers 1,000 ended tasks), the others keep running.
    for i, offer in enumerate(service.core.offers_of(fid)):
        tasks = tuple(
            TaskInfo(TaskId(f"t{i}-{k}"), "t", offer.agent_id, Resources.parse("cpus:0.1;mem:16"), WasmSpec(MODULE))
            for k in range(3)
        )
        await h.scheduler_call(m.Accept(fid, (offer.id,), tasks, Filters(refuse_seconds=3600)), sid)
        for k, task in enumerate(tasks):
            state = TaskState.FINISHED if k == 0 and i < 1000 else TaskState.RUNNING
            uuid = f"u{i}-{k}"
            await h.agent_call(
                m.StatusUpdate(offer.agent_id, TaskStatus(task.task_id, offer.agent_id, state, uuid=uuid))
            )
            await h.scheduler_call(m.Acknowledge(fid, offer.agent_id, task.task_id, uuid), sid)
        while len(stream):
            await anext(stream)
    return h, clock


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


async def sliced_scrape(h: Handlers, repeat: int) -> tuple[float, float]:
    """The best whole time of ``metrics_text_sliced`` and, in that run, the longest gap between two turns of a
    task spinning on the loop."""
    results = []
    for _ in range(repeat):
        gaps: list[float] = []

        async def spin(gaps: list[float] = gaps) -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        spinner = asyncio.create_task(spin())
        await asyncio.sleep(0)
        started = time.perf_counter()
        await h.metrics_text_sliced()
        whole = time.perf_counter() - started
        spinner.cancel()
        results.append((whole, max(gaps, default=whole)))
    return min(results)


async def measure(n_agents: int) -> dict[str, float]:
    h, _ = await build(n_agents)
    service = h.service
    repeat = 5
    scrape = best(h.metrics_text, repeat)
    sliced, longest = await sliced_scrape(h, repeat)
    snapshot = best(service.core.snapshot, repeat)
    beats = [HeartbeatReceived(AgentId(f"a{i % n_agents}")) for i in range(5000)]

    def heartbeats() -> None:
        for beat in beats:
            service.handle(beat)

    with_observers = best(heartbeats, 3)
    observers, service.observers = service.observers, []
    without = best(heartbeats, 3)
    service.observers = observers
    await service.stop()
    return {
        "agents": n_agents,
        "tasks_known": len(service.core.tasks()),
        "scrape_ms": round(scrape * 1000, 3),
        "snapshot_ms": round(snapshot * 1000, 3),
        "ratio": round(scrape / snapshot, 3),
        "sliced_ms": round(sliced * 1000, 3),
        "sliced_longest_ms": round(longest * 1000, 3),
        "per_agent_us": round(scrape / n_agents * 1e6, 2),
        "heartbeat_us": round(without / len(beats) * 1e6, 2),
        "observe_us": round((with_observers - without) / len(beats) * 1e6, 2),
    }


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", default="", help="comma-separated agent counts (default 100,1000,3000,10000)")
    args = p.parse_args()
    default = (100, 1000) if args.quick else (100, 1000, 3000, 10000)
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else default
    rows = []
    print(
        f"{'agents':>7} {'tasks':>6} {'scrape ms':>10} {'snapshot ms':>12} {'ratio':>6} {'us/agent':>9} "
        f"{'hb us':>6} {'observe us':>11} {'sliced ms':>10} {'longest slice ms':>17}"
    )
    for n in sizes:
        r = await measure(n)
        rows.append(r)
        print(
            f"{r['agents']:>7} {r['tasks_known']:>6} {r['scrape_ms']:>10} {r['snapshot_ms']:>12} {r['ratio']:>6} "
            f"{r['per_agent_us']:>9} {r['heartbeat_us']:>6} {r['observe_us']:>11} {r['sliced_ms']:>10} "
            f"{r['sliced_longest_ms']:>17}"
        )
    path = save("metrics_scrape", {"rows": rows, "baseline": "MasterCore.snapshot() in the same run"})
    print(f"saved {path}")


if __name__ == "__main__":
    asyncio.run(main())
