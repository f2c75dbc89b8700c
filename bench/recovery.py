"""Recovery: what the registry costs, and how fast a killed master gets its fleet back.

    python bench/recovery.py [--tasks 1000] [--agents 10] [--probe-tasks 200]

Two parts, one run, real processes on 127.0.0.1 (a master, agents, and this process as the framework):

1. **Cost of durability.** accept -> RUNNING latency (one task at a time) and launch throughput, with the
   registry on (SQLite in a temp state dir) against ``--state-dir :memory:``, in alternating rounds so machine
   drift hits both alike. Target: registry p50 <= 1.5x in-memory p50.
2. **Recovery.** ``--tasks`` WASM tasks that sleep forever on ``--agents`` agents; ``kill -9`` the master and
   restart it on the same state dir. Reported: the time from the restart until every agent is back ACTIVE and
   every task RUNNING at the master, and until the framework (re-subscribed by its driver) has every task
   reconciled RUNNING; and how many tasks were killed, lost or duplicated (target: none).

Results: bench/results/recovery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, get_state, save, secure_master, spawn, stop, summary_ms
from launch_latency import MODULE, Prober, cluster

from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, load_module, run, wasm_task
from edgerm.model import Filters, Offer, TaskInfo, TaskState, TaskStatus

REPO = Path(__file__).resolve().parents[1]
SLEEP = REPO / "examples" / "wasm" / "sleep.wat"


# -- part 1: the cost of the registry --------------------------------------------------------


def latency_round(n: int, state_dir: str) -> tuple[list[float], float]:
    module = load_module(MODULE)

    def make(o: Offer, name: str) -> TaskInfo:
        return wasm_task(o, name, module, "cpus:0.1;mem:32")

    with tempfile.TemporaryDirectory(prefix="edgerm-bench-") as tmp:
        sd = state_dir if state_dir == ":memory:" else str(Path(tmp) / "state")
        # Both without authentication (a :memory: master has no credentials file): bench/heartbeats.py
        # measures what authentication costs; this measures the registry alone.
        procs, url = cluster("http", Path(tmp), ("--insecure", "--state-dir", sd))
        try:
            prober = Prober(n, make, "wasm", "cpus:0.1;mem:32")
            t0 = time.perf_counter()
            asyncio.run(run(prober, url, max_retries=5))
            return prober.running, n / (time.perf_counter() - t0)
        finally:
            for p in reversed(procs):
                stop(p)


# -- part 2: recovery after kill -9 ----------------------------------------------------------


class Fleet(Framework):
    """Launches ``total`` sleeping tasks, ``per_agent`` on each agent, and records their states."""

    name = "recovery-bench"

    def __init__(self, total: int, per_agent: int) -> None:
        self.total, self.per_agent = total, per_agent
        self.module = load_module(SLEEP)
        self.placed: dict[str, int] = {}
        self.launched: list[str] = []
        self.latest: dict[str, TaskState] = {}
        self.log: list[TaskStatus] = []

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for offer in offers:
            want = min(self.total - len(self.launched), self.per_agent - self.placed.get(offer.agent_id, 0), 50)
            if want <= 0:
                await driver.decline([offer.id], refuse_seconds=3600)
                continue
            tasks = [wasm_task(offer, f"sleep-{len(self.launched) + i}", self.module, "cpus:0.001;mem:4")
                     for i in range(want)]  # fmt: skip
            await driver.accept([offer.id], tasks, Filters(refuse_seconds=0))
            self.launched += [t.task_id for t in tasks]
            self.placed[offer.agent_id] = self.placed.get(offer.agent_id, 0) + want

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.latest[status.task_id] = status.state
        self.log.append(status)


def _state(url: str) -> dict[str, Any]:
    return get_state(url, timeout=5)


async def _until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if await asyncio.to_thread(check) if not asyncio.iscoroutinefunction(check) else await check():
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"not within {within}s: {what}")


async def recovery(tasks: int, agents: int, tmp: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    master_cmd = [sys.executable, "-m", "edgerm.master.main", "--port", str(port), *secure_master(tmp / "state"),
                  "--no-coap", "--no-broker", "--log-level", "WARNING"]  # fmt: skip
    procs = [spawn(master_cmd, ready_url=url + "/api/v1/state")]
    per_agent = -(-tasks // agents)
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        f"heartbeat_interval: 1.0\nexecutors: [wasm]\nwasm: {{threads: {per_agent + 8}, time_limit: 3600}}\n"
    )
    for i in range(agents):
        agent = ["--master", url, "--config", str(cfg), "--work-dir", str(tmp / f"a{i}"), "--name", f"bench-{i}"]
        procs.append(spawn([sys.executable, "-m", "edgerm.agent.main", *agent, "--log-level", "WARNING"]))
    fleet = Fleet(tasks, per_agent)
    driver = HttpDriver(fleet, url, backoff_initial=0.05, backoff_max=0.3)
    run_task = asyncio.create_task(driver.run())
    try:
        t0 = time.perf_counter()
        await _until(lambda: sum(s is TaskState.RUNNING for s in fleet.latest.values()) == tasks, 300, "all RUNNING")
        launched_s = time.perf_counter() - t0
        before = len(fleet.log)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        t_restart = time.perf_counter()
        procs[0] = spawn(master_cmd, ready_url=url + "/api/v1/state")
        listening_s = time.perf_counter() - t_restart

        def back() -> bool:
            state = _state(url)
            return (
                sum(a["state"] == "ACTIVE" for a in state["agents"]) == agents
                and sum(t["state"] == "RUNNING" for t in state["tasks"]) == tasks
            )

        await _until(back, 120, "every agent ACTIVE and every task RUNNING")
        agents_back_s = time.perf_counter() - t_restart
        mark = len(fleet.log)
        await driver.reconcile()
        await _until(lambda: len({s.task_id for s in fleet.log[mark:] if s.state is TaskState.RUNNING}) == tasks,
                     120, "every task reconciled RUNNING")  # fmt: skip
        reconciled_s = time.perf_counter() - t_restart
        after = fleet.log[before:]
        state = _state(url)
        return {
            "tasks": tasks,
            "agents": agents,
            "launch_all_s": round(launched_s, 2),
            "restart_listening_s": round(listening_s, 3),
            "agents_and_tasks_back_s": round(agents_back_s, 3),
            "all_reconciled_at_framework_s": round(reconciled_s, 3),
            "killed_or_lost_after_restart": sum(1 for s in after if s.state.terminal),
            "running_at_master_after": sum(t["state"] == "RUNNING" for t in state["tasks"]),
            "duplicate_task_ids": len(state["tasks"]) - len({t["id"] for t in state["tasks"]}),
        }
    finally:
        await driver.stop()
        await asyncio.gather(run_task, return_exceptions=True)
        for p in reversed(procs):
            stop(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--probe-tasks", type=int, default=200, help="tasks per latency measurement (both stores)")
    args = parser.parse_args()

    runs: dict[str, list[float]] = {"memory": [], "registry": []}
    rates: dict[str, list[float]] = {"memory": [], "registry": []}
    half = max(args.probe_tasks // 2, 10)
    for _ in range(2):  # alternate, so drift on the machine hits both alike
        for name, sd in (("memory", ":memory:"), ("registry", "dir")):
            lat, rate = latency_round(half, sd)
            runs[name] += lat
            rates[name].append(rate)
    cost = {name: summary_ms(values) for name, values in runs.items()}
    with tempfile.TemporaryDirectory(prefix="edgerm-recovery-") as tmp:
        rec = asyncio.run(recovery(args.tasks, args.agents, Path(tmp)))
    res = {
        "params": vars(args),
        "accept_to_running": cost,
        "launch_rate_tasks_per_s": {k: round(sum(v) / len(v), 1) for k, v in rates.items()},
        "ratio_p50_registry_vs_memory": round(cost["registry"]["p50_ms"] / max(cost["memory"]["p50_ms"], 1e-6), 2),
        "recovery": rec,
    }
    print("accept -> RUNNING, one at a time:")
    for name, s in cost.items():
        print(f"  {name:8s} p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms  (n={s['n']}), "
              f"{res['launch_rate_tasks_per_s'][name]} tasks/s")  # fmt: skip
    print(f"  registry / memory p50: {res['ratio_p50_registry_vs_memory']}x (target <= 1.5x)")
    print(f"recovery of {rec['tasks']} tasks on {rec['agents']} agents after kill -9:")
    for key in ("restart_listening_s", "agents_and_tasks_back_s", "all_reconciled_at_framework_s"):
        print(f"  {key:32s} {rec[key]} s")
    print(f"  killed or lost: {rec['killed_or_lost_after_restart']}, duplicates: {rec['duplicate_task_ids']}")
    print(f"saved {save('recovery', res)}")


if __name__ == "__main__":
    main()
