"""Incremental allocation (issue #13): a cycle looks only at what changed; offers are
counted by DRF; a framework's outstanding offers are limited; full reallocation
(the old cycle, kept as a baseline) places the same way."""

from __future__ import annotations

from typing import Any

import pytest

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId
from edgerm.master.state import MasterConfig, MasterCore
from edgerm.model import TaskState
from edgerm.resources import Resources

F1, F2, F3 = FrameworkId("f1"), FrameworkId("f2"), FrameworkId("f3")


class CountingCore(MasterCore):
    """Counts the agents whose free resources an allocation cycle computes."""

    visited = 0

    def _free(self, agent_id: AgentId) -> Resources:
        self.visited += 1
        return super()._free(agent_id)


@pytest.fixture
def big(make_harness: Any) -> Any:
    """1,000 agents, f1 holding an offer on every one (no limit) and one task on a0000."""
    h = make_harness(MasterConfig(master_id="m", max_outstanding_offers=0))
    h.core = CountingCore(h.core.config)
    h.framework("f1")
    for i in range(1000):
        h.agent(f"a{i:04d}")
    offer = next(o for o in h.core.offers_of(F1) if o.agent_id == "a0000")
    h.accept("f1", [offer], [h.task("t1", "cpus:1;mem:128")], refuse=0)
    h.tick(0.25)
    h.core.visited = 0
    return h


def test_an_idle_tick_looks_at_no_agent(big):
    assert big.offers(big.tick(0.25)) == []
    assert big.core.visited == 0


def test_a_terminal_status_looks_only_at_its_agent(big):
    actions = big.status("t1", TaskState.FINISHED, agent_id="a0000")
    [offer] = big.offers(actions)
    assert offer.agent_id == "a0000" and offer.resources == Resources.parse("cpus:1;mem:128")
    assert big.core.visited == 1


def test_a_decline_is_reoffered_at_the_next_tick_looking_only_at_that_agent(big):
    offer = next(o for o in big.core.offers_of(F1) if o.agent_id == "a0500")
    assert big.decline("f1", [offer], refuse=0) == []
    [again] = big.offers(big.tick(0.25))
    assert again.agent_id == "a0500"
    assert big.core.visited == 1


def test_an_expired_filter_brings_back_only_its_agent(big):
    offer = next(o for o in big.core.offers_of(F1) if o.agent_id == "a0007")
    big.decline("f1", [offer], refuse=1.0)
    assert big.offers(big.tick(0.75)) == []  # the first of these ticks looks at it: filtered, it stays in the pool
    big.core.visited = 0
    [again] = big.offers(big.tick(0.25))  # t = 1.0 after the decline: the filter ran out
    assert again.agent_id == "a0007"
    assert big.core.visited == 1


def test_drf_counts_offers_so_a_framework_sitting_on_offers_goes_behind(h):
    """f1 never answers and sits on a whole agent (4 cpus); f2 runs one task of 1 cpu.
    Counting only used resources, f1 (0 used) would win the next agent; it must not."""
    h.framework("f1")
    h.agent("a1")  # offered to f1, which sits on it
    h.framework("f2")
    [o2] = h.offers(h.agent("a2", "cpus:1;mem:128"))
    assert o2.framework_id == F2
    assert h.offers(h.accept("f2", [o2], [h.task("t1", "cpus:1;mem:128")])) == []  # nothing left on a2
    shares = h.core.dominant_shares()
    assert shares[F1] == pytest.approx(1024 / 1152) and shares[F2] == pytest.approx(1 / 5)
    [o3] = h.offers(h.agent("a3"))
    assert o3.framework_id == F2


def test_a_framework_at_its_offer_limit_gets_no_more_until_it_answers(make_harness):
    h = make_harness(MasterConfig(master_id="m", max_outstanding_offers=2))
    h.framework("f1")
    for i in range(5):
        h.agent(f"a{i}")
    held = h.core.offers_of(F1)
    assert [o.agent_id for o in held] == ["a0", "a1"]
    assert h.offers(h.tick(1.0)) == []
    # An ACCEPT that launched tasks allocates at once: a slot and the leftovers.
    actions = h.accept("f1", [held[0]], [h.task("t1", "cpus:4;mem:1024")])
    assert [o.agent_id for o in h.offers(actions)] == ["a2"]
    # A DECLINE frees a slot, filled at the next cycle by an agent nobody else could take.
    h.decline("f1", [held[1]], refuse=60)
    assert [o.agent_id for o in h.offers(h.tick(0.25))] == ["a3"]
    assert len(h.core.offers_of(F1)) == 2


def test_offers_over_the_limit_go_to_the_others_and_expiry_returns_them(make_harness):
    h = make_harness(MasterConfig(master_id="m", max_outstanding_offers=1, offer_timeout=10.0))
    h.framework("mute")
    h.agent("a1")
    h.agent("a2")
    [o2] = h.offers(h.framework("polite"))
    assert o2.agent_id == "a2"  # the mute one holds a1 and may hold nothing more
    assert h.offers(h.accept("polite", [o2], [h.task("t1", "cpus:4;mem:1024")])) == []
    actions = h.tick(10.0)
    assert [e.offer_id for e in h.events(actions, m.Rescind, "mute")] == ["m-O1"]
    # a1 came back, filtered for the mute framework: the polite one gets it.
    assert [o.agent_id for o in h.offers(actions, "polite")] == ["a1"]
    assert h.core.offers_of(FrameworkId("mute")) == []


def _scenario(config: MasterConfig) -> list[tuple[str, str, str]]:
    """A fixed sequence of events; the offers made, as (framework, agent, resources)."""
    from tests.unit.master.conftest import Harness

    h = Harness(config)
    made: list[tuple[str, str, str]] = []

    def note(actions: list[Any]) -> None:
        made.extend((o.framework_id, o.agent_id, str(o.resources)) for o in h.offers(actions))

    for f in ("f1", "f2", "f3"):
        note(h.framework(f))
    for i in range(6):
        note(h.agent(f"a{i}", "cpus:4;mem:2048"))
    for n, offer in enumerate(h.core.offers_of(F1) + h.core.offers_of(F2)):
        note(h.accept(offer.framework_id, [offer], [h.task(f"t{n}", "cpus:1;mem:256")]))
    for offer in h.core.offers_of(F3):
        note(h.decline("f3", [offer], refuse=1.0))
    note(h.tick(1.5))
    note(h.status("t0", TaskState.FINISHED, agent_id=h.core.task("t0").agent_id))  # type: ignore[union-attr]
    note(h.do(m.Suppress(F2)))
    note(h.tick(0.5))
    note(h.do(m.Revive(F2)))
    note(h.tick(11.0))
    return made


def test_full_reallocation_places_exactly_as_the_incremental_allocator():
    incremental = _scenario(MasterConfig(master_id="m"))
    full = _scenario(MasterConfig(master_id="m", full_reallocation=True))
    assert len(incremental) > 12
    assert incremental == full
