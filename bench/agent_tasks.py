"""One agent alone: CPU per trivial wasm task, by thread, with no master and no sockets (issue #13 part 6).

    python bench/agent_tasks.py [--tasks 3000] [--in-flight 20] [--before REV] [--repeat 3]

A real :class:`edgerm.agent.service.AgentService` (its journal fsync'd on the real disk, its sandboxes, the
real WasmRuntime under the DataflowRuntime, as ``edgerm.agent.main`` builds them) is fed LAUNCH commands for
``examples/wasm/hello.wat`` by a transport that passes every call and event through the wire codec and answers
each UPDATE after 1 ms; it keeps ``--in-flight`` tasks unfinished. It reports CPU ms per task (all threads, and
per thread: the event loop, the wasm threads, the journal writer, the ``to_thread`` pool) and tasks/s. The
figure the end-to-end bench (bench/task_throughput.py) cannot give steadily on a shared machine: an agent's
CPU per task, without the master's and the framework's noise.

Baseline, in the same run: the same loop on the edgerm of ``--before`` (``git archive``, in a subprocess),
alternated ``--repeat`` times; medians and their ratio. Results: bench/results/agent_tasks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "examples" / "wasm" / "hello.wat"


def per_thread() -> dict[str, list[int]]:
    """utime and stime ticks of this process's threads, summed by name (``edgerm-wasm_3`` -> ``edgerm-wasm``)."""
    names = {t.native_id: t.name.rsplit("_", 1)[0] for t in threading.enumerate()}
    out: dict[str, list[int]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        entry = out.setdefault(names.get(int(tid), "other"), [0, 0])
        entry[0] += int(fields[11])
        entry[1] += int(fields[12])
    return out


async def measure(tasks: int, in_flight: int) -> dict[str, Any]:
    from edgerm import messages as m
    from edgerm import wire
    from edgerm.agent.dataflow.runtime import DataflowRuntime
    from edgerm.agent.service import AgentService
    from edgerm.agent.wasm import WasmRuntime, load_module
    from edgerm.ids import AgentId, FrameworkId, TaskId, new_id
    from edgerm.model import AgentInfo, TaskInfo, TaskState, WasmSpec
    from edgerm.resources import Resources

    module = load_module(MODULE)
    agent_id = AgentId("bench-agent")
    need = Resources.parse("cpus:0.05;mem:16")

    class Transport:
        max_statuses_per_update = 64

        def __init__(self) -> None:
            self.queue: asyncio.Queue[bytes] = asyncio.Queue()
            self.launched = self.finished = 0
            self.goal = 0
            self.done = asyncio.Event()
            self.failed: list[str] = []

        def launch_more(self) -> None:
            while self.launched - self.finished < in_flight and self.launched < self.goal:
                task = TaskInfo(
                    task_id=TaskId(new_id()),
                    name=f"t{self.launched}",
                    agent_id=agent_id,
                    resources=need,
                    container=WasmSpec(module=module),
                    framework_id=FrameworkId("bench"),
                )
                self.queue.put_nowait(wire.encode_agent_event(m.LaunchCommand(task)))
                self.launched += 1

        async def call(self, call: Any) -> Any:
            call = wire.decode_agent_call(wire.encode_agent_call(call))
            await asyncio.sleep(0.001)
            reply: Any
            if isinstance(call, m.RegisterAgent):
                reply = m.AgentRegistered(agent_id)
            elif isinstance(call, m.AgentHeartbeat):
                reply = m.HeartbeatAck()
            elif isinstance(call, m.StatusUpdate):
                statuses = call.statuses
                for s in statuses:
                    if s.state is TaskState.FINISHED:
                        self.finished += 1
                    elif s.state.terminal:
                        self.failed.append(f"{s.state.value}: {s.message}")
                        self.finished += 1
                ids = tuple((s.task_id, s.uuid) for s in statuses[1:])
                reply = m.StatusAcknowledged(statuses[0].task_id, statuses[0].uuid, ids)
                if self.finished >= self.goal:
                    self.done.set()
                self.launch_more()
            else:
                raise RuntimeError(f"unexpected call {call!r}")
            return wire.decode_agent_event(wire.encode_agent_event(reply))

        async def commands(self, _agent_id: Any) -> Any:
            while True:
                data = [await self.queue.get()]
                while not self.queue.empty():
                    data.append(self.queue.get_nowait())
                for d in data:
                    yield wire.decode_agent_event(d)

        async def fetch_module(self, sha256: str) -> bytes:
            raise RuntimeError("no module store here")

        async def close(self) -> None:
            pass

    # (a sandbox retired in a thread at the stop may still be moving: the cleanup ignores that)
    with tempfile.TemporaryDirectory(prefix="edgerm-agent-tasks-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        transport = Transport()
        runtime = DataflowRuntime(
            agent_id,
            WasmRuntime(work, threads=32),
            devices={},
            fetch_module=transport.fetch_module,
            threads=4,
            default_memory=64.0,
        )
        info = AgentInfo(agent_id, "bench", Resources.parse("cpus:1;mem:1024"))
        service = AgentService(info, transport, {"wasm": runtime}, work)  # type: ignore[arg-type]
        await service.start()
        await service.wait_registered()
        try:
            for goal in (300, tasks):  # a warm-up (module compiled, threads and spares made), then the count
                transport.launched = transport.finished = 0
                transport.goal = goal
                transport.done.clear()
                before, cpu0, wall0 = per_thread(), time.process_time(), time.perf_counter()
                transport.launch_more()
                await asyncio.wait_for(transport.done.wait(), 120)
                after, cpu1, wall1 = per_thread(), time.process_time(), time.perf_counter()
        finally:
            await service.stop()
    ms = 1000 / os.sysconf("SC_CLK_TCK") / tasks
    threads = {
        name: {
            "user": round(ms * (u - before.get(name, [0, 0])[0]), 3),
            "sys": round(ms * (s - before.get(name, [0, 0])[1]), 3),
        }
        for name, (u, s) in after.items()
        if (u, s) != tuple(before.get(name, [0, 0]))
    }
    return {
        "cpu_ms_per_task": round(1000 * (cpu1 - cpu0) / tasks, 3),
        "tasks_per_s": round(tasks / (wall1 - wall0), 1),
        "cpu_ms_per_task_by_thread": threads,
        "failed": transport.failed[:5],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def run_before(rev: str, args: argparse.Namespace) -> dict[str, Any] | str:
    """This loop on the edgerm of ``rev``, in a subprocess run from that tree (``python -m`` puts cwd first)."""
    with tempfile.TemporaryDirectory(prefix="edgerm-agent-tasks-before-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "edgerm"], capture_output=True)
        if archive.returncode != 0:
            return f"git archive {rev} failed: {archive.stderr.decode().strip()}"
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        cmd = [sys.executable, __file__, "--emit", "--tasks", str(args.tasks), "--in-flight", str(args.in_flight)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tmp}, cwd=tmp)
        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            return f"the run on {rev} failed: {out.stderr.strip()[-500:]}"
        result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
        return result


def show(label: str, r: dict[str, Any]) -> None:
    by = "  ".join(f"{k} {v['user']:.2f}+{v['sys']:.2f}" for k, v in sorted(r["cpu_ms_per_task_by_thread"].items()))
    print(f"{label:7s} {r['cpu_ms_per_task']:.3f} CPU ms/task, {r['tasks_per_s']:.0f} tasks/s; user+sys ms: {by}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=20, help="unfinished tasks at once (an agent runs 20)")
    parser.add_argument("--before", metavar="REV", default="", help="also run this commit's edgerm, alternated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emit:
        print("RESULT " + json.dumps(asyncio.run(measure(args.tasks, args.in_flight))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import save

    runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
    for _ in range(args.repeat):
        if args.before:
            before = run_before(args.before, args)
            if isinstance(before, str):
                raise SystemExit(before)
            runs["before"].append(before)
            show("before", before)
        runs["now"].append(asyncio.run(measure(args.tasks, args.in_flight)))
        show("now", runs["now"][-1])
    res: dict[str, Any] = {"params": vars(args), "runs": runs}
    for which in ("before", "now"):
        if runs[which]:
            res[f"{which}_median"] = {
                k: statistics.median(r[k] for r in runs[which]) for k in ("cpu_ms_per_task", "tasks_per_s")
            }
    if runs["before"]:
        b, n = res["before_median"], res["now_median"]
        res["ratio_cpu_ms_per_task"] = round(n["cpu_ms_per_task"] / b["cpu_ms_per_task"], 2)
        res["ratio_tasks_per_s"] = round(n["tasks_per_s"] / b["tasks_per_s"], 2)
        print(
            f"medians: before {b['cpu_ms_per_task']:.3f} CPU ms/task, {b['tasks_per_s']:.0f} tasks/s; now "
            f"{n['cpu_ms_per_task']:.3f}, {n['tasks_per_s']:.0f}: x{res['ratio_cpu_ms_per_task']} CPU per task, "
            f"x{res['ratio_tasks_per_s']} tasks/s"
        )
    print(f"saved {save('agent_tasks', res)}")


if __name__ == "__main__":
    main()
