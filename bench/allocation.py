"""Allocation on the master's pure core: offer latency, cost per event, fairness (issue #13).

    python bench/allocation.py [--agents 1000,10000] [--frameworks 100] [--samples 200]

No sockets: the figures are the time of ``MasterCore.handle(event, now)``, which is what the
service's loop spends on allocation (the adapters' encoding and sending come on top). For each
fleet size a cluster is built with the incremental allocator: every agent runs one task that
holds it whole, each framework has demand, and ``--pool`` agents (10%) sit free, declined by
every framework with a long filter. Then, on that same state:

- freed resources -> OFFERS: a task ends (UPDATE FINISHED); the time until ``handle`` returns
  the OFFERS for the framework that gets the agent (the holder framework accepts it again,
  untimed, so the cluster stays full);
- SUBSCRIBE -> first OFFERS: a new framework subscribes and is offered the pool (up to its
  offer limit); it is torn down again, untimed;
- cost per event: an idle Tick, and DECLINE + the Tick that re-offers the declined agent.

The baseline, measured in the same run on the same state: the allocator before #13, where
every cycle visits every active agent and the DRF sorter re-sorts every framework (shares
recomputed) for every agent (``MasterConfig(full_reallocation=True)`` and the old
``DRFSorter.sort`` kept below). It still benefits from the new bookkeeping (cluster total kept,
heaps), so the speed-ups are, if anything, understated.

Fairness: polite frameworks with endless demand launch tasks of random size and length for 20
rounds; Jain's index of their mean dominant shares over the last 10 rounds, with 100 frameworks
on 1,000 agents (incremental; the baseline would take most of an hour there) and with 10 on 100
agents for both allocators (the same placement, so the same index). And the abuse mix of
tests/unit/master/test_fair_under_abuse.py (25 mute, 25 greedy, 25 declining, 25 polite) with
and without the offer limit: the round in which the last well-behaved framework got its first
offer, and Jain's index of the polite ones' launches.

Task throughput on the core, 4 agents (cpus:4;mem:4096), one framework launching trivial tasks
(cpus:0.1;mem:16, RUNNING and FINISHED reported at once, every update acknowledged): one task
per offer, and as many as fit (the README's framework): core time per task, and the simulated
time that passes (Ticks are only sent when no offer is pending). The baseline is the same loop
run, in a subprocess, against the master core before #13 (``git archive`` of commit
:data:`BEFORE`), where the 5 s filter on an ACCEPT's leftovers made simulated time pass. The
end-to-end figure with real agents, "task throughput with 4 agents", is bench/task_throughput.py's (it
uses :func:`throughput` as its baseline); one task at a time, bench/launch_latency.py's.

Targets: offer for freed resources within 5 ms at 10,000 agents; SUBSCRIBE -> first offers
within 20 ms. Results: bench/results/allocation.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save, summary_ms

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import MasterAction, SendEvent
from edgerm.master.allocator import DRFSorter
from edgerm.master.state import MasterConfig, MasterCore
from edgerm.model import AgentInfo, Filters, FrameworkInfo, Offer, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

BEFORE = "fdca55e"  # the last commit before incremental allocation (issue #13)
REPO = Path(__file__).resolve().parents[1]
ROUND = 0.25
WHOLE = Resources.parse("cpus:4;mem:4096")
MODULE = WasmSpec(module_sha256="ab" * 32)
HOUR = 3600.0


class LegacyDRFSorter(DRFSorter):
    """DRFSorter whose ``sort`` is, once ``legacy`` is set, the one before #13: every framework's
    share recomputed and all of them sorted, on every call."""

    __slots__ = ("legacy",)

    def __init__(self) -> None:
        super().__init__()
        self.legacy = False

    def sort(self, total: Resources) -> list[FrameworkId]:
        if not self.legacy:
            return super().sort(total)
        return sorted(
            self._allocations,
            key=lambda c: (self.share(c, total), self._last_offered[c], self._added[c]),
        )


def offers_in(actions: list[MasterAction]) -> list[Offer]:
    return [o for a in actions if isinstance(a, SendEvent) and isinstance(a.event, m.Offers) for o in a.event.offers]


def jain(values: list[float]) -> float:
    square = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * square) if square else 0.0


class Cluster:
    """A core with ``agents`` agents and ``frameworks`` frameworks, every agent but the pool busy."""

    def __init__(self, agents: int, frameworks: int, pool: int) -> None:
        self.sorter = LegacyDRFSorter()
        self.core = MasterCore(MasterConfig(master_id="b"), self.sorter)
        self.now = 0.0
        self.tasks = 0
        self.running: dict[TaskId, tuple[FrameworkId, AgentId]] = {}
        self.fids = [FrameworkId(f"f{i:03d}") for i in range(frameworks)]
        for fid in self.fids:
            self.core.handle(ev.FrameworkSubscribed(FrameworkInfo(fid, fid)), self.now)
        busy = agents - pool
        for i in range(agents):
            info = AgentInfo(AgentId(f"a{i:05d}"), f"a{i}", WHOLE, {"executors": frozenset({"wasm"})}, HOUR)
            self.handle(ev.AgentRegistered(info), keep_busy=i < busy)
        # The pool: every framework declines its agents for an hour, one round after another.
        for _ in range(frameworks + 1):
            pending = [o for fid in self.fids for o in self.core.offers_of(fid)]
            if not pending:
                break
            for o in pending:
                self.core.handle(m.Decline(o.framework_id, (o.id,), Filters(HOUR)), self.now)
            self.tick()
        assert not [o for fid in self.fids for o in self.core.offers_of(fid)], "the pool is not settled"

    def launch(self, offer: Offer) -> None:
        self.tasks += 1
        task_id = TaskId(f"t{self.tasks}")
        task = TaskInfo(task_id, str(task_id), AgentId(""), offer.resources, MODULE)
        self.core.handle(m.Accept(offer.framework_id, (offer.id,), (task,), Filters(0)), self.now)
        self.running[task_id] = (offer.framework_id, offer.agent_id)

    def handle(self, event: Any, keep_busy: bool = True) -> list[MasterAction]:
        actions = self.core.handle(event, self.now)
        if keep_busy:
            for offer in offers_in(actions):
                self.launch(offer)
        return actions

    def tick(self) -> list[MasterAction]:
        self.now += ROUND
        return self.core.handle(ev.Tick(), self.now)

    def legacy(self, on: bool) -> None:
        self.sorter.legacy = on
        self.core.config = replace(self.core.config, full_reallocation=on)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(c: Cluster, samples: int) -> dict[str, Any]:
    freed: list[float] = []
    subscribe: list[float] = []
    idle: list[float] = []
    decline: list[float] = []
    misses = 0
    for _ in range(samples):
        task_id = next(iter(c.running))  # the oldest task
        fid, agent_id = c.running.pop(task_id)
        status = TaskStatus(task_id, agent_id, TaskState.FINISHED, uuid=f"u-{task_id}")
        dt, actions = timed(lambda: c.core.handle(ev.StatusReceived(agent_id, status), c.now))  # noqa: B023
        got = offers_in(actions)
        if [o.agent_id for o in got] != [agent_id]:
            misses += 1
        freed.append(dt)
        c.core.handle(m.Acknowledge(fid, agent_id, task_id, status.uuid), c.now)
        for offer in got:
            c.launch(offer)
    reps = max(5, samples // 20)
    for i in range(reps):
        fid = FrameworkId(f"new{i:03d}-{len(subscribe)}")
        dt, actions = timed(lambda: c.core.handle(ev.FrameworkSubscribed(FrameworkInfo(fid, fid)), c.now))  # noqa: B023
        if not offers_in(actions):
            misses += 1
        subscribe.append(dt)
        c.core.handle(m.Teardown(fid), c.now)
    for _ in range(reps):
        c.now += ROUND
        idle.append(timed(lambda: c.core.handle(ev.Tick(), c.now))[0])
    for _ in range(reps):
        task_id = next(iter(c.running))
        fid, agent_id = c.running.pop(task_id)
        status = TaskStatus(task_id, agent_id, TaskState.FINISHED, uuid=f"u-{task_id}")
        [offer] = offers_in(c.core.handle(ev.StatusReceived(agent_id, status), c.now))
        c.core.handle(m.Acknowledge(fid, agent_id, task_id, status.uuid), c.now)
        t_decline, _ = timed(lambda: c.core.handle(m.Decline(offer.framework_id, (offer.id,), Filters(0)), c.now))  # noqa: B023
        c.now += ROUND
        t_tick, actions = timed(lambda: c.core.handle(ev.Tick(), c.now))
        decline.append(t_decline + t_tick)
        for again in offers_in(actions):
            c.launch(again)
    return {
        "freed_to_offer": summary_ms(freed),
        "subscribe_to_offers": summary_ms(subscribe),
        "idle_tick": summary_ms(idle),
        "decline_and_tick": summary_ms(decline),
        "misses": misses,
    }


def fleet(agents: int, frameworks: int, samples: int, baseline_samples: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    c = Cluster(agents, frameworks, pool=agents // 10)
    setup = time.perf_counter() - t0
    gc.collect()
    incremental = measure(c, samples)
    c.legacy(True)
    baseline = measure(c, baseline_samples)
    c.legacy(False)
    ratios = {k: round(baseline[k]["p50_ms"] / incremental[k]["p50_ms"], 1) for k in incremental if k != "misses"}
    return {
        "agents": agents,
        "frameworks": frameworks,
        "pool": agents // 10,
        "setup_s": round(setup, 1),
        "incremental": incremental,
        "baseline_full_reallocation": baseline,
        "speedup_p50": ratios,
    }


# -- fairness -----------------------------------------------------------------------------------------


def polite_fairness(agents: int, frameworks: int, full: bool, rounds: int = 20) -> dict[str, Any]:
    """Frameworks with endless demand: tasks of 1-4 cpus for 1-6 rounds, as many as an offer holds."""
    rng = random.Random(7)
    sorter = LegacyDRFSorter()
    core = MasterCore(MasterConfig(master_id="j"), sorter)
    now = 0.0
    for i in range(agents):
        info = AgentInfo(AgentId(f"a{i:04d}"), f"a{i}", WHOLE, {"executors": frozenset({"wasm"})}, HOUR)
        core.handle(ev.AgentRegistered(info), now)
    fids = [FrameworkId(f"p{i:03d}") for i in range(frameworks)]
    inbox: list[Offer] = []
    for fid in fids:
        inbox += offers_in(core.handle(ev.FrameworkSubscribed(FrameworkInfo(fid, fid)), now))
    sorter.legacy = full
    core.config = replace(core.config, full_reallocation=full)
    ends: dict[int, list[tuple[TaskId, AgentId, FrameworkId]]] = defaultdict(list)
    shares: dict[FrameworkId, float] = defaultdict(float)
    n = 0
    cost = 0.0
    for r in range(1, rounds + 1):
        while inbox:
            batch, inbox = inbox, []
            for offer in batch:
                if core.offers_of(offer.framework_id) and any(
                    o.id == offer.id for o in core.offers_of(offer.framework_id)
                ):
                    tasks, free = [], offer.resources
                    while True:
                        need = Resources.parse(f"cpus:{rng.randint(1, 4)};mem:{rng.choice([256, 512, 1024])}")
                        if not need <= free:
                            break
                        n += 1
                        tasks.append(TaskInfo(TaskId(f"t{n}"), "t", AgentId(""), need, MODULE))
                        ends[r + rng.randint(1, 6)].append((TaskId(f"t{n}"), offer.agent_id, offer.framework_id))
                        free = free - need
                    call: Any = (
                        m.Accept(offer.framework_id, (offer.id,), tuple(tasks), Filters(0))
                        if tasks
                        else m.Decline(offer.framework_id, (offer.id,), Filters(5))
                    )
                    dt, actions = timed(lambda: core.handle(call, now))  # noqa: B023
                    cost += dt
                    inbox += offers_in(actions)
        now += ROUND
        for task_id, agent_id, fid in ends.pop(r, []):
            status = TaskStatus(task_id, agent_id, TaskState.FINISHED, uuid=f"u-{task_id}")
            dt, actions = timed(lambda: core.handle(ev.StatusReceived(agent_id, status), now))  # noqa: B023
            cost += dt
            inbox += offers_in(actions)
            core.handle(m.Acknowledge(fid, agent_id, task_id, status.uuid), now)
        dt, actions = timed(lambda: core.handle(ev.Tick(), now))  # noqa: B023
        cost += dt
        inbox += offers_in(actions)
        if r > rounds // 2:  # the steady state, after the first subscribers' grab
            for fid, share in core.dominant_shares().items():
                shares[fid] += share
    return {"jain_mean_dominant_share": round(jain([shares[f] for f in fids]), 4), "core_seconds": round(cost, 2)}


def abuse(limit: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.unit.master import test_fair_under_abuse as mix

    sim = mix.Sim(MasterCore(MasterConfig(master_id="m", max_outstanding_offers=limit, offer_timeout=mix.TIMEOUT)))
    for i in range(1000):
        info = AgentInfo(AgentId(f"a{i:04d}"), f"a{i}", WHOLE, {"executors": frozenset({"wasm"})}, HOUR)
        sim.do(ev.AgentRegistered(info))
    groups = {kind: [FrameworkId(f"{kind}{i:02d}") for i in range(25)] for kind in "mgdp"}
    for kind in "mgdp":
        for fid in groups[kind]:
            sim.do(ev.FrameworkSubscribed(FrameworkInfo(fid, fid)))
    sim.settle()
    for _ in range(mix.ROUNDS):
        sim.next_round()
    well = groups["d"] + groups["p"]
    return {
        "max_outstanding_offers": limit,
        "last_first_offer_round_well_behaved": max(sim.first_offer.get(f, 10**6) for f in well),
        "jain_polite_launches": round(jain([float(sim.launched[f]) for f in groups["p"]]), 4),
        "most_offers_held": max(sim.most_held.values()),
    }


def throughput(one_per_offer: bool, n: int = 5000) -> dict[str, Any]:
    core = MasterCore(MasterConfig(master_id="t"))
    now = 0.0
    for i in range(4):
        info = AgentInfo(AgentId(f"a{i}"), f"a{i}", WHOLE, {"executors": frozenset({"wasm"})}, HOUR)
        core.handle(ev.AgentRegistered(info), now)
    fid = FrameworkId("thru")
    need = Resources.parse("cpus:0.1;mem:16")
    inbox = offers_in(core.handle(ev.FrameworkSubscribed(FrameworkInfo(fid, fid)), now))
    launched = 0
    t0 = time.perf_counter()
    while launched < n:
        if not inbox:
            now += ROUND
            inbox = offers_in(core.handle(ev.Tick(), now))
            continue
        offer = inbox.pop(0)
        if not any(o.id == offer.id for o in core.offers_of(fid)):
            continue
        tasks, free = [], offer.resources
        while need <= free and (not tasks or not one_per_offer):
            launched += 1
            tasks.append(TaskInfo(TaskId(f"t{launched}"), "t", AgentId(""), need, MODULE))
            free = free - need
        inbox += offers_in(core.handle(m.Accept(fid, (offer.id,), tuple(tasks), Filters()), now))
        for task in tasks:
            for state in (TaskState.RUNNING, TaskState.FINISHED):
                status = TaskStatus(task.task_id, offer.agent_id, state, uuid=f"{task.task_id}-{state.value}")
                inbox += offers_in(core.handle(ev.StatusReceived(offer.agent_id, status), now))
                core.handle(m.Acknowledge(fid, offer.agent_id, task.task_id, status.uuid), now)
    wall = time.perf_counter() - t0
    return {
        "tasks": launched,
        "one_task_per_offer": one_per_offer,
        "core_tasks_per_s": round(launched / wall),
        "simulated_seconds": now,
    }


def throughput_before() -> list[dict[str, Any]] | str:
    """:func:`throughput` against the core of commit BEFORE (fewer tasks: simulated time passes)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE, "edgerm"], capture_output=True)
        if archive.returncode != 0:
            return f"git archive {BEFORE} failed: {archive.stderr.decode().strip()}"
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        code = (
            f"import sys, json; sys.path[:0] = [{tmp!r}, {str(Path(__file__).parent)!r}]; import allocation as b; "
            "print(json.dumps([b.throughput(True, 40), b.throughput(False, 2000)]))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            return f"the run against {BEFORE} failed: {out.stderr.strip()[-500:]}"
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", default="1000,10000", help="comma-separated fleet sizes")
    p.add_argument("--frameworks", type=int, default=100)
    p.add_argument("--samples", type=int, default=200, help="freed-resource events per fleet (incremental)")
    p.add_argument("--baseline-samples", type=int, default=40, help="... with the baseline allocator")
    args = p.parse_args()
    results: dict[str, Any] = {
        "fleets": [],
        "targets": {"freed_to_offer_p99_ms_at_10000": 5.0, "subscribe_p99_ms": 20.0},
    }
    for n in (int(x) for x in args.agents.split(",")):
        r = fleet(n, args.frameworks, args.samples, args.baseline_samples)
        results["fleets"].append(r)
        inc, base = r["incremental"], r["baseline_full_reallocation"]
        print(f"{n} agents x {args.frameworks} frameworks (setup {r['setup_s']}s):")
        for k in ("freed_to_offer", "subscribe_to_offers", "idle_tick", "decline_and_tick"):
            print(
                f"  {k:20s} incremental p50 {inc[k]['p50_ms']:8.3f} ms p99 {inc[k]['p99_ms']:8.3f} ms | "
                f"baseline p50 {base[k]['p50_ms']:9.3f} ms | x{r['speedup_p50'][k]}"
            )
        print(f"  misses (no offer where one was due): incremental {inc['misses']}, baseline {base['misses']}")
    big = polite_fairness(1000, 100, False)
    small_inc, small_full = polite_fairness(100, 10, False), polite_fairness(100, 10, True)
    results["fairness_polite"] = {
        "frameworks_100_agents_1000": {"incremental": big},
        "frameworks_10_agents_100": {"incremental": small_inc, "baseline_full_reallocation": small_full},
    }
    print(
        f"fairness, 100 polite frameworks on 1,000 agents: Jain {big['jain_mean_dominant_share']} "
        f"(core time {big['core_seconds']}s for 20 rounds)"
    )
    print(
        f"fairness, 10 on 100 agents: Jain {small_inc['jain_mean_dominant_share']}, baseline "
        f"{small_full['jain_mean_dominant_share']}; core time {small_inc['core_seconds']}s "
        f"vs {small_full['core_seconds']}s"
    )
    limited, unlimited = abuse(20), abuse(0)
    results["abuse_mix_100x1000"] = {"with_limit": limited, "without_limit": unlimited}
    print(
        f"abuse mix: last well-behaved first offer at round {limited['last_first_offer_round_well_behaved']} with "
        f"limit 20, {unlimited['last_first_offer_round_well_behaved']} without; Jain of polite launches "
        f"{limited['jain_polite_launches']} vs {unlimited['jain_polite_launches']}"
    )
    before = throughput_before()
    results["throughput_4_agents"] = {"now": [throughput(True), throughput(False)], f"before_{BEFORE}": before}
    for label, runs in (("now", results["throughput_4_agents"]["now"]), (f"before {BEFORE}", before)):
        if isinstance(runs, str):
            print(f"throughput {label}: {runs}")
            continue
        for t in runs:
            style = "one task per offer" if t["one_task_per_offer"] else "as many as fit"
            sim = t["simulated_seconds"]
            rate = f"{t['tasks'] / sim:.1f} tasks per simulated s" if sim else "no simulated time passes"
            print(
                f"throughput {label}, 4 agents, {style}: {t['tasks']} tasks, {rate}, "
                f"{t['core_tasks_per_s']} tasks/s of core time"
            )
    path = save("allocation", results)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
