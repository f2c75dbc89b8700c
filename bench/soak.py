"""Soak: many short tasks through one framework while agents join and leave; master memory and state stay flat.

    python bench/soak.py [--tasks 20000] [--agents 4] [--churn-every 10]

Real processes on 127.0.0.1: an ``edgerm-master`` (secure, with its registry in a temp state dir), ``--agents``
``edgerm-agent`` processes, and this process as the framework. The framework launches trivial WASM tasks as fast
as its offers allow until ``--tasks`` have ended; every ``--churn-every`` seconds one agent is stopped and a new
one (a fresh work dir, so a new agent id) joins. Every second the master's RSS and the size of its
``/api/v1/state`` answer are sampled. Both must stay flat after warm-up: ended tasks are pruned (count and age),
departed agents and their tasks are forgotten. Reported: the first and last samples after warm-up (the first 10 %
of tasks) and their ratio, the task rate, and every task that did not end FINISHED.
Results: bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, save, secure_master, spawn, stop

from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, load_module, wasm_task
from edgerm.model import Filters, Offer, TaskState, TaskStatus

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "wasm" / "hello.wat"
NEED = "cpus:0.05;mem:16"


class Churn(Framework):
    """Launches trivial tasks on every offer until ``total`` have been launched; counts how they end."""

    name = "soak-bench"

    def __init__(self, total: int) -> None:
        self.total = total
        self.module = load_module(HELLO)
        self.launched = 0
        self.ended = 0
        self.outcomes: dict[str, int] = {}

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for offer in offers:
            room = int(min(offer.resources.cpus / 0.05, offer.resources.mem / 16))
            want = min(room, self.total - self.launched, 50)
            if want <= 0:
                await driver.decline([offer.id], refuse_seconds=1.0)
                continue
            tasks = [wasm_task(offer, f"soak-{self.launched + i}", self.module, NEED) for i in range(want)]
            self.launched += want
            await driver.accept([offer.id], tasks, Filters(refuse_seconds=0))

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        if status.state.terminal:
            self.ended += 1
            key = (
                status.state.value
                if status.state is TaskState.FINISHED
                else f"{status.state.value}:{status.reason.value}"
            )
            self.outcomes[key] = self.outcomes.get(key, 0) + 1


def _state_bytes(url: str, token: str) -> int:
    request = urllib.request.Request(url + "/api/v1/state", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return len(r.read())


def _agent(url: str, work: Path, name: str) -> subprocess.Popen[bytes]:
    cfg = work.with_suffix(".yaml")
    cfg.write_text(f"name: {name}\nheartbeat_interval: 1.0\nexecutors: [wasm]\nresources: {{cpus: 2, mem: 1024}}\n")
    argv = ["--master", url, "--config", str(cfg), "--work-dir", str(work), "--log-level", "WARNING"]
    return spawn([sys.executable, "-m", "edgerm.agent.main", *argv])


async def soak(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flags = secure_master(tmp / "state")  # sets EDGERM_TOKEN (admin) and EDGERM_JOIN_TOKEN for us and the agents
    token = os.environ["EDGERM_TOKEN"]
    master_cmd = [sys.executable, "-m", "edgerm.master.main", "--port", str(port), *flags, "--no-coap", "--no-broker",
                  "--log-level", "WARNING", "--allocation-interval", "0.1"]  # fmt: skip
    master = spawn(master_cmd, ready_url=url + "/api/v1/state")
    agents = [_agent(url, tmp / f"a{i}", f"soak-{i}") for i in range(args.agents)]
    joined = args.agents
    fw = Churn(args.tasks)
    driver = HttpDriver(fw, url, backoff_initial=0.05, backoff_max=0.5)
    runner = asyncio.create_task(driver.run())
    proc = psutil.Process(master.pid)
    samples: list[dict[str, float]] = []
    t0 = time.monotonic()
    last_churn = t0
    try:
        while fw.ended < args.tasks:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            size = await asyncio.to_thread(_state_bytes, url, token)
            samples.append({"t": round(now - t0, 1), "ended": fw.ended, "rss_mib": proc.memory_info().rss / 2**20,
                            "state_kib": size / 1024})  # fmt: skip
            if now - last_churn >= args.churn_every:  # one agent leaves, a new one joins
                last_churn = now
                stop(agents.pop(0))
                agents.append(_agent(url, tmp / f"a{joined}", f"soak-{joined}"))
                joined += 1
            if now - t0 > args.max_seconds:
                break
        wall = time.monotonic() - t0
    finally:
        await driver.stop()
        await asyncio.gather(runner, return_exceptions=True)
        for p in agents:
            stop(p)
        stop(master)
    warm = [s for s in samples if s["ended"] >= args.tasks * 0.1] or samples
    first, last = warm[0], warm[-1]
    return {
        "params": vars(args),
        "tasks_ended": fw.ended,
        "outcomes": fw.outcomes,
        "tasks_per_s": round(fw.ended / wall, 1),
        "agents_joined": joined,
        "rss_mib": {
            "after_warmup": round(first["rss_mib"], 1),
            "end": round(last["rss_mib"], 1),
            "ratio": round(last["rss_mib"] / first["rss_mib"], 3),
        },
        "state_kib": {
            "after_warmup": round(first["state_kib"], 1),
            "end": round(last["state_kib"], 1),
            "ratio": round(last["state_kib"] / max(first["state_kib"], 1e-6), 3),
        },
        "samples": samples,
    }


def _curve(start: float, end: float) -> dict[str, float]:
    return {"after_warmup": round(start, 1), "end": round(end, 1), "ratio": round(end / max(start, 1e-6), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--churn-every", type=float, default=10.0, metavar="S")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgerm-soak-") as tmp:
        res = asyncio.run(soak(args, Path(tmp)))
    print(f"{res['tasks_ended']} tasks ended at {res['tasks_per_s']} tasks/s; {res['agents_joined']} agents joined")
    print(f"  outcomes: {res['outcomes']}")
    for key in ("rss_mib", "state_kib"):
        v = res[key]
        print(f"  {key:10s} after warm-up {v['after_warmup']:9.1f}   end {v['end']:9.1f}   ratio {v['ratio']}")
    print(f"saved {save('soak', res)}")


if __name__ == "__main__":
    main()
