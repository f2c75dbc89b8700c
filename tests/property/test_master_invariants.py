"""Safety invariants of the master core under random event sequences (Hypothesis).

- nothing is offered to two frameworks at once (per agent);
- offered + used <= total for every agent, and offered ports never overlap used ones;
- offers go only to active frameworks, on known agents; live tasks sit on known agents;
- the sorter's view of each framework equals its offers plus its live tasks;
- a call that raises leaves snapshot() unchanged;
- the read views the core keeps incrementally equal views recomputed from
  scratch, and the state API served from them (no parameters) equals
  snapshot(); every filtered and paged answer equals the snapshot filtered
  and cut the same way;
- after every task ends and every offer is declined, free == total everywhere;
- allocation misses nothing: after a Tick, no active agent with offerable
  free resources has a framework that may be offered them (active, not
  suppressed, under its offer limit, not filtered, and the agent's holder if
  it has one) -- the incremental allocator's dirty sets lose no change;
- a master restarted from what it persisted (its ``Persist`` actions, folded
  as a store would) knows the same frameworks, agents and tasks, in the same
  states, with the same unacknowledged updates, as if it had never stopped.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from edgerm import messages as m
from edgerm.errors import WireError
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.master import events as ev
from edgerm.master.actions import KillTask, LaunchTask, MasterAction, Persist, SendEvent
from edgerm.master.allocator import DRFSorter, RoundRobinSorter, Sorter, offerable
from edgerm.master.registry import AgentRow, Changes, FrameworkRow, Registry, TaskRow
from edgerm.master.state import MasterConfig, MasterCore
from edgerm.master.state_api import Cursor, StateQuery, state_page
from edgerm.model import (
    AgentInfo,
    DockerSpec,
    Filters,
    FrameworkInfo,
    Offer,
    TaskInfo,
    TaskState,
    TaskStatus,
    WasmSpec,
)
from edgerm.resources import Range, Resources

AGENTS = {
    "a1": ("cpus:4;mem:1024;ports:[8000-8003]", frozenset({"wasm", "docker"})),
    "a2": ("cpus:2;mem:512", frozenset({"wasm", "docker"})),
    "a3": ("cpus:1;mem:256;disk:100", frozenset({"wasm"})),
}
FRAMEWORKS = ["f1", "f2", "f3"]
STATES = [
    TaskState.STARTING,
    TaskState.RUNNING,
    TaskState.KILLING,
    TaskState.FINISHED,
    TaskState.FAILED,
    TaskState.KILLED,
]
EPS = 1e-6


def agent_info(name: str) -> AgentInfo:
    resources, executors = AGENTS[name]
    return AgentInfo(
        AgentId(name),
        f"{name}.local",
        Resources.parse(resources),
        {"executors": executors},
        heartbeat_interval=1.0,
    )


class Folded:
    """What a StateStore would hold after applying every Persist, in order."""

    def __init__(self) -> None:
        self.frameworks: dict[str, FrameworkRow] = {}
        self.agents: dict[str, AgentRow] = {}
        self.tasks: dict[str, TaskRow] = {}

    def apply(self, c: Changes) -> None:
        for f in c.frameworks:
            self.frameworks[f.info.id] = f
        for fid in c.frameworks_gone:
            self.frameworks.pop(fid, None)
        for a in c.agents:
            self.agents[a.info.id] = a
        for aid in c.agents_gone:
            self.agents.pop(aid, None)
        for aid, last_seen in c.seen:
            if aid in self.agents:
                self.agents[aid] = replace(self.agents[aid], last_seen=last_seen)
        for t in c.tasks:
            self.tasks[t.info.task_id] = t
        for tid in c.tasks_gone:
            self.tasks.pop(tid, None)

    def registry(self) -> Registry:
        return Registry(tuple(self.frameworks.values()), tuple(self.agents.values()), tuple(self.tasks.values()))


CONFIG = MasterConfig(master_id="p", max_completed_tasks=4)


class MasterMachine(RuleBasedStateMachine):
    sorter: type[Sorter] = DRFSorter
    config: MasterConfig = CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.core = MasterCore(self.config, self.sorter())
        self.folded = Folded()
        self.restarts = 0
        self.now = 0.0
        self.task_counter = 0
        self.uuid_counter = 0
        self.agent_uuids: list[str] = []
        self.framework_uuids: list[str] = []
        self.task_ids: list[TaskId] = []

    # -- plumbing ---------------------------------------------------------------

    def apply(self, event: Any) -> list[MasterAction]:
        before = copy.deepcopy(self.core.snapshot())
        try:
            actions = self.handle(event)
        except WireError:
            assert self.core.snapshot() == before, f"{type(event).__name__} raised but changed state"
            return []
        for action in actions:
            if isinstance(action, SendEvent) and isinstance(action.event, m.Update) and action.event.status.uuid:
                self.framework_uuids.append(action.event.status.uuid)
        return actions

    def handle(self, event: Any) -> list[MasterAction]:
        actions = self.core.handle(event, self.now)
        persists = [a for a in actions if isinstance(a, Persist)]
        assert len(persists) <= 1 and (not persists or actions[-1] is persists[0]), "one Persist, last"
        for p in persists:
            self.folded.apply(p.changes)
        return actions

    def fresh_uuid(self) -> str:
        self.uuid_counter += 1
        uuid = f"ag-{self.uuid_counter}"
        self.agent_uuids.append(uuid)
        return uuid

    def all_offers(self) -> list[Offer]:
        return [o for f in FRAMEWORKS for o in self.core.offers_of(FrameworkId(f))]

    def live_tasks(self) -> list[Any]:
        records = (self.core.task(t) for t in self.task_ids)
        return [r for r in records if r is not None and r.live]

    @initialize()
    def start(self) -> None:
        for name in sorted(AGENTS):
            self.apply(ev.AgentRegistered(agent_info(name)))
        for name in FRAMEWORKS:
            self.apply(ev.FrameworkSubscribed(FrameworkInfo(FrameworkId(name), name)))

    # -- agents -------------------------------------------------------------------

    @rule(name=st.sampled_from(sorted(AGENTS)), data=st.data())
    def register(self, name: str, data: st.DataObject) -> None:
        reports = []
        for record in self.live_tasks():
            if record.agent_id == name and data.draw(st.booleans(), label=f"report {record.task_id}"):
                state = data.draw(st.sampled_from([record.state, *STATES]))
                reports.append(TaskStatus(record.task_id, record.agent_id, state, uuid=self.fresh_uuid()))
        if data.draw(st.booleans(), label="report a stranger"):
            reports.append(TaskStatus(TaskId("stranger"), AgentId(name), TaskState.RUNNING, uuid=self.fresh_uuid()))
        self.apply(ev.AgentRegistered(agent_info(name), tuple(reports)))

    @rule(name=st.sampled_from(sorted(AGENTS)), data=st.data())
    def heartbeat(self, name: str, data: st.DataObject) -> None:
        pool = sorted({*self.task_ids, TaskId("stranger")})
        listed = data.draw(st.lists(st.sampled_from(pool), max_size=4, unique=True)) if pool else []
        self.apply(ev.HeartbeatReceived(AgentId(name), tuple(listed)))

    @rule(data=st.data())
    def status(self, data: st.DataObject) -> None:
        if not self.task_ids:
            return
        task_id = data.draw(st.sampled_from(self.task_ids))
        record = self.core.task(task_id)
        agent = record.agent_id if record is not None else AgentId(data.draw(st.sampled_from(sorted(AGENTS))))
        if self.agent_uuids and data.draw(st.booleans(), label="repeat a uuid"):
            uuid = data.draw(st.sampled_from(self.agent_uuids))
        else:
            uuid = self.fresh_uuid()
        state = data.draw(st.sampled_from(STATES))
        self.apply(ev.StatusReceived(agent, TaskStatus(task_id, agent, state, uuid=uuid)))

    @rule(data=st.data())
    def status_again(self, data: st.DataObject) -> None:
        self.status(data)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0, 11.0]), data=st.data())
    def tick(self, dt: float, data: st.DataObject) -> None:
        """Time passes; agents heartbeat (listing their live tasks) unless drawn silent."""
        self.now += dt
        silent = data.draw(st.sets(st.sampled_from(sorted(AGENTS)), max_size=1), label="silent")
        for name in sorted(set(AGENTS) - silent):
            if self.core.agent_known(AgentId(name)):
                held = tuple(r.task_id for r in self.live_tasks() if r.agent_id == name)
                self.apply(ev.HeartbeatReceived(AgentId(name), held))
        self.apply(ev.Tick())
        self.nothing_missed()

    def nothing_missed(self) -> None:
        """No offer is left unmade: every agent with offerable free resources has no framework that may take them."""
        snapshot: Any = self.core.snapshot()
        limit = self.config.max_outstanding_offers
        takers = [
            f
            for f in snapshot["frameworks"]
            if f["active"] and not f["suppressed"] and (limit <= 0 or len(f["offers"]) < limit)
        ]
        for agent in snapshot["agents"]:
            aid = AgentId(agent["id"])
            if agent["state"] != "ACTIVE" or not offerable(self.core.free(aid)):
                continue
            holders = {o.framework_id for o in self.all_offers() if o.agent_id == aid}
            for f in takers:
                if holders and f["id"] not in holders:
                    continue
                if f["filters"].get(aid, self.now) > self.now:
                    continue  # filtered
                raise AssertionError(f"agent {aid} has {self.core.free(aid)} free and {f['id']} may take it")

    # -- frameworks ---------------------------------------------------------------

    @rule(name=st.sampled_from(FRAMEWORKS), op=st.sampled_from(["subscribe", "disconnect", "teardown"]))
    def membership(self, name: str, op: str) -> None:
        fid = FrameworkId(name)
        if op == "subscribe":
            self.apply(ev.FrameworkSubscribed(FrameworkInfo(fid, name)))
        elif op == "disconnect":
            self.apply(ev.FrameworkDisconnected(fid))
        else:
            self.apply(m.Teardown(fid))

    @rule(name=st.sampled_from(FRAMEWORKS), suppress=st.booleans())
    def revive_or_suppress(self, name: str, suppress: bool) -> None:
        fid = FrameworkId(name)
        self.apply(m.Suppress(fid) if suppress else m.Revive(fid))

    @rule(name=st.sampled_from(FRAMEWORKS), data=st.data())
    def accept(self, name: str, data: st.DataObject) -> None:
        holders = sorted({o.framework_id for o in self.all_offers()})
        if holders and data.draw(st.integers(0, 4), label="a stranger accepts") != 4:
            name = data.draw(st.sampled_from(holders))
        fid = FrameworkId(name)
        own = self.core.offers_of(fid)
        candidates = sorted({o.id for o in [*own, *self.all_offers()]} | {OfferId("p-O999999")})
        if own and data.draw(st.integers(0, 4), label="use foreign offers") != 4:
            first = data.draw(st.sampled_from(own))
            same_agent = [o.id for o in own if o.agent_id == first.agent_id]
            chosen = [first.id, *data.draw(st.lists(st.sampled_from(same_agent), max_size=1), label="more")]
        else:
            chosen = data.draw(st.lists(st.sampled_from(candidates), max_size=2))
        tasks = [self.draw_task(data) for _ in range(data.draw(st.sampled_from([1, 2, 0, 3])))]
        refuse = data.draw(st.sampled_from([0.0, 1.0, 5.0]))
        self.apply(m.Accept(fid, tuple(chosen), tuple(tasks), Filters(refuse)))

    @rule(name=st.sampled_from(FRAMEWORKS), data=st.data())
    def accept_fitting(self, name: str, data: st.DataObject) -> None:
        """A well-formed ACCEPT: tasks that share out one offer (so it must succeed
        unless the framework is not subscribed)."""
        holders = sorted({o.framework_id for o in self.all_offers()})
        if not holders:
            return
        fid = data.draw(st.sampled_from(holders))
        offer = data.draw(st.sampled_from(self.core.offers_of(fid)))
        n = data.draw(st.integers(1, 3))
        if offer.resources.cpus * 1000 < n and offer.resources.mem < n:
            n = 1  # too small to share out
        tasks = []
        for i in range(n):
            self.task_counter += 1
            task_id = TaskId(f"t{self.task_counter}")
            self.task_ids.append(task_id)
            ports = offer.resources.ranges.get("ports", ())
            ranges = {"ports": (Range(ports[0].begin + i, ports[0].begin + i),)} if ports and len(ports[0]) > i else {}
            share = {"cpus": int(offer.resources.cpus * 1000 / n) / 1000, "mem": int(offer.resources.mem / n)}
            tasks.append(
                TaskInfo(
                    task_id, str(task_id), AgentId(""), Resources(share, ranges), WasmSpec(module_sha256="ab" * 32)
                )
            )
        refuse = data.draw(st.sampled_from([0.0, 1.0, 5.0]))
        actions = self.handle(m.Accept(fid, (offer.id,), tuple(tasks), Filters(refuse)))
        assert [a.task.task_id for a in actions if isinstance(a, LaunchTask)] == [t.task_id for t in tasks]

    def draw_task(self, data: st.DataObject) -> TaskInfo:
        if data.draw(st.integers(0, 9), label="reuse an id") == 9 and self.task_ids:
            task_id = data.draw(st.sampled_from(self.task_ids))
        else:
            self.task_counter += 1
            task_id = TaskId(f"t{self.task_counter}")
            self.task_ids.append(task_id)
        cpus = data.draw(st.sampled_from([0.5, 0.25, 1.0, 3.0, 0.0]))
        mem = data.draw(st.sampled_from([64, 128, 600, 0]))
        ranges = {}
        if data.draw(st.integers(0, 3), label="ports") == 3:
            port = data.draw(st.integers(8000, 8004))
            ranges["ports"] = (Range(port, port),)
        container = data.draw(
            st.sampled_from([WasmSpec(module_sha256="ab" * 32), DockerSpec(image="busybox:1"), WasmSpec()]),
            label="container",
        )
        return TaskInfo(task_id, str(task_id), AgentId(""), Resources({"cpus": cpus, "mem": mem}, ranges), container)

    @rule(name=st.sampled_from(FRAMEWORKS), data=st.data())
    def decline(self, name: str, data: st.DataObject) -> None:
        fid = FrameworkId(name)
        offers = [o.id for o in self.all_offers()] + [OfferId("p-O999999")]
        chosen = data.draw(st.lists(st.sampled_from(offers), min_size=1, max_size=2))
        refuse = data.draw(st.sampled_from([0.0, 1.0, 5.0]))
        self.apply(m.Decline(fid, tuple(chosen), Filters(refuse)))

    @rule(name=st.sampled_from(FRAMEWORKS), data=st.data())
    def kill(self, name: str, data: st.DataObject) -> None:
        pool = [*self.task_ids, TaskId("nope")]
        self.apply(m.Kill(FrameworkId(name), data.draw(st.sampled_from(pool))))

    @rule(name=st.sampled_from(FRAMEWORKS), data=st.data())
    def acknowledge(self, name: str, data: st.DataObject) -> None:
        uuid = data.draw(st.sampled_from([*self.framework_uuids, "unknown-uuid"]))
        self.apply(m.Acknowledge(FrameworkId(name), AgentId("a1"), TaskId("t1"), uuid))

    @rule(name=st.sampled_from(FRAMEWORKS), data=st.data())
    def reconcile(self, name: str, data: st.DataObject) -> None:
        asked = data.draw(st.lists(st.sampled_from([*self.task_ids, TaskId("nope")]), max_size=3))
        self.apply(m.Reconcile(FrameworkId(name), tuple((t, AgentId("a1")) for t in asked)))

    # -- restart: the registry is all that survives ---------------------------------

    @rule()
    def restart(self) -> None:
        old = self.core
        self.restarts += 1
        new = MasterCore(replace(self.config, incarnation=f"r{self.restarts}"), self.sorter())
        new.restore(self.folded.registry(), self.now)
        old_state: Any = old.snapshot()
        new_state: Any = new.snapshot()
        assert {f["id"] for f in new_state["frameworks"]} == {f["id"] for f in old_state["frameworks"]}
        assert {a["id"] for a in new_state["agents"]} == {a["id"] for a in old_state["agents"]}
        assert {(t["id"], t["state"]) for t in new_state["tasks"]} == {
            (t["id"], t["state"]) for t in old_state["tasks"]
        }
        for before, after in zip(old_state["frameworks"], new_state["frameworks"], strict=True):
            # The same tasks have updates waiting; each keeps its uuid, except where the latest status is one
            # the master made without a uuid (KILLING): only the latest is kept, sent under a uuid derived from it
            # (the same at every later restart).
            assert {u["task_id"] for u in after["unacknowledged"]} == {u["task_id"] for u in before["unacknowledged"]}
            kept = {u["uuid"] for u in before["unacknowledged"] if self._latest_uuid(u["task_id"])}
            assert kept <= {u["uuid"] for u in after["unacknowledged"]}
            assert (
                after["allocation"]
                == str(sum((r.info.resources for r in self.live_tasks() if r.framework_id == after["id"]), Resources()))
                or not after["allocation"]
            )
        self.core = new
        # Everyone comes back, as after a real restart: agents re-register with their tasks, frameworks re-subscribe.
        for name in sorted(AGENTS):
            if new.agent_known(AgentId(name)):
                held = [r for r in self.live_tasks() if r.agent_id == name]
                reports = tuple(TaskStatus(r.task_id, r.agent_id, r.state, uuid=r.status.uuid) for r in held)
                actions = self.apply(ev.AgentRegistered(agent_info(name), reports))
                assert not [a for a in actions if isinstance(a, KillTask)], "a task the registry knows was killed"
        for name in FRAMEWORKS:
            if new.framework_known(FrameworkId(name)):
                self.apply(ev.FrameworkSubscribed(FrameworkInfo(FrameworkId(name), name)))

    def _latest_uuid(self, task_id: str) -> str:
        record = self.core.task(TaskId(task_id))
        return record.status.uuid if record is not None else ""

    # -- drain: everything comes back ---------------------------------------------

    @rule()
    def drain(self) -> None:
        for record in self.live_tasks():
            status = TaskStatus(record.task_id, record.agent_id, TaskState.FINISHED, uuid=self.fresh_uuid())
            self.apply(ev.StatusReceived(record.agent_id, status))
        for offer in self.all_offers():
            self.apply(m.Decline(offer.framework_id, (offer.id,), Filters(0)))
        assert self.live_tasks() == []
        assert self.all_offers() == []
        for name in AGENTS:
            if self.core.agent_known(AgentId(name)):
                assert self.core.free(AgentId(name)) == agent_info(name).resources

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def offers_are_exclusive_and_well_placed(self) -> None:
        holders: dict[AgentId, set[FrameworkId]] = {}
        for offer in self.all_offers():
            holders.setdefault(offer.agent_id, set()).add(offer.framework_id)
            assert self.core.agent_known(offer.agent_id)
            assert self.core.framework_active(offer.framework_id)
        assert all(len(h) == 1 for h in holders.values()), holders

    @invariant()
    def nothing_is_used_twice(self) -> None:
        live = self.live_tasks()
        for name in AGENTS:
            aid = AgentId(name)
            if not self.core.agent_known(aid):
                assert not [r for r in live if r.agent_id == aid]
                continue
            total = agent_info(name).resources
            parts = [r.info.resources for r in live if r.agent_id == aid]
            parts += [o.resources for o in self.all_offers() if o.agent_id == aid]
            for scalar in ("cpus", "mem", "disk"):
                assert sum(p.get(scalar) for p in parts) <= total.get(scalar) + EPS
            ports = [p for part in parts for r in part.ranges.get("ports", ()) for p in range(r.begin, r.end + 1)]
            assert len(ports) == len(set(ports))
            assert all(Resources(ranges={"ports": (Range(p, p),)}) <= total for p in ports)

    @invariant()
    def sorter_matches_offers_and_tasks(self) -> None:
        snapshot: Any = self.core.snapshot()
        live = self.live_tasks()
        for framework in snapshot["frameworks"]:
            fid = framework["id"]
            held = Resources.parse(framework["allocation"])
            parts = [r.info.resources for r in live if r.framework_id == fid]
            parts += [o.resources for o in self.core.offers_of(fid)]
            for scalar in ("cpus", "mem"):
                assert abs(held.get(scalar) - sum(p.get(scalar) for p in parts)) < 1e-3

    @invariant()
    def read_views_match_a_recomputation(self) -> None:
        views = self.core.views
        assert views.digest() == views.recomputed().digest()
        served = state_page(self.core, StateQuery())
        assert served.pop("next") is None
        assert served == self.core.snapshot()

    @rule(data=st.data())
    def read_a_filtered_page(self, data: st.DataObject) -> None:
        """Any filter and page size: paging to the end yields the snapshot's rows filtered the same way."""
        snapshot: Any = self.core.snapshot()
        agent = data.draw(st.sampled_from([None, *sorted(AGENTS), "nobody"]), label="agent")
        framework = data.draw(st.sampled_from([None, *FRAMEWORKS, "nobody"]), label="framework")
        state = data.draw(st.sampled_from([None, TaskState.RUNNING, TaskState.FINISHED, TaskState.KILLING]))
        scope = data.draw(st.sampled_from([None, frozenset(), frozenset({FrameworkId("f1")})]), label="scope")
        limit = data.draw(st.integers(1, 3), label="limit")
        want_frameworks = [
            f for f in snapshot["frameworks"] if framework in (None, f["id"]) and (scope is None or f["id"] in scope)
        ]
        want_tasks = [
            t
            for t in snapshot["tasks"]
            if agent in (None, t["agent_id"])
            and framework in (None, t["framework_id"])
            and (state is None or t["state"] == state.value)
            and (scope is None or t["framework_id"] in scope)
        ]
        visible = {t["id"] for t in snapshot["tasks"] if scope is None or t["framework_id"] in scope}
        want_agents = [
            {**a, "tasks": [t for t in a["tasks"] if t in visible]}
            for a in snapshot["agents"]
            if agent in (None, a["id"])
        ]
        got: dict[str, list[Any]] = {"agents": [], "frameworks": [], "tasks": []}
        cursor = Cursor()
        for _ in range(100):
            page: Any = state_page(
                self.core,
                StateQuery(
                    AgentId(agent) if agent else None,
                    FrameworkId(framework) if framework else None,
                    state,
                    None,
                    limit,
                    cursor,
                ),
                scope,
            )
            for key in got:
                assert len(page[key]) <= limit
                got[key] += page[key]
            if page["next"] is None:
                break
            cursor = Cursor.decode(page["next"])
        else:
            raise AssertionError("paging did not end")
        assert got == {"agents": want_agents, "frameworks": want_frameworks, "tasks": want_tasks}


class RoundRobinMasterMachine(MasterMachine):
    sorter = RoundRobinSorter


class OfferLimitMasterMachine(MasterMachine):
    """At most one outstanding offer per framework: the limit's bookkeeping under random events."""

    config = replace(CONFIG, max_outstanding_offers=1)


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.timeout(600)  # 60 examples of 40 steps, restarts included: about 15 s each on a quiet machine
@pytest.mark.parametrize(
    "machine", [MasterMachine, RoundRobinMasterMachine, OfferLimitMasterMachine], ids=lambda c: c.__name__
)
def test_master_invariants(machine: type[MasterMachine]) -> None:
    run_state_machine_as_test(machine, settings=SETTINGS)
