"""Agent liveness from deadlines (issue #13): a Tick looks only at the agents whose deadline passed,
and the deadlines follow every agent state (ACTIVE, back from UNREACHABLE, a shorter interval after
re-registering, UNREACHABLE until lost)."""

from __future__ import annotations

from typing import Any

from edgerm.ids import AgentId
from edgerm.master.deadlines import Deadlines
from edgerm.master.state import AgentRecord, MasterConfig, MasterCore

A1 = AgentId("a1")


class CountingCore(MasterCore):
    """Counts how often the liveness of an agent is (re)computed."""

    looked = 0

    def _liveness_deadline(self, agent: AgentRecord) -> float:
        self.looked += 1
        return super()._liveness_deadline(agent)


def _state(h: Any, agent: str = "a1") -> str:
    """The agent's state, "-" when the master forgot it."""
    states = {r.info.id: r.state.value for r in h.core.agent_records()}
    return str(states.get(AgentId(agent), "-"))


def test_idle_ticks_look_only_at_agents_whose_deadline_passed(make_harness):
    h = make_harness(MasterConfig(master_id="m"))
    h.core = CountingCore(h.core.config)
    for i in range(1000):
        h.agent(f"a{i:04d}", heartbeat=10.0)
    h.core.looked = 0
    for _ in range(120):  # 30 s of ticks; every agent heartbeats once per interval
        for i in range(1000):
            if i % 40 == _ % 40:
                h.heartbeat(f"a{i:04d}")
        h.tick(0.25)
    # 120 ticks x 1,000 agents would be 120,000 looks; each agent comes due about once per 30 s timeout.
    assert h.core.looked <= 2 * 1000, h.core.looked
    assert all(_state(h, f"a{i:04d}") == "ACTIVE" for i in range(1000))


def test_a_silent_agent_is_unreachable_just_after_its_deadline(make_harness):
    h = make_harness(MasterConfig(master_id="m", unreachable_timeout=30.0))
    h.agent("a1", heartbeat=1.0)
    h.tick(2.75)
    h.heartbeat("a1")  # at 2.75: the deadline moves to 5.75
    h.tick(2.75)
    assert _state(h) == "ACTIVE"
    h.tick(0.5)  # 6.0 > 5.75
    assert _state(h) == "UNREACHABLE"
    h.tick(30.0)  # unreachable since 6.0: 36.0 is not past the 30 s timeout
    assert _state(h) == "UNREACHABLE"
    h.tick(0.25)
    assert _state(h) == "-"  # lost and dropped past the unreachable timeout


def test_an_agent_back_from_unreachable_is_watched_on_its_heartbeat_deadline_again(make_harness):
    h = make_harness(MasterConfig(master_id="m", unreachable_timeout=600.0))
    h.agent("a1", heartbeat=1.0)
    h.tick(3.5)
    assert _state(h) == "UNREACHABLE"
    h.heartbeat("a1")
    assert _state(h) == "ACTIVE"
    h.tick(3.5)  # silent again: unreachable after 3 s, not after the 600 s unreachable timeout
    assert _state(h) == "UNREACHABLE"


def test_a_shorter_interval_after_re_registering_takes_effect(make_harness):
    h = make_harness(MasterConfig(master_id="m"))
    h.agent("a1", heartbeat=100.0)
    h.tick(1.0)
    h.agent("a1", heartbeat=1.0)
    h.tick(3.5)
    assert _state(h) == "UNREACHABLE"


def test_deadlines_keep_the_earliest_and_skip_stale_entries():
    d: Deadlines[str] = Deadlines()
    d.watch("a", 5.0)
    d.watch("a", 9.0)  # later: the earlier one stays
    assert d.when("a") == 5.0
    d.watch("a", 2.0)  # earlier: replaces it
    d.watch("b", 3.0)
    assert d.due(2.0) == []  # strictly before now
    assert d.due(4.0) == ["a", "b"]
    assert len(d) == 0 and d.due(100.0) == []  # the stale entry of "a" at 5.0 is skipped
    d.watch("c", 1.0)
    d.forget("c")
    assert d.due(100.0) == []


def test_deadlines_stay_about_one_entry_per_key():
    d: Deadlines[int] = Deadlines()
    for round_ in range(50):
        for key in range(100):
            d.watch(key, 1000.0 - round_)  # always earlier: every watch leaves a stale entry behind
    assert len(d) == 100
    assert len(d._heap) <= 2 * 100 + 64
    assert sorted(d.due(2000.0)) == list(range(100))
