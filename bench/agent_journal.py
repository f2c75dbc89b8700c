"""The agent journal's cost: how long an update waits to be durable, alone and in bursts (group commit).

    python bench/agent_journal.py [--updates 2000] [--burst 100] [--dir DIR]

Every status update an agent sends, and every launch, first waits for its
journal record to be written and fsync'd (edgerm/agent/journal.py). This
measures, in one process on the work dir's file system (``--dir``, default a
temporary dir under the current directory so it is a real disk, not tmpfs):

- ``single``: one update at a time, ``durable()`` awaited each time (the
  latency a lone update pays before it goes out);
- ``burst``: ``--burst`` updates queued at once, then one ``durable()``
  (what many tasks ending together pay: one fsync per batch);

each with ``fsync=True`` and, as the baseline measured in the same run, the
same writes without fsync. Results: bench/results/agent_journal.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save, summary_ms

from edgerm.agent.journal import Journal
from edgerm.ids import AgentId, TaskId
from edgerm.model import TaskState, TaskStatus


def status(n: int) -> TaskStatus:
    return TaskStatus(TaskId(f"task-{n}"), AgentId("bench"), TaskState.RUNNING, uuid=f"uuid-{n}", timestamp=1.0)


async def single(work: Path, updates: int, fsync: bool) -> list[float]:
    journal = Journal(work, fsync=fsync)
    journal.load()
    out = []
    for n in range(updates):
        t0 = time.perf_counter()
        journal.update(status(n), "wasm")
        await journal.durable()
        out.append(time.perf_counter() - t0)
        journal.ack(TaskId(f"task-{n}"), f"uuid-{n}")
    await journal.close()
    return out


async def burst(work: Path, updates: int, size: int, fsync: bool) -> tuple[list[float], float]:
    journal = Journal(work, fsync=fsync)
    journal.load()
    per_burst = []
    start = time.perf_counter()
    for b in range(updates // size):
        t0 = time.perf_counter()
        for n in range(b * size, (b + 1) * size):
            journal.update(status(n), "wasm")
        await journal.durable()
        per_burst.append(time.perf_counter() - t0)
        for n in range(b * size, (b + 1) * size):
            journal.ack(TaskId(f"task-{n}"), f"uuid-{n}")
    elapsed = time.perf_counter() - start
    await journal.close()
    return per_burst, (updates // size) * size / elapsed


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--dir", type=Path, default=Path.cwd())
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edgerm-journal-bench-", dir=args.dir))
    try:
        results: dict[str, object] = {"updates": args.updates, "burst": args.burst, "dir": str(args.dir)}
        for fsync in (False, True):
            name = "fsync" if fsync else "no_fsync"
            lone = await single(root / f"single-{name}", args.updates, fsync)
            bursts, rate = await burst(root / f"burst-{name}", args.updates, args.burst, fsync)
            results[name] = {
                "single": summary_ms(lone),
                "burst": summary_ms(bursts),
                "burst_updates_per_s": round(rate),
            }
        on, off = results["fsync"], results["no_fsync"]
        assert isinstance(on, dict) and isinstance(off, dict)
        results["ratios"] = {
            "single_p50_fsync_vs_none": round(on["single"]["p50_ms"] / off["single"]["p50_ms"], 2),
            "burst_throughput_fsync_vs_none": round(on["burst_updates_per_s"] / off["burst_updates_per_s"], 3),
        }
        path = save("agent_journal", results)
        for key in ("no_fsync", "fsync"):
            r = results[key]
            assert isinstance(r, dict)
            print(
                f"{key:9s} single p50 {r['single']['p50_ms']:.3f} ms p99 {r['single']['p99_ms']:.3f} ms; "
                f"burst of {args.burst}: p50 {r['burst']['p50_ms']:.3f} ms, {r['burst_updates_per_s']} updates/s"
            )
        print(f"ratios: {results['ratios']}  -> {path}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
