"""Safety invariants of the dataflow framework's pure core under random event sequences (Hypothesis).

A small model of the master answers the core's orders: offers come and go,
agents are lost and come back, tasks run, fail, finish and are killed,
ACCEPTs and KILLs are taken or refused (out of order), quality conditions
break. After every step:

- at most one live task per instance; beyond it only tasks being retired
  (make-before-break), and never more than two alive per instance;
- every launched task that has not ended is live or retiring in the core, and
  the core knows no task that was not launched (every task accounted for);
- an ACCEPT uses only offers the core holds (given, not rescinded, not on a
  lost agent, not declined or used before), all on its agent, and asks no
  more than they hold; a DECLINE gives back only offers it held;
- nothing is launched outside RUNNING; kills name launched tasks;
- in STOPPED or FAILED nothing is live, and ``Finished`` came exactly once;
- a quality breach alone kills and launches nothing (the fallback comes with
  offers, beside the instance held off);
- a refused event (an unknown operator's breach) leaves the state unchanged.
"""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from edgerm.errors import IllegalTransition, UnknownCall
from edgerm.frameworks.dataflow import events as ev
from edgerm.frameworks.dataflow.core import CoreOptions, DataflowCore, vars_of
from edgerm.frameworks.dataflow.phases import TRANSITIONS, Phase, Trigger, next_phase
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import Offer, Reason, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources
from edgerm.scheduler import Dag
from tests.unit.dataflow.helpers import FALLBACK, dag

REPLICATED = FALLBACK.replace("name: fb", "name: fb2").replace(
    '    args: [--window, "10"]\n', '    args: [--window, "10"]\n    replicas: 2\n'
)

AGENTS: dict[str, tuple[str, dict[str, str]]] = {
    "pi": ("cpus:1;mem:512;temperature:device(sim:sine)", {"domain": "edge"}),
    "edge2": ("cpus:1;mem:512", {"domain": "edge"}),
    "srv": ("cpus:4;mem:4096", {"domain": "cloud"}),
}
ENDINGS = [
    (TaskState.FAILED, Reason.TRAP),
    (TaskState.FINISHED, Reason.UNSPECIFIED),
    (TaskState.LOST, Reason.AGENT_LOST),
    (TaskState.KILLED, Reason.UNSPECIFIED),
]


class DataflowCoreMachine(RuleBasedStateMachine):
    dag_text = FALLBACK

    def __init__(self) -> None:
        super().__init__()
        self.dag: Dag = dag(self.dag_text)
        self.core = DataflowCore(
            self.dag,
            lambda _executor: WasmSpec(module_sha256="0" * 64),
            CoreOptions(deadline=60.0, max_failures=4, hold_seconds=3.0, task_prefix="p", probe_needs_report=True),
        )
        self.now = 1000.0
        self.ids = itertools.count(1)
        self.offers: dict[OfferId, Offer] = {}  # given to the core, still usable
        self.used: set[OfferId] = set()
        self.lost: set[str] = set()
        self.pending_accepts: list[ev.Accept] = []
        self.pending_kills: list[ev.Kill] = []
        self.alive: dict[TaskId, tuple[str, str]] = {}  # accepted, not ended: task -> (agent, instance name)
        self.in_flight: dict[TaskId, tuple[str, str]] = {}  # in an ACCEPT not yet answered
        self.ended: set[TaskId] = set()
        self.finished = 0
        self.handle(ev.Registered())

    # -- carrying out, checking each order ----------------------------------------------

    def handle(self, event: ev.Event) -> None:
        for action in self.core.handle(event, self.now):
            self.check(action)

    def check(self, action: ev.Action) -> None:
        match action:
            case ev.Accept():
                assert self.core.phase is Phase.RUNNING, "launched outside RUNNING"
                assert action.offer_ids, "an ACCEPT without offers"
                total = Resources()
                for oid in action.offer_ids:
                    o = self.offers.pop(oid, None)
                    assert o is not None, f"offer {oid} not held (rescinded, declined, used or lost)"
                    assert o.agent_id == action.agent_id and action.agent_id not in self.lost
                    self.used.add(oid)
                    total = total + o.resources
                asked = Resources()
                for t in action.tasks:
                    assert t.agent_id == action.agent_id
                    assert t.task_id not in self.alive and t.task_id not in self.ended
                    asked = asked + t.resources
                    self.in_flight[t.task_id] = (action.agent_id, t.name)
                assert asked <= total, f"asked {asked} of {total}"
                self.pending_accepts.append(action)
            case ev.Decline():
                for oid in action.offer_ids:
                    assert self.offers.pop(oid, None) is not None, f"declined {oid} it did not hold"
            case ev.Kill():
                assert action.task_id in self.alive or action.task_id in self.in_flight or action.task_id in self.ended
                self.pending_kills.append(action)
            case ev.Finished():
                self.finished += 1
            case _:
                pass

    # -- offers and agents ----------------------------------------------------------------

    @rule(agent=st.sampled_from(sorted(AGENTS)), shrink=st.booleans())
    def offer(self, agent: str, shrink: bool) -> None:
        resources, attrs = AGENTS[agent]
        if shrink:
            resources = "cpus:0.2;mem:64"
        o = Offer(
            OfferId(f"o{next(self.ids)}"),
            FrameworkId("f"),
            AgentId(agent),
            agent,
            Resources.parse(resources),
            {"executors": frozenset({"wasm"}), **attrs},
        )
        self.lost.discard(agent)
        self.offers[o.id] = o
        self.handle(ev.OffersReceived((o,)))

    @precondition(lambda self: bool(self.offers))
    @rule(data=st.data())
    def rescind(self, data: st.DataObject) -> None:
        oid = data.draw(st.sampled_from(sorted(self.offers)))
        del self.offers[oid]
        self.handle(ev.OfferRescinded(oid))

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def lose_agent(self, agent: str) -> None:
        self.lost.add(agent)
        for oid in [oid for oid, o in self.offers.items() if o.agent_id == agent]:
            del self.offers[oid]
        self.handle(ev.AgentLost(AgentId(agent)))
        for tid, (a, _) in sorted(self.alive.items()):
            if a == agent:
                self.end(tid, TaskState.LOST, Reason.AGENT_LOST)

    # -- tasks --------------------------------------------------------------------------

    def end(self, tid: TaskId, state: TaskState, reason: Reason) -> None:
        agent, _ = self.alive.pop(tid)
        self.ended.add(tid)
        self.handle(ev.StatusUpdated(TaskStatus(tid, AgentId(agent), state, reason, "", uuid=f"u{next(self.ids)}")))

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data())
    def run_task(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(sorted(self.alive)))
        agent, _ = self.alive[tid]
        self.handle(ev.StatusUpdated(TaskStatus(tid, AgentId(agent), TaskState.RUNNING, uuid=f"u{next(self.ids)}")))

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data())
    def report_stats(self, data: st.DataObject) -> None:
        self.handle(ev.InstanceReported(data.draw(st.sampled_from(sorted(self.alive)))))

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data(), ending=st.sampled_from(ENDINGS))
    def end_task(self, data: st.DataObject, ending: tuple[TaskState, Reason]) -> None:
        self.end(data.draw(st.sampled_from(sorted(self.alive))), *ending)

    @precondition(lambda self: bool(self.ended))
    @rule(data=st.data())
    def stale_status(self, data: st.DataObject) -> None:
        tid = data.draw(st.sampled_from(sorted(self.ended)))
        before = copy.copy(vars_of(self.core))
        self.handle(ev.StatusUpdated(TaskStatus(tid, AgentId("pi"), TaskState.RUNNING, uuid="again")))
        assert vars_of(self.core)["live"] == before["live"]

    @precondition(lambda self: bool(self.pending_accepts))
    @rule(data=st.data(), refused=st.integers(0, 4))
    def answer_accept(self, data: st.DataObject, refused: int) -> None:
        accept = self.pending_accepts.pop(data.draw(st.integers(0, len(self.pending_accepts) - 1)))
        taken = refused != 0 and accept.agent_id not in self.lost  # the master refuses a launch on a lost agent
        for t in accept.tasks:
            agent_name = self.in_flight.pop(t.task_id)
            if taken:
                self.alive[t.task_id] = agent_name
            else:
                self.ended.add(t.task_id)
        self.handle(ev.AcceptDone(accept.launch) if taken else ev.AcceptFailed(accept.launch, "offer gone"))

    def answerable_kills(self) -> list[int]:
        """Kills of tasks whose ACCEPT was answered (the master knows of them, or knows they never were)."""
        return [i for i, k in enumerate(self.pending_kills) if k.task_id not in self.in_flight]

    @precondition(lambda self: bool(self.answerable_kills()))
    @rule(data=st.data())
    def answer_kill(self, data: st.DataObject) -> None:
        kill = self.pending_kills.pop(data.draw(st.sampled_from(self.answerable_kills())))
        if kill.task_id in self.alive:
            self.end(kill.task_id, TaskState.KILLED, Reason.UNSPECIFIED)
        else:  # it ended already, or its launch was refused: the master knows no such task
            self.handle(ev.KillFailed(kill.task_id, "no such task"))

    # -- time, quality, shutdown ----------------------------------------------------------

    @rule(dt=st.floats(0.1, 10.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.handle(ev.Tick())

    @rule(operator=st.sampled_from(["smooth", "read", None]))
    def quality_breach(self, operator: str | None) -> None:
        actions = self.core.handle(ev.QualityBroken(operator, "sink rate 0.0 rec/s < 5"), self.now)
        assert not any(isinstance(a, ev.Kill | ev.Accept) for a in actions), "a breach alone stops or starts nothing"
        for action in actions:
            self.check(action)

    @rule()
    def unknown_operator_breach_changes_nothing(self) -> None:
        before = copy.copy(vars_of(self.core))
        with pytest.raises(UnknownCall):
            self.core.handle(ev.QualityBroken("nope", "x"), self.now)
        assert vars_of(self.core) == before

    @precondition(lambda self: self.core.phase is Phase.RUNNING)
    @rule()
    def illegal_transition_changes_nothing(self) -> None:
        before = copy.copy(vars_of(self.core))
        with pytest.raises(IllegalTransition):
            self.core._enter(Trigger.ALL_ENDED)
        assert vars_of(self.core) == before

    @rule(really=st.integers(0, 40))
    def shutdown(self, really: int) -> None:
        if really == 0:  # rarely, so that most runs go on for long
            self.handle(ev.Shutdown())

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def every_task_accounted_for(self) -> None:
        known = self.core.live_task_ids() | set(self.core.retiring)
        for tid in list(self.alive) + list(self.in_flight):
            assert tid in known, f"launched task {tid} is neither live nor retiring"
        for tid in known:
            assert tid in self.alive or tid in self.in_flight, f"the core keeps {tid}, which is not running"

    @invariant()
    def at_most_one_live_per_instance(self) -> None:
        per_instance: dict[str, int] = {}
        for _, name in list(self.alive.values()) + list(self.in_flight.values()):
            per_instance[name] = per_instance.get(name, 0) + 1
        for name, n in per_instance.items():
            assert n <= 2, f"{n} tasks alive for {name}"
        live_names = [t.instance for t in self.core.live.values()]
        assert len(live_names) == len(set(live_names))
        for inst, t in self.core.live.items():
            assert t.instance == inst and self.core.by_task[t.task_id] == inst

    @invariant()
    def final_phases_hold_nothing(self) -> None:
        if self.core.phase.final:
            assert not self.core.live and self.finished == 1
        else:
            assert self.finished == 0
        if not self.core.phase.active:
            assert not self.core.held, "offers held while stopping"


class ReplicatedCoreMachine(DataflowCoreMachine):
    dag_text = REPLICATED


SETTINGS = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_dataflow_core_invariants() -> None:
    run_state_machine_as_test(DataflowCoreMachine, settings=SETTINGS)


def test_dataflow_core_invariants_with_replicas() -> None:
    run_state_machine_as_test(ReplicatedCoreMachine, settings=SETTINGS)


def test_the_phase_table_is_the_only_way_between_phases() -> None:
    for phase in Phase:
        for trigger in Trigger:
            if trigger in TRANSITIONS[phase]:
                assert next_phase(phase, trigger) is TRANSITIONS[phase][trigger]
            else:
                with pytest.raises(IllegalTransition):
                    next_phase(phase, trigger)
    assert all(not TRANSITIONS[p] for p in Phase if p.final)
