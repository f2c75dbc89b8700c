"""Soak: short tasks through one framework for a bounded time while the fleet is abused; nothing lost or doubled.

    python bench/soak.py [--seconds 360] [--agents 4] [--chaos-every 15] [--tasks 20000]

Real processes on 127.0.0.1: an ``edgerm-master`` (secure, its registry in a temp state dir), ``--agents``
``edgerm-agent`` processes, and this process as the framework (the real ``HttpDriver``). The framework launches
trivial WASM tasks as fast as its offers allow, for ``--seconds`` (or until ``--tasks`` were launched), then waits
for the launched ones to end. Every ``--chaos-every`` seconds one fault, in turn:

- ``master_kill9``: ``kill -9`` the master and restart it on the same state dir;
- ``agent_kill9``: ``kill -9`` an agent and restart it on the same work dir (the same agent id);
- ``agent_freeze``: SIGSTOP an agent past 3 heartbeats (the master sees it UNREACHABLE), then SIGCONT;
- ``agent_churn``: stop an agent (SIGTERM) and start a new one (a fresh work dir, so a new agent id).

Recovery time of a fault: from the restart (or the thaw, or the new agent's start) until the master again shows
every agent process this run keeps alive ACTIVE. Every second the master's RSS and the size of its
``/api/v1/state`` answer are sampled. Reported: tasks launched and how each ended (a task killed by an agent's
``kill -9`` ends FAILED with AGENT_RESTARTED: that is the promise, not a loss), tasks lost (LOST, or never ended),
tasks duplicated (two different terminal updates for one task, or one id twice in the master's state), the
recovery times per fault, why each task that did not end FINISHED ended so (``not_finished``: its agent, the fault on
that agent and the one in progress, the master's reason and message, when it was accepted and whether it reached the
agent, from that agent's journal; a verdict each: ``lost_agent_gone`` for LOST on an agent that was replaced and so
never came back within ``--unreachable-timeout``, ``failed_agent_kill9`` for FAILED:AGENT_RESTARTED after a ``kill -9``
of its agent, ``unexpected`` for anything else; the run exits 1 on an unexpected one or a duplicate), the RSS and
state-size curves (first sample after warm-up against the last, for the last master incarnation), and the ERROR
lines and tracebacks the processes logged. Logs: the temp dir, kept with ``--keep``. Results: bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, save, secure_master

from edgerm.agent.journal import Journal
from edgerm.errors import Unavailable, WireError
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, load_module, wasm_task
from edgerm.model import Filters, Offer, TaskState, TaskStatus

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "wasm" / "hello.wat"
NEED = "cpus:0.05;mem:16"
HEARTBEAT = 1.0  # agents' heartbeat interval: UNREACHABLE after 3 missed
UNREACHABLE_TIMEOUT = 20.0  # the master's --unreachable-timeout: an UNREACHABLE agent's tasks are LOST after it
FAULTS = ("master_kill9", "agent_kill9", "agent_freeze", "agent_churn")


class Churn(Framework):
    """Launches trivial tasks on every offer while ``launching``; records how each task ends."""

    name = "soak-bench"

    def __init__(self, total: int) -> None:
        self.total = total
        self.module = load_module(HELLO)
        self.launching = True
        self.serial = 0
        self.accepted: set[str] = set()  # task ids an ACCEPT took
        self.uncertain: set[str] = set()  # task ids of an ACCEPT that got no answer
        self.refused: dict[str, int] = {}  # calls refused, by error
        self.ends: dict[str, set[str]] = {}  # task id -> uuids of its terminal updates
        self.outcome: dict[str, str] = {}  # task id -> its (first) terminal state[:reason]
        self.placed: dict[str, str] = {}  # task id -> the agent its offer was on
        self.accepted_at: dict[str, float] = {}  # task id -> seconds into the run its ACCEPT was sent
        self.bad_ends: dict[str, dict[str, Any]] = {}  # task id -> its first non-FINISHED terminal update
        self.subscriptions = 0
        self.t0 = time.monotonic()

    async def registered(self, driver: FrameworkDriver, framework_id: str, master_id: str) -> None:
        self.subscriptions += 1

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for offer in offers:
            room = int(min(offer.resources.cpus / 0.05, offer.resources.mem / 16))
            want = min(room, self.total - self.launched, 50) if self.launching else 0
            try:
                if want <= 0:
                    await driver.decline([offer.id], refuse_seconds=1.0)
                    continue
                tasks = [wasm_task(offer, f"soak-{self.serial + i}", self.module, NEED) for i in range(want)]
                self.serial += want
                ids = [t.task_id for t in tasks]
                self.placed.update(dict.fromkeys(ids, offer.agent_id))
                self.accepted_at.update(dict.fromkeys(ids, round(time.monotonic() - self.t0, 1)))
                try:
                    await driver.accept([offer.id], tasks, Filters(refuse_seconds=0))
                except Unavailable:  # no answer: the master may or may not have them
                    self.uncertain.update(ids)
                    raise
                self.accepted.update(ids)
            except WireError as e:  # a stale offer after a master restart, a master away: expected here
                self.refused[type(e).__name__] = self.refused.get(type(e).__name__, 0) + 1

    @property
    def launched(self) -> int:
        return len(self.accepted) + len(self.uncertain & self.outcome.keys())

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        if not status.state.terminal:
            return
        self.ends.setdefault(status.task_id, set()).add(status.uuid)
        if status.task_id not in self.outcome:
            finished = status.state is TaskState.FINISHED
            self.outcome[status.task_id] = (
                status.state.value if finished else f"{status.state.value}:{status.reason.value}"
            )
            if not finished:
                self.bad_ends[status.task_id] = {
                    "state": status.state.value,
                    "reason": status.reason.value,
                    "message": status.message,
                    "source": status.source.value,
                    "agent": status.agent_id or self.placed.get(status.task_id, ""),
                    "at_s": round(time.monotonic() - self.t0, 1),
                }

    @property
    def ended(self) -> int:
        return len(self.outcome)


class Fleet:
    """The master and agent processes, each with its log file in ``tmp``."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.tmp = tmp
        self.url = f"http://127.0.0.1:{port}"
        self.flags = secure_master(tmp / "state")  # EDGERM_TOKEN (admin) and EDGERM_JOIN_TOKEN for us and agents
        self.master_cmd = [sys.executable, "-m", "edgerm.master.main", "--port", str(port), *self.flags]
        # Tasks in flight on an agent that left for good end LOST within the run, not after the default 10 min.
        self.master_cmd += ["--no-coap", "--no-broker", "--log-level", "WARNING", "--allocation-interval", "0.1"]
        self.master_cmd += ["--unreachable-timeout", f"{UNREACHABLE_TIMEOUT:g}"]
        self.master: subprocess.Popen[bytes] | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}  # work dir name -> process
        self.logs: list[Path] = []
        self.joined = 0

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        if log not in self.logs:
            self.logs.append(log)
        with log.open("ab") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def start_master(self) -> None:
        self.master = self._spawn("master", self.master_cmd)

    def start_agent(self, work: str | None = None) -> str:
        if work is None:
            work = f"a{self.joined}"
            self.joined += 1
        dir_ = self.tmp / work
        cfg = dir_.with_suffix(".yaml")
        cfg.write_text(f"heartbeat_interval: {HEARTBEAT}\nexecutors: [wasm]\nresources: {{cpus: 2, mem: 1024}}\n")
        argv = ["--master", self.url, "--config", str(cfg), "--work-dir", str(dir_), "--name", f"soak-{work}"]
        self.agents[work] = self._spawn(
            work, [sys.executable, "-m", "edgerm.agent.main", *argv, "--log-level", "WARNING"]
        )
        return work

    def agent_id(self, work: str) -> str:
        try:
            return (self.tmp / work / "agent_id").read_text().strip()
        except OSError:
            return ""

    def stop_all(self) -> None:
        for p in [*self.agents.values(), *([self.master] if self.master else [])]:
            _stop(p)


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGCONT)
        p.terminate()
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _state(url: str) -> dict[str, Any] | None:
    token = os.environ["EDGERM_TOKEN"]
    request = urllib.request.Request(url + "/api/v1/state", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            body = r.read()
    except OSError:
        return None
    state: dict[str, Any] = json.loads(body)
    state["_bytes"] = len(body)
    return state


async def _until_all_active(
    fleet: Fleet, reregistered: dict[str, object] | None = None, within: float = 120.0
) -> float:
    """Seconds until the master shows every live agent process ACTIVE and every agent in ``reregistered``
    (id -> its ``registered_at`` before the fault) registered again (inf if not within ``within``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        state = await asyncio.to_thread(_state, fleet.url)
        if state is not None:
            agents = {a["id"]: a for a in state["agents"]}
            want = {fleet.agent_id(w) for w in fleet.agents}
            active = all(agents.get(a, {}).get("state") == "ACTIVE" for a in want)
            again = all(
                agents.get(a, {}).get("registered_at") not in (None, t) for a, t in (reregistered or {}).items()
            )
            if "" not in want and active and again:
                return round(time.monotonic() - t0, 3)
        await asyncio.sleep(0.1)
    return float("inf")


async def _registered_at(fleet: Fleet, works: list[str]) -> dict[str, object]:
    state = await asyncio.to_thread(_state, fleet.url)
    agents = {a["id"]: a for a in state["agents"]} if state else {}
    return {fleet.agent_id(w): agents.get(fleet.agent_id(w), {}).get("registered_at") for w in works}


async def _fault(kind: str, fleet: Fleet, victim: str, t0: float) -> dict[str, Any]:
    event: dict[str, Any] = {"fault": kind, "start_s": round(time.monotonic() - t0, 1)}
    again: dict[str, object] = {}
    if kind == "master_kill9":
        assert fleet.master is not None
        again = await _registered_at(fleet, list(fleet.agents))
        fleet.master.kill()
        fleet.master.wait()
        fleet.start_master()
    elif kind == "agent_kill9":
        event["agent"] = fleet.agent_id(victim)
        again = await _registered_at(fleet, [victim])
        fleet.agents[victim].kill()
        fleet.agents[victim].wait()
        fleet.start_agent(victim)
    elif kind == "agent_freeze":
        event["agent"] = fleet.agent_id(victim)
        p = fleet.agents[victim]
        p.send_signal(signal.SIGSTOP)
        frozen = 3 * HEARTBEAT + 2.0
        await asyncio.sleep(frozen)
        state = await asyncio.to_thread(_state, fleet.url)
        seen = {a["id"]: a["state"] for a in state["agents"]} if state else {}
        event |= {"frozen_s": frozen, "seen_while_frozen": seen.get(event["agent"], "?")}
        p.send_signal(signal.SIGCONT)
    else:  # agent_churn
        event |= {"left": fleet.agent_id(victim), "left_work": victim}
        _stop(fleet.agents.pop(victim))
        joined = fleet.start_agent()
    event["recovery_s"] = await _until_all_active(fleet, again)
    if kind == "agent_churn":
        event["joined"] = fleet.agent_id(joined)
    return event


async def soak(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    fleet = Fleet(tmp, free_port())
    fleet.start_master()
    for _ in range(args.agents):
        fleet.start_agent()
    fw = Churn(args.tasks)
    t0 = fw.t0
    driver = HttpDriver(fw, fleet.url, backoff_initial=0.05, backoff_max=0.5)
    runner = asyncio.create_task(driver.run())
    samples: list[dict[str, float]] = []
    events: list[dict[str, Any]] = []
    incarnation = 0

    async def sample() -> None:
        nonlocal incarnation
        while True:
            await asyncio.sleep(1.0)
            state = await asyncio.to_thread(_state, fleet.url)
            master = fleet.master
            if state is None or master is None:
                continue
            try:
                rss = psutil.Process(master.pid).memory_info().rss / 2**20
            except psutil.Error:
                continue
            samples.append(
                {
                    "t": round(time.monotonic() - t0, 1),
                    "master_pid": master.pid,
                    "launched": fw.launched,
                    "ended": fw.ended,
                    "rss_mib": round(rss, 1),
                    "state_kib": round(state["_bytes"] / 1024, 1),
                }
            )

    sampler = asyncio.create_task(sample())
    try:
        await _until_all_active(fleet)
        n = 0
        while time.monotonic() - t0 < args.seconds and fw.launched < args.tasks:
            await asyncio.sleep(args.chaos_every)
            kind = FAULTS[n % len(FAULTS)]
            victim = sorted(fleet.agents)[n % len(fleet.agents)]
            n += 1
            before = fw.launched
            event = await _fault(kind, fleet, victim, t0)
            event |= {"at_s": round(time.monotonic() - t0, 1), "launched_before": before}
            events.append(event)
            print(f"  {event['at_s']:6.1f}s {kind:13s} recovered in {event['recovery_s']} s; launched {fw.launched}")
        fw.launching = False
        drain0 = time.monotonic()
        while fw.ended < fw.launched and time.monotonic() - drain0 < args.drain:  # noqa: ASYNC110 (a bounded poll)
            await asyncio.sleep(0.5)
        drained_s = time.monotonic() - drain0
        wall = time.monotonic() - t0
        final = await asyncio.to_thread(_state, fleet.url)
        alive = {fleet.agent_id(w) for w in fleet.agents}
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await driver.stop()
        await asyncio.gather(runner, return_exceptions=True)
        fleet.stop_all()
    return _report(args, fw, fleet, samples, events, final, wall, drained_s, alive)


def _report(
    args: argparse.Namespace,
    fw: Churn,
    fleet: Fleet,
    samples: list[dict[str, float]],
    events: list[dict[str, Any]],
    final: dict[str, Any] | None,
    wall: float,
    drained_s: float,
    alive: set[str],
) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for o in fw.outcome.values():
        outcomes[o] = outcomes.get(o, 0) + 1
    never_ended = sorted(fw.accepted - set(fw.outcome))
    where = {t["id"]: f"{t['state']} on {t['agent_id']}" for t in final["tasks"]} if final else {}
    lost = sum(v for k, v in outcomes.items() if k.startswith("LOST"))
    doubled = sorted(t for t, uuids in fw.ends.items() if len(uuids) > 1)
    ids = [t["id"] for t in final["tasks"]] if final else []
    last_pid = samples[-1]["master_pid"] if samples else 0
    last = [s for s in samples if s["master_pid"] == last_pid]
    warm = last[min(10, len(last) - 1) :] if last else []  # 10 s into the last incarnation
    recovery: dict[str, list[float]] = {}
    for e in events:
        recovery.setdefault(e["fault"], []).append(e["recovery_s"])
    problems: list[str] = []
    for log in fleet.logs:
        for line in log.read_text(errors="replace").splitlines():
            if " ERROR " in line or "Traceback" in line or " CRITICAL " in line:
                problems.append(f"{log.name}: {line[:300]}")
    explained = _explain(fw, events, never_ended, alive, UNREACHABLE_TIMEOUT, _left_behind(fleet, events))
    return {
        "params": vars(args),
        "wall_s": round(wall, 1),
        "drain_s": round(drained_s, 1),
        "tasks_launched": fw.launched,
        "tasks_ended": fw.ended,
        "tasks_per_s": round(fw.ended / wall, 1),
        "outcomes": outcomes,
        "lost": lost + len(never_ended),
        "never_ended": {t: where.get(t, "unknown to the master") for t in never_ended[:50]},
        "lost_agent_gone": explained["verdicts"]["lost_agent_gone"],
        "failed_agent_kill9": explained["verdicts"]["failed_agent_kill9"],
        "lost_unexpectedly": explained["verdicts"]["unexpected"],
        "not_finished": explained,
        "calls_refused": fw.refused,
        "duplicated": len(doubled) + (len(ids) - len(set(ids))),
        "doubled_ends": doubled[:50],
        "framework_subscriptions": fw.subscriptions,
        "agents_started": fleet.joined,
        "faults": len(events),
        "recovery_s": {k: {"n": len(v), "max": max(v), "mean": round(sum(v) / len(v), 3)} for k, v in recovery.items()},
        "rss_mib": _curve(warm, "rss_mib"),
        "state_kib": _curve(warm, "state_kib"),
        "master_incarnations": len({s["master_pid"] for s in samples}),
        "rss_mib_by_incarnation": [_curve(inc[min(5, len(inc) - 1) :], "rss_mib") for inc in _incarnations(samples)],
        "logged_errors_and_tracebacks": problems[:100],
        "events": events,
        "samples": samples,
    }


def _left_behind(fleet: Fleet, events: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """What each agent that left holds in its journal: agent id -> {task id -> its last unacknowledged state, or
    "" for a task launched there with nothing pending}. A task not listed never reached that agent."""
    held: dict[str, dict[str, str]] = {}
    for e in events:
        if e["fault"] == "agent_churn":
            found = Journal(fleet.tmp / e["left_work"], fsync=False).load()
            held[e["left"]] = {t.task_id: t.pending[-1].state.value if t.pending else "" for t in found}
    return held


def _explain(
    fw: Churn,
    events: list[dict[str, Any]],
    never_ended: list[str],
    alive: set[str],
    timeout: float,
    held: dict[str, dict[str, str]],
) -> dict[str, Any]:
    """Why each task did not end FINISHED: its agent, the last fault on that agent, the fault in progress (or the
    last one) when it ended, and the master's reason and message; each gets a verdict.

    Expected: ``lost_agent_gone`` (LOST on an agent replaced by a new one, so it never came back, and at least the
    unreachable timeout after it left) and ``failed_agent_kill9`` (FAILED:AGENT_RESTARTED after a ``kill -9`` of its
    agent: the documented promise for WASM tasks). Anything else, or a task that never ended, is ``unexpected``."""
    left = {e["left"]: e for e in events if e["fault"] == "agent_churn"}
    tasks: dict[str, dict[str, Any]] = {}
    for task_id, end in sorted(fw.bad_ends.items(), key=lambda kv: kv[1]["at_s"]):
        agent, at = end["agent"], end["at_s"]
        before = [e for e in events if e["start_s"] <= at]
        on_agent = [e for e in before if agent in (e.get("agent"), e.get("left"))]
        row = dict(end)
        row["accepted_at_s"] = fw.accepted_at.get(task_id)
        if agent in left:
            # Positive: the framework launched it on an agent that had already been stopped (the master keeps
            # offering an agent until it misses 3 heartbeats).
            row["accepted_s_after_agent_left"] = round((row["accepted_at_s"] or 0.0) - left[agent]["start_s"], 1)
            there = held.get(agent, {})
            row["on_the_agent"] = (
                "never reached it"
                if task_id not in there
                else f"ran there, its {there[task_id]} update undelivered when it stopped"
                if there[task_id]
                else "ran there"
            )
        if on_agent:
            row["agent_fault"] = on_agent[-1]["fault"]
            row["s_after_agent_fault"] = round(at - on_agent[-1]["start_s"], 1)
        if before:
            last = before[-1]
            row["fault_at_end"] = last["fault"] + (" (in progress)" if at <= last["at_s"] else "")
            row["s_after_fault_at_end"] = round(at - last["start_s"], 1)
        gone = agent in left and agent not in alive
        if end["state"] == "LOST" and gone and at - left[agent]["start_s"] >= timeout:
            row["verdict"] = "lost_agent_gone"
        elif (end["state"], end["reason"]) == ("FAILED", "AGENT_RESTARTED") and row.get("agent_fault") == "agent_kill9":
            row["verdict"] = "failed_agent_kill9"
        else:
            row["verdict"] = "unexpected"
        tasks[task_id] = row
    for task_id in never_ended:
        tasks[task_id] = {"state": "NEVER_ENDED", "agent": fw.placed.get(task_id, ""), "verdict": "unexpected"}
    by_fault: dict[str, dict[str, int]] = {}
    verdicts: dict[str, int] = {"lost_agent_gone": 0, "failed_agent_kill9": 0, "unexpected": 0}
    for row in tasks.values():
        kind = row.get("agent_fault") or f"none on its agent (last: {row.get('fault_at_end', 'none')})"
        what = f"{row['state']}:{row.get('reason', '')} -> {row['verdict']}"
        by_fault.setdefault(kind, {})[what] = by_fault.setdefault(kind, {}).get(what, 0) + 1
        verdicts[row["verdict"]] += 1
    lost_gone_by_agent: dict[str, int] = {}
    lost_gone_how: dict[str, int] = {}
    for row in tasks.values():
        if row["verdict"] == "lost_agent_gone":
            lost_gone_by_agent[row["agent"]] = lost_gone_by_agent.get(row["agent"], 0) + 1
            how = row["on_the_agent"]
            if how == "never reached it":
                late = row["accepted_s_after_agent_left"] >= 0
                how += ": launched after the agent was stopped" if late else ": launched as it was being stopped"
            lost_gone_how[how] = lost_gone_how.get(how, 0) + 1
    return {
        "verdicts": verdicts,
        "by_fault": by_fault,
        "lost_agent_gone_by_agent": lost_gone_by_agent,
        "lost_agent_gone_how": lost_gone_how,
        "unexpected_tasks": {t: r for t, r in tasks.items() if r["verdict"] == "unexpected"},
        "tasks": dict(list(tasks.items())[:500]),
    }


def _incarnations(samples: list[dict[str, float]]) -> list[list[dict[str, float]]]:
    runs: list[list[dict[str, float]]] = []
    for s in samples:
        if not runs or runs[-1][-1]["master_pid"] != s["master_pid"]:
            runs.append([])
        runs[-1].append(s)
    return runs


def _curve(samples: list[dict[str, float]], key: str) -> dict[str, float]:
    if not samples:
        return {}
    start, end = samples[0][key], samples[-1][key]
    return {
        "after_warmup": start,
        "end": end,
        "max": max(s[key] for s in samples),
        "ratio": round(end / max(start, 1e-6), 3),
        "over_s": round(samples[-1]["t"] - samples[0]["t"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=360.0, help="how long tasks are launched")
    parser.add_argument("--tasks", type=int, default=20_000, help="launch at most this many")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--chaos-every", type=float, default=15.0, metavar="S", help="seconds between faults")
    parser.add_argument("--drain", type=float, default=60.0, metavar="S", help="wait at most this for the last ends")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state) and print its path")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgerm-soak-"))
    try:
        res = asyncio.run(soak(args, tmp))
    finally:
        if args.keep:
            print(f"logs and state kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{res['tasks_launched']} tasks launched, {res['tasks_ended']} ended ({res['tasks_per_s']} tasks/s) in "
        f"{res['wall_s']} s; {res['faults']} faults, {res['agents_started']} agents started"
    )
    print(f"  outcomes: {res['outcomes']}")
    print(f"  lost: {res['lost']}   duplicated: {res['duplicated']}")
    print(f"    lost only on agents that never came back (replaced): {res['lost_agent_gone']}")
    print(f"    failed with AGENT_RESTARTED after a kill -9 of their agent: {res['failed_agent_kill9']}")
    print(f"    lost unexpectedly: {res['lost_unexpectedly']}")
    for how, n in res["not_finished"]["lost_agent_gone_how"].items():
        print(f"      {n} {how}")
    for kind, whats in res["not_finished"]["by_fault"].items():
        print(f"    by fault on the task's agent: {kind}: {whats}")
    for task_id, row in list(res["not_finished"]["unexpected_tasks"].items())[:20]:
        print(f"      unexpected {task_id}: {row}")
    for kind, r in res["recovery_s"].items():
        print(f"  recovery after {kind:13s} n={r['n']}  mean {r['mean']} s  max {r['max']} s")
    for key in ("rss_mib", "state_kib"):
        v = res[key]
        if v:
            print(
                f"  {key:10s} after warm-up {v['after_warmup']:9.1f}   end {v['end']:9.1f}   ratio {v['ratio']}"
                f"   (over {v['over_s']} s of the last master)"
            )
    print(f"  logged errors and tracebacks: {len(res['logged_errors_and_tracebacks'])}")
    print(f"saved {save('soak', res)}")
    if res["lost_unexpectedly"] or res["duplicated"]:
        sys.exit("FAIL: tasks lost unexpectedly or duplicated (see not_finished.unexpected_tasks in the JSON)")


if __name__ == "__main__":
    main()
